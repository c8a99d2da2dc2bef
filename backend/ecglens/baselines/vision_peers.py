"""The agent's peers on images and clips (issue 20): captum Occlusion, FeatureAblation and KernelShap on an 8 × 8
patch grid, the reference code's greedy occlusion scan, and ART Square / HopSkipJump for flips.

Every peer sees the classifier only through a `CountedBlackBox` (``[n, *input_shape]`` float32 in [0, 1] ->
``[n, classes]`` probabilities), which counts every row and, given a budget, refuses a call that would pass it
(`BudgetSpent`), so the query figures are the rows each method really asked about.

The grid (`PatchGrid`): cells of ``patch`` × ``patch`` pixels (all channels) per image, and per frame for clips
(a clip of T frames has T × (H / patch) × (W / patch) cells). A removed cell takes its own mean colour (per
channel): the "removal" all attribution peers, the greedy scan and the deletion metric share (`patch_mean`).

Query cost per explanation of one 64 × 64 image (64 cells; captum adds one look at the unperturbed input):

=================  =========================================================
Occlusion          1 + cells (8 × 8 windows, stride 8) = 65 (513 for 8-frame clips)
FeatureAblation    1 + cells = 65 (513)
KernelShap         n_samples = budget (captum asks about each sample once)
greedy scan        rounds of (cells not yet removed + 1) until the class flips or the budget is spent
ART Square         Linf, eps ladder at PSNR 40 / 35 / 30 / 25 dB, an equal share of the budget each
ART HopSkipJump    L2, started from the patch-mean image (when it flips), until the budget is spent
=================  =========================================================
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

PATCH = 8


class BudgetSpent(Exception):
    """A call would take a `CountedBlackBox` past its budget (nothing of that call was answered)."""


class CountedBlackBox:
    """``predict_proba`` over ``[n, *input_shape]`` float32 in [0, 1], counting rows, with an optional hard budget.

    ``watch`` (label) records every answered row whose arg-max is not ``label``: ``best_flip`` is the flipping row
    closest to ``clean`` in L2 (what a black-box attacker has seen flip within its budget).
    """

    def __init__(self, predict_proba: Callable[[np.ndarray], np.ndarray], budget: int | None = None):
        self.predict_proba_fn = predict_proba
        self.budget = budget
        self.queries = 0
        self.calls = 0
        self.label: int | None = None
        self.clean: np.ndarray | None = None
        self.best_flip: np.ndarray | None = None
        self.best_l2 = math.inf

    def watch(self, clean: np.ndarray, label: int) -> None:
        self.clean, self.label = clean, int(label)

    @property
    def remaining(self) -> int | None:
        return None if self.budget is None else max(0, self.budget - self.queries)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        if self.budget is not None and self.queries + len(x) > self.budget:
            raise BudgetSpent(f"{self.queries} + {len(x)} rows > budget {self.budget}")
        probs = np.asarray(self.predict_proba_fn(x), dtype=np.float64)
        self.queries += len(x)
        self.calls += 1
        if self.label is not None and self.clean is not None:
            flipped = probs.argmax(axis=1) != self.label
            for row, flip in zip(x, flipped):
                if flip:
                    d = float(np.linalg.norm(row - self.clean))
                    if d < self.best_l2:
                        self.best_flip, self.best_l2 = row.copy(), d
        return probs

    predict_proba = __call__


@dataclass
class PatchGrid:
    """Cells of ``patch`` × ``patch`` pixels over ``shape`` ([C, H, W] or [T, C, H, W]; per frame for clips)."""

    shape: tuple[int, ...]
    patch: int = PATCH
    mask: np.ndarray = field(init=False)  # int64, ``shape``: the cell of each value
    rows: int = field(init=False)
    cols: int = field(init=False)
    frames: int = field(init=False)

    def __post_init__(self) -> None:
        self.shape = tuple(int(s) for s in self.shape)
        h, w = self.shape[-2:]
        self.frames = self.shape[0] if len(self.shape) == 4 else 1
        self.rows, self.cols = math.ceil(h / self.patch), math.ceil(w / self.patch)
        r = np.arange(h) // self.patch
        c = np.arange(w) // self.patch
        plane = r[:, None] * self.cols + c[None, :]
        if len(self.shape) == 3:
            self.mask = np.broadcast_to(plane, self.shape).astype(np.int64)
        else:
            per = self.rows * self.cols
            m = np.arange(self.frames)[:, None, None, None] * per + plane[None, None]
            self.mask = np.broadcast_to(m, self.shape).astype(np.int64)

    @property
    def n_cells(self) -> int:
        return self.frames * self.rows * self.cols

    def cell_box(self, cell: int) -> tuple[int, int, int, int, int]:
        """``(frame, y0, x0, y1, x1)`` of ``cell`` (half-open, clipped to the image)."""
        per = self.rows * self.cols
        t, rc = divmod(int(cell), per)
        r, c = divmod(rc, self.cols)
        h, w = self.shape[-2:]
        y0, x0 = r * self.patch, c * self.patch
        return t, y0, x0, min(y0 + self.patch, h), min(x0 + self.patch, w)

    def pool(self, values: np.ndarray, how: str = "mean") -> np.ndarray:
        """Per-cell mean (or sum) of a map of ``shape`` (e.g. a captum attribution)."""
        v = np.asarray(values, dtype=np.float64).reshape(-1)
        s = np.bincount(self.mask.reshape(-1), weights=v, minlength=self.n_cells)
        if how == "sum":
            return s
        return s / np.maximum(np.bincount(self.mask.reshape(-1), minlength=self.n_cells), 1)

    def pool_energy(self, perturbation: np.ndarray) -> np.ndarray:
        return self.pool(np.square(perturbation), "sum")


def patch_mean(x: np.ndarray, grid: PatchGrid) -> np.ndarray:
    """``x`` with every cell replaced by its own mean colour (per channel): the shared removal."""
    x = np.asarray(x, dtype=np.float32)
    out = np.empty_like(x)
    p = grid.patch
    h, w = x.shape[-2:]
    for y0 in range(0, h, p):
        for x0 in range(0, w, p):
            block = x[..., y0 : y0 + p, x0 : x0 + p]
            out[..., y0 : y0 + p, x0 : x0 + p] = block.mean(axis=(-2, -1), keepdims=True)
    return out


def remove_cells(x: np.ndarray, filled: np.ndarray, grid: PatchGrid, cells) -> np.ndarray:
    """``x`` with ``cells`` taken from ``filled`` (the patch-mean image)."""
    sel = np.isin(grid.mask, np.asarray(list(cells), dtype=np.int64))
    return np.where(sel, filled, x).astype(np.float32)


def psnr_db(x: np.ndarray, y: np.ndarray) -> float:
    """Peak signal-to-noise ratio (dB) of ``y`` against ``x``, peak 1 (inputs in [0, 1])."""
    mse = float(np.mean((np.asarray(x, np.float64) - np.asarray(y, np.float64)) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(1.0 / mse)


@dataclass
class PeerResult:
    """What one peer returns on one input: cell scores (higher = more important) and, for flip methods, the
    smallest flipping input it found (or None)."""

    cell_scores: np.ndarray
    adversarial: np.ndarray | None = None
    extra: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------- captum
def _captum_forward(box: CountedBlackBox):
    import torch

    def forward(inputs: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(box(inputs.detach().cpu().numpy()).astype(np.float32))

    return forward


def _captum(
    method: str,
    x: np.ndarray,
    label: int,
    grid: PatchGrid,
    box: CountedBlackBox,
    *,
    n_samples: int = 0,
    seed: int = 0,
    batch: int = 64,
) -> PeerResult:
    import torch
    from captum.attr import FeatureAblation, KernelShap, Occlusion

    inputs = torch.from_numpy(np.ascontiguousarray(x[None], dtype=np.float32))
    baselines = torch.from_numpy(patch_mean(x, grid)[None])
    fwd = _captum_forward(box)
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(int(seed))
        if method == "occlusion":
            window = (x.shape[-3], grid.patch, grid.patch) if x.ndim == 3 else (1, x.shape[-3], grid.patch, grid.patch)
            attr = Occlusion(fwd).attribute(
                inputs,
                sliding_window_shapes=window,
                strides=window,
                baselines=baselines,
                target=label,
                perturbations_per_eval=batch,
            )
        elif method == "feature-ablation":
            attr = FeatureAblation(fwd).attribute(
                inputs,
                baselines=baselines,
                target=label,
                feature_mask=torch.from_numpy(grid.mask[None]),
                perturbations_per_eval=batch,
            )
        elif method == "kernel-shap":
            attr = KernelShap(fwd).attribute(
                inputs,
                baselines=baselines,
                target=label,
                feature_mask=torch.from_numpy(grid.mask[None]),
                n_samples=int(n_samples),
                perturbations_per_eval=batch,
            )
        else:
            raise ValueError(method)
    return PeerResult(cell_scores=grid.pool(attr.numpy()[0]))


def occlusion(x, label, grid, box, **kw) -> PeerResult:
    """captum Occlusion: patch × patch windows at stride patch (one per cell), removal = patch mean."""
    return _captum("occlusion", x, label, grid, box, **kw)


def feature_ablation(x, label, grid, box, **kw) -> PeerResult:
    """captum FeatureAblation over the cells, removal = patch mean."""
    return _captum("feature-ablation", x, label, grid, box, **kw)


def kernel_shap(x, label, grid, box, *, budget: int, **kw) -> PeerResult:
    """captum KernelShap over the cells with ``n_samples = budget`` (removal = patch mean)."""
    return _captum("kernel-shap", x, label, grid, box, n_samples=max(2, budget), **kw)


# --------------------------------------------------------------------------------------------- greedy scan
def greedy_scan(x, label, grid, box, *, budget: int, top_fraction: float = 0.05, seed: int = 0, **kw) -> PeerResult:
    """The reference code's greedy occlusion: each round probes the removal of every cell not yet removed (one
    query per cell, on top of what is removed so far), removes the cells whose probe lowered the class's
    probability most (``top_fraction`` of the cells, at least one) and checks the result (one query), until the
    class flips or the budget is spent. A probe that flips ends the scan with that probe. Scores: removed cells
    in the order removed first, the rest by their last probe's drop."""
    rng = np.random.default_rng(seed)
    filled = patch_mean(x, grid)
    n = grid.n_cells
    removed: list[int] = []
    drop = np.zeros(n)
    current = x.astype(np.float32)
    adversarial = None
    try:
        p_cur = float(box(current[None])[0, label])
        k = max(1, int(round(top_fraction * n)))
        while adversarial is None:
            left = box.remaining if box.remaining is not None else n + 1
            todo = [c for c in rng.permutation(n) if c not in set(removed)][: max(0, left - 1)]
            if not todo:
                break
            probes = np.stack([remove_cells(current, filled, grid, removed + [c]) for c in todo])
            probs = np.concatenate([box(probes[a : a + 64]) for a in range(0, len(probes), 64)])
            d = p_cur - probs[:, label]
            drop[np.asarray(todo)] = d
            flips = np.flatnonzero(probs.argmax(axis=1) != label)
            if flips.size:
                best = int(flips[np.argmax(d[flips])])
                removed.append(int(todo[best]))
                adversarial = probes[best]
                break
            chosen = [int(todo[i]) for i in np.argsort(-d)[:k]]
            removed += chosen
            current = remove_cells(x, filled, grid, removed)
            out = box(current[None])[0]
            p_cur = float(out[label])
            if out.argmax() != label:
                adversarial = current
    except BudgetSpent:
        pass
    scores = drop.copy()
    top = max(float(scores.max()), 0.0)
    for rank, c in enumerate(removed):
        scores[c] = top + 1.0 + (len(removed) - rank)
    return PeerResult(cell_scores=scores, adversarial=adversarial, extra={"cells_removed": len(removed)})


# --------------------------------------------------------------------------------------------- ART attacks
@contextlib.contextmanager
def _art_quiet_seeded(seed: int) -> Iterator[None]:
    state = np.random.get_state()
    np.random.seed(int(seed) % 2**31)
    logger = logging.getLogger("art")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        with np.errstate(divide="ignore", invalid="ignore"):
            yield
    finally:
        logger.setLevel(level)
        np.random.set_state(state)


def art_layout(shape: tuple[int, ...]):
    """``(to_art, from_art)``: a clip ``[T, C, H, W]`` is shown to ART as one square image ``[C, g * H, g * W]``,
    the frames tiled row by row on a g × g grid (g = ceil(sqrt(T)); unused tiles are zero and ignored on the way
    back), since Square takes square images only; an image as is. Both act on batches."""
    if len(shape) == 3:
        return (lambda a: a), (lambda a: a)
    t, c, h, w = shape
    g = math.isqrt(t - 1) + 1

    def to_art(a: np.ndarray) -> np.ndarray:
        tiles = np.zeros((len(a), g * g, c, h, w), dtype=np.float32)
        tiles[:, :t] = a
        tiles = tiles.reshape(len(a), g, g, c, h, w).transpose(0, 3, 1, 4, 2, 5)  # n, c, row, h, col, w
        return np.ascontiguousarray(tiles.reshape(len(a), c, g * h, g * w))

    def from_art(a: np.ndarray) -> np.ndarray:
        tiles = a.reshape(len(a), c, g, h, g, w).transpose(0, 2, 4, 1, 3, 5).reshape(len(a), g * g, c, h, w)
        return np.ascontiguousarray(tiles[:, :t])

    return to_art, from_art


def _estimator(box: CountedBlackBox, shape: tuple[int, ...], n_classes: int):
    from art.estimators.classification import BlackBoxClassifierNeuralNetwork

    to_art, from_art = art_layout(shape)

    def predict(a: np.ndarray) -> np.ndarray:
        a = from_art(np.asarray(a, dtype=np.float32))
        finite = np.isfinite(a).reshape(len(a), -1).all(axis=1)
        out = np.zeros((len(a), n_classes), dtype=np.float32)
        if finite.any():
            out[finite] = box(a[finite])
        return out

    art_shape = to_art(np.zeros((1, *shape), np.float32)).shape[1:]
    return BlackBoxClassifierNeuralNetwork(
        predict, input_shape=tuple(art_shape), nb_classes=n_classes, channels_first=True, clip_values=(0.0, 1.0)
    )


def _attack_result(x: np.ndarray, grid: PatchGrid, box: CountedBlackBox, last: np.ndarray | None, name: str):
    """``last``: the attack's own answer, in ART's layout."""
    if last is not None:
        last = art_layout(x.shape)[1](last[None])[0]
    adv = box.best_flip
    pert = (adv if adv is not None else (last if last is not None else x)) - x
    return PeerResult(cell_scores=grid.pool_energy(pert), adversarial=adv, extra={"attack": name})


def square_attack(
    x, label, grid, box, *, budget: int, n_classes: int, psnr_levels_db=(40.0, 35.0, 30.0, 25.0), seed: int = 0, **kw
) -> PeerResult:
    """ART SquareAttack (Linf) on an eps ladder: eps = 10 ** (-PSNR / 20) for each level (a full-image ± eps
    perturbation has that PSNR), an equal share of the budget each; the first level that flips ends it."""
    from art.attacks.evasion import SquareAttack

    box.watch(x, label)
    est = _estimator(box, x.shape, n_classes)
    to_art = art_layout(x.shape)[0]
    last = None
    share = budget // len(psnr_levels_db)
    with _art_quiet_seeded(seed):
        for level in psnr_levels_db:
            if box.best_flip is not None or (box.remaining or 0) < 2:
                break
            # ~1 row per iteration for one input, plus the initial checks.
            cap = min(share, box.remaining or share)
            attack = SquareAttack(
                est,
                norm=np.inf,
                eps=10 ** (-level / 20),
                max_iter=max(1, cap - 3),
                nb_restarts=1,
                batch_size=1,
                verbose=False,
            )
            try:
                last = attack.generate(to_art(x[None].astype(np.float32)), y=np.eye(n_classes)[[label]])[0]
            except BudgetSpent:
                break
    return _attack_result(x, grid, box, last, "SquareAttack")


def hop_skip_jump(x, label, grid, box, *, budget: int, n_classes: int, seed: int = 0, **kw) -> PeerResult:
    """ART HopSkipJump (L2, untargeted), started from the patch-mean image when that flips (ART's own random
    starts otherwise), until the budget is spent; the smallest flipping row it asked about is its answer."""
    from art.attacks.evasion import HopSkipJump

    box.watch(x, label)
    est = _estimator(box, x.shape, n_classes)
    to_art = art_layout(x.shape)[0]
    start = patch_mean(x, grid)
    last = None
    with _art_quiet_seeded(seed):
        attack = HopSkipJump(
            est, norm=2, max_iter=50, max_eval=100, init_eval=10, init_size=100, batch_size=64, verbose=False
        )
        try:
            last = attack.generate(
                to_art(x[None].astype(np.float32)), y=np.eye(n_classes)[[label]], x_adv_init=to_art(start[None])
            )[0]
        except BudgetSpent:
            pass
    return _attack_result(x, grid, box, last, "HopSkipJump")


PEERS: dict[str, Callable[..., PeerResult]] = {
    "occlusion": occlusion,
    "feature-ablation": feature_ablation,
    "kernel-shap": kernel_shap,
    "greedy-scan": greedy_scan,
    "square-attack": square_attack,
    "hopskipjump": hop_skip_jump,
}
BUDGETED = ("kernel-shap", "greedy-scan", "square-attack", "hopskipjump")  # take ``budget``
STANDARD = ("occlusion", "feature-ablation")  # one run at their standard budget, 1 + cells
