"""ECG Lens against its peers on images and clips with known truth (issue 20).

Cases: images (or 8-frame clips) from `ecglens.datasets.digits_canvas` of scikit-learn's ``test`` digits (scans
no vision-zoo member trained on), one digit at a random position on a textured canvas (moving across the frames in
a clip), that the member labels correctly; the member's look at the candidates is selection, not any method's
query. The truth: the digit's ink box (per frame for clips).

Methods, all on the same cases, each through its own `CountedBlackBox` (rows counted; the budgeted ones refused
past their budget):

- ``ecglens.explain(x, classifier, query_budget=B, seed=...)`` at each budget B of ``--budgets``;
- captum Occlusion (8 × 8 windows, stride 8) and FeatureAblation over the 8 × 8 patch grid, at their standard
  budget (1 + cells: 65 queries for a 64 × 64 image, 513 for an 8-frame clip);
- captum KernelShap over the same grid with ``n_samples = B``; the reference code's greedy occlusion scan within B;
- ART SquareAttack (Linf, PSNR ladder 40 / 35 / 30 / 25 dB) and HopSkipJump (L2) within B.

See `ecglens.baselines.vision_peers` for the peers. The removal every attribution peer, the greedy scan and the
deletion metric use: a cell takes its own mean colour (per channel).

Metrics per case, on the shared grid (8 × 8-pixel cells, per frame for clips): pointing game (the centre of the
top-ranked cell, ties broken at random, lies inside the digit's ink box, in that cell's frame for clips); deletion
AUC (cells removed in ranking order, 21 steps from none to all, area under the true class's probability; lower is
better; the benchmark's queries, not the method's); flipped (a returned input that the classifier, asked once by
the benchmark, no longer labels with the true class) and its PSNR (dB, peak 1); queries; wall seconds (one torch
thread). A method that returns a saliency map at another resolution is pooled to the grid (cell mean).

Tables: one per member (means; 95% intervals over cases: Wilson for shares, a case bootstrap for the deletion AUC
and the median PSNR of flips), then the mean over the held-out members of each modality (intervals resample cases
within each member) and the issue's targets.

Usage::

    python benchmarks/vision.py --quick --modality image        # smoke: 2 cases of one held-out image member
    python benchmarks/vision.py --cases 40 --budgets 10,25,50,100,200,500      # the issue-20 tables
    python benchmarks/vision.py --members resnet64_rgb --methods occlusion,feature-ablation --cases 10

Writes ``benchmarks/results/vision[-image|-video][<suffix>].md`` (the current tables, with the command line, date,
machine and load average; not with ``--quick``) and the per-case rows to the git-ignored
``benchmarks/results/raw/`` (same stem, ``.jsonl``). Seconds: wall and this process's CPU time per case, one torch
thread; the machine the committed tables ran on is shared, so wall seconds there are upper bounds.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
sys.path.insert(0, str(REPO / "backend"))

METHODS = ("agent", "occlusion", "feature-ablation", "kernel-shap", "greedy-scan", "square-attack", "hopskipjump")
LABELS = {
    "agent": "ecglens.explain",
    "occlusion": "captum Occlusion (8 × 8, stride 8)",
    "feature-ablation": "captum FeatureAblation (8 × 8 cells)",
    "kernel-shap": "captum KernelShap (8 × 8 cells)",
    "greedy-scan": "greedy occlusion scan (reference)",
    "square-attack": "ART Square (Linf)",
    "hopskipjump": "ART HopSkipJump (L2)",
}
STANDARD = ("occlusion", "feature-ablation")  # run once, at their standard budget (vision_peers.STANDARD)
DELETION_STEPS = 21


@dataclass
class Row:
    """One method at one budget on one case."""

    member: str
    modality: str
    case: int
    method: str
    budget: int | None  # None: the method's standard budget
    queries: int
    seconds: float
    cpu_seconds: float
    pointing: bool | None
    deletion_auc: float | None
    flipped: bool
    psnr_db: float | None
    note: str = ""


class AgentUnavailable(Exception):
    """``ecglens.explain`` does not take this input yet."""


# ------------------------------------------------------------------------------------------------- models
class VisionModel:
    """A vision-zoo member as a black box: ``predict_proba([n, *input_shape] in [0, 1]) -> [n, classes]``.

    ``classifier`` is what ``ecglens.load_classifier`` returns for the file when it takes vision cards (what the
    agent is given); otherwise the model runs here from its TorchScript file and card (``loader`` says which).
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self.card = json.loads(self.path.with_suffix(".json").read_text())
        self.name = self.card["name"]
        self.modality = self.card["modality"]
        self.input_shape = tuple(int(s) for s in self.card["input_shape"])
        self.classes = list(self.card["classes"])
        self.split = self.card.get("extra", {}).get("split", "?")
        self.classifier = None
        self.loader = "torch.jit.load (ecglens.load_classifier does not take this card)"
        try:
            from ecglens.classifiers import load_classifier

            clf = load_classifier(self.path, device="cpu")
            probe = np.asarray(clf.predict_proba(np.zeros((1, *self.input_shape), np.float32)))
            if probe.shape == (1, len(self.classes)):
                self.classifier = clf
                self.loader = "ecglens.load_classifier"
        except Exception as exc:  # the card support may not exist on this branch yet
            self.loader += f": {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        if self.classifier is None:
            import torch

            self.module = torch.jit.load(str(self.path), map_location="cpu").eval()
        self.scale = float(self.card.get("input_scale", 1.0))

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        if self.classifier is not None:
            return np.asarray(self.classifier.predict_proba(x), dtype=np.float64)
        import torch

        with torch.inference_mode():
            out = torch.cat([self.module(torch.from_numpy(x[a : a + 256] * self.scale)) for a in range(0, len(x), 256)])
        if self.card.get("output", "logits") == "logits":
            out = torch.softmax(out.double(), dim=1)
        return out.numpy()


def member_paths(spec: str, modalities: tuple[str, ...]) -> list[Path]:
    from ecglens.classifiers import vision_zoo as vz

    if spec in ("heldout", "train", "all"):
        chosen = [m for m in vz.members(None if spec == "all" else spec) if m.modality in modalities]
        return [vz.member_path(m.name) for m in chosen]
    out = []
    for item in spec.split(","):
        item = item.strip()
        if item in vz.SPLIT:
            out.append(vz.member_path(item))
        elif item:
            out.append(Path(item))
    return out


# ------------------------------------------------------------------------------------------------- cases
def select_cases(model: VisionModel, n: int, seed: int) -> tuple[list[tuple[np.ndarray, int, np.ndarray]], int]:
    """The first ``n`` generated test samples the member labels correctly: ``(x, label, box)`` and how many were
    looked at."""
    from ecglens.datasets import digits_canvas as dc

    shape = model.input_shape
    c, size = shape[-3], shape[-1]
    cases: list[tuple[np.ndarray, int, np.ndarray]] = []
    looked, start = 0, 0
    while len(cases) < n and looked < 20 * max(n, 1):
        k = max(2 * (n - len(cases)), 8)
        if model.modality == "image":
            d = dc.make_images(start + k, split="test", seed=seed, channels=c, size=size)
        else:
            d = dc.make_clips(start + k, split="test", seed=seed, channels=c, size=size, frames=shape[0])
        x, y, box = d.x[start:], d.y[start:], d.box[start:]
        pred = model.predict_proba(x).argmax(axis=1)
        for i in range(len(x)):
            if len(cases) < n:
                looked += 1
                if pred[i] == y[i]:
                    cases.append((x[i], int(y[i]), box[i]))
        start += k
    return cases, looked


# ------------------------------------------------------------------------------------------------- metrics
def ranking(scores: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Cells from most to least important; ties broken at random."""
    s = np.nan_to_num(np.asarray(scores, dtype=np.float64), nan=-np.inf)
    return np.lexsort((rng.random(len(s)), -s))


def pointing(order: np.ndarray, grid, box: np.ndarray) -> bool:
    t, y0, x0, y1, x1 = grid.cell_box(int(order[0]))
    b = box[t] if box.ndim == 2 else box
    cy, cx = (y0 + y1) / 2.0, (x0 + x1) / 2.0
    return bool(b[0] <= cy <= b[2] and b[1] <= cx <= b[3])


def deletion_auc(x: np.ndarray, order: np.ndarray, grid, model: VisionModel, label: int) -> float:
    from ecglens.baselines.vision_peers import patch_mean, remove_cells

    filled = patch_mean(x, grid)
    ks = np.round(np.linspace(0, grid.n_cells, DELETION_STEPS)).astype(int)
    batch = np.stack([remove_cells(x, filled, grid, order[:k]) for k in ks])
    p = model.predict_proba(batch)[:, label]
    return float(np.sum((p[1:] + p[:-1]) / 2) / (len(p) - 1))


# ------------------------------------------------------------------------------------------------- the agent
def _agent_scores(result: Any, grid, shape: tuple[int, ...]) -> np.ndarray:
    """The explanation's saliency on the shared grid: a map of the input's spatial shape (or the input's own shape)
    pooled to cells, or per-cell scores on a grid of the same cells."""
    for name in ("saliency", "saliency_map", "attribution", "heatmap", "importance"):
        value = getattr(result, name, None)
        if callable(value):
            try:
                value = value()
            except TypeError:
                continue
        if value is None:
            continue
        a = np.asarray(value, dtype=np.float64)
        if a.shape == shape:
            return grid.pool(a)
        spatial = shape[-2:]
        if a.shape[-2:] == spatial:
            # [H, W] or [T, H, W]: broadcast over channels
            full = np.broadcast_to(a[..., None, :, :] if a.ndim == len(shape) - 1 else a, shape)
            return grid.pool(full)
        if a.size == grid.n_cells:
            return a.reshape(-1)
    for name in ("cell_scores", "scores"):
        value = getattr(result, name, None)
        if value is not None and np.asarray(value).size == grid.n_cells:
            return np.asarray(value, dtype=np.float64).reshape(-1)
    raise AgentUnavailable(f"no saliency found on {type(result).__name__}")


def _agent_adversarial(result: Any, shape: tuple[int, ...]) -> np.ndarray | None:
    adv = getattr(result, "adversarial", None)
    if adv is None:
        return None
    for name in ("x", "array", "image", "signal", "input"):
        v = getattr(adv, name, None)
        if v is not None and np.asarray(v).shape == shape:
            return np.asarray(v, dtype=np.float32)
    if np.asarray(adv).shape == shape:
        return np.asarray(adv, dtype=np.float32)
    return None


def run_agent(x: np.ndarray, model: VisionModel, budget: int, seed: int, grid) -> tuple[np.ndarray, Any, int]:
    """``ecglens.explain`` through a counting wrapper; (cell scores, adversarial or None, rows asked)."""
    import ecglens

    if model.classifier is None:
        raise AgentUnavailable("ecglens.load_classifier does not take vision cards on this branch")
    from ecglens.classifiers import QueryCounter

    counter = QueryCounter(model.classifier)
    try:
        result = ecglens.explain(x, counter, query_budget=budget, seed=seed)
    except (TypeError, ValueError, AttributeError, NotImplementedError) as exc:
        raise AgentUnavailable(f"ecglens.explain: {type(exc).__name__}: {exc}") from None
    return _agent_scores(result, grid, x.shape), _agent_adversarial(result, x.shape), int(counter.queries)


# ------------------------------------------------------------------------------------------------- running
def run_case(
    model: VisionModel, case_id: int, x: np.ndarray, label: int, box: np.ndarray, methods, budgets, seed: int
) -> list[Row]:
    from ecglens.baselines.vision_peers import PEERS, CountedBlackBox, PatchGrid, psnr_db

    grid = PatchGrid(x.shape)
    out: list[Row] = []
    pending: list[tuple[Row, np.ndarray]] = []
    for method in methods:
        for budget in [None] if method in STANDARD else budgets:
            case_seed = seed * 100_003 + case_id
            note = ""
            t0, c0 = time.perf_counter(), time.process_time()
            if method == "agent":
                try:
                    scores, adv, queries = run_agent(x, model, int(budget), case_seed, grid)
                except AgentUnavailable as exc:
                    out.append(
                        Row(
                            model.name,
                            model.modality,
                            case_id,
                            method,
                            budget,
                            0,
                            0.0,
                            0.0,
                            None,
                            None,
                            False,
                            None,
                            f"agent not available: {exc}",
                        )
                    )
                    continue
            else:
                box_ = CountedBlackBox(model.predict_proba, budget=budget)
                kw: dict[str, Any] = {"seed": case_seed}
                if budget is not None:
                    kw["budget"] = int(budget)
                if method in ("square-attack", "hopskipjump"):
                    kw["n_classes"] = len(model.classes)
                res = PEERS[method](x, label, grid, box_, **kw)
                scores, adv, queries = res.cell_scores, res.adversarial, box_.queries
            seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
            order = ranking(scores, np.random.default_rng(case_seed))
            row = Row(
                model.name,
                model.modality,
                case_id,
                method,
                budget,
                int(queries),
                seconds,
                cpu,
                pointing(order, grid, box),
                deletion_auc(x, order, grid, model, label),
                False,
                None,
                note,
            )
            out.append(row)
            if adv is not None:
                pending.append((row, adv))
    if pending:  # confirm every reported flip with one batched look of the benchmark's own
        pred = model.predict_proba(np.stack([a for _, a in pending])).argmax(axis=1)
        for (row, adv), p in zip(pending, pred):
            row.flipped = bool(p != label)
            row.psnr_db = psnr_db(x, adv) if row.flipped else None
    return out


# ------------------------------------------------------------------------------------------------- tables
def _keys(rows: list[Row]) -> list[tuple[str, int | None]]:
    seen: dict[tuple[str, int | None], None] = {}
    for r in rows:
        seen.setdefault((r.method, r.budget), None)
    return sorted(seen, key=lambda k: (METHODS.index(k[0]) if k[0] in METHODS else 99, k[1] or 0))


def _median_psnr(rs: list[Row]) -> float:
    v = [r.psnr_db for r in rs if r.flipped and r.psnr_db is not None]
    return float(np.median(v)) if v else float("nan")


def member_table(rows: list[Row]) -> str:
    from ecglens.intervals import bootstrap_ci, format_ci, proportion_ci

    lines = [
        "| method | budget | queries (mean) | pointing [95% CI] | deletion AUC [95% CI] | flipped [95% CI] | "
        "median PSNR of flips, dB [95% CI] | s / case, wall (CPU) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    notes: dict[str, None] = {}
    for method, budget in _keys(rows):
        rs = [r for r in rows if r.method == method and r.budget == budget]
        b = "standard" if budget is None else str(budget)
        if all(r.pointing is None for r in rs):
            lines.append(f"| {LABELS.get(method, method)} | {b} | – | – | – | – | – | – |")
            notes.setdefault(rs[0].note, None)
            continue
        n = len(rs)
        hits = sum(bool(r.pointing) for r in rs)
        flips = sum(r.flipped for r in rs)
        aucs = [r.deletion_auc for r in rs]
        psnrs = [r.psnr_db for r in rs if r.flipped and r.psnr_db is not None]
        lines.append(
            f"| {LABELS.get(method, method)} | {b} | {np.mean([r.queries for r in rs]):.0f} | "
            f"{hits / n:.2f} {format_ci(*proportion_ci(hits, n))} | "
            f"{np.mean(aucs):.3f} {format_ci(*bootstrap_ci(aucs), '.3f')} | "
            f"{flips / n:.2f} {format_ci(*proportion_ci(flips, n))} | "
            + (f"{np.median(psnrs):.1f} {format_ci(*bootstrap_ci(psnrs, np.median), '.1f')}" if psnrs else "–")
            + f" | {np.mean([r.seconds for r in rs]):.3f} ({np.mean([r.cpu_seconds for r in rs]):.3f}) |"
        )
    return "\n".join(lines + ([""] + [f"Note: {n}" for n in notes] if notes else []))


def _within_member_ci(per_member: list[np.ndarray], stat: Callable, n_boot: int = 2000, seed: int = 0):
    rng = np.random.default_rng(seed)
    per_member = [np.asarray(v, dtype=np.float64) for v in per_member if len(v)]
    if not per_member:
        return float("nan"), float("nan"), float("nan")
    point = float(np.mean([stat(v) for v in per_member]))
    boots = [np.mean([stat(v[rng.integers(0, len(v), len(v))]) for v in per_member]) for _ in range(n_boot)]
    lo, hi = np.nanpercentile(boots, [2.5, 97.5])
    return point, float(lo), float(hi)


def mean_table(rows: list[Row], members: list[str]) -> str:
    from ecglens.intervals import format_ci

    lines = [
        "| method | budget | queries (mean) | pointing [95% CI] | deletion AUC [95% CI] | flipped [95% CI] | "
        "median PSNR of flips, dB (mean of members) | s / case, wall (CPU) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for method, budget in _keys(rows):
        per = [[r for r in rows if r.member == m and r.method == method and r.budget == budget] for m in members]
        per = [rs for rs in per if rs and any(r.pointing is not None for r in rs)]
        b = "standard" if budget is None else str(budget)
        if not per:
            lines.append(f"| {LABELS.get(method, method)} | {b} | – | – | – | – | – | – |")
            continue

        def ci(field: str, fmt: str, per=per) -> str:
            vals = [np.array([float(getattr(r, field)) for r in rs]) for rs in per]
            p, lo, hi = _within_member_ci(vals, np.mean)
            return f"{p:{fmt}} {format_ci(lo, hi, fmt)}"

        med = [_median_psnr(rs) for rs in per]
        med = [m for m in med if not math.isnan(m)]
        lines.append(
            f"| {LABELS.get(method, method)} | {b} | {np.mean([np.mean([r.queries for r in rs]) for rs in per]):.0f} | "
            f"{ci('pointing', '.2f')} | {ci('deletion_auc', '.3f')} | {ci('flipped', '.2f')} | "
            + (f"{np.mean(med):.1f}" if med else "–")
            + f" | {np.mean([np.mean([r.seconds for r in rs]) for rs in per]):.3f} "
            f"({np.mean([np.mean([r.cpu_seconds for r in rs]) for rs in per]):.3f}) |"
        )
    return "\n".join(lines)


def targets_table(rows: list[Row], members: list[str]) -> str:
    """The issue's targets, per member: pointing at 50 (>= 0.95 and >= Occlusion), deletion AUC at 50 to 500 vs
    the better of Occlusion / FeatureAblation (and the paired difference at 500, case by case: a margin inside its
    interval is noise), flipped within 500 at median PSNR >= 30 dB, seconds at 500."""
    from ecglens.intervals import format_ci, paired_difference_ci

    def get(m: str, method: str, budget: int | None) -> list[Row]:
        return [
            r for r in rows if r.member == m and r.method == method and r.budget == budget and r.pointing is not None
        ]

    lines = [
        "| member | agent pointing @50 (Occlusion) | agent deletion AUC @50 / @100 / @200 / @500 (min Occlusion, FA) | "
        "agent @500 minus the better peer, paired [95% CI] | agent flipped @500, median PSNR | agent s @500, wall (CPU) |",
        "|---|---|---|---|---|---|",
    ]
    for m in members:
        occ, fa = get(m, "occlusion", None), get(m, "feature-ablation", None)
        a50, a100, a200, a500 = (get(m, "agent", b) for b in (50, 100, 200, 500))
        occ_p = f"{np.mean([r.pointing for r in occ]):.2f}" if occ else "–"
        best_del, best = min(
            ((float(np.mean([r.deletion_auc for r in rs])), rs) for rs in (occ, fa) if rs),
            key=lambda t: t[0],
            default=(float("nan"), []),
        )
        peer_auc = {r.case: r.deletion_auc for r in best}
        pairs = [(r.deletion_auc, peer_auc[r.case]) for r in a500 if r.case in peer_auc]
        paired = "–"
        if pairs:
            diff, ci = paired_difference_ci(*zip(*pairs))
            paired = f"{diff:+.3f} {format_ci(*ci, '+.3f')}"

        def f(rs, field, fmt):
            return format(float(np.mean([getattr(r, field) for r in rs])), fmt) if rs else "–"

        lines.append(
            f"| {m} | {f(a50, 'pointing', '.2f')} ({occ_p}) | {f(a50, 'deletion_auc', '.3f')} / "
            f"{f(a100, 'deletion_auc', '.3f')} / {f(a200, 'deletion_auc', '.3f')} / {f(a500, 'deletion_auc', '.3f')} "
            f"({best_del:.3f}) | {paired} | {f(a500, 'flipped', '.2f')}, "
            + (f"{_median_psnr(a500):.1f} dB" if a500 else "–")
            + f" | {f(a500, 'seconds', '.3f')} ({f(a500, 'cpu_seconds', '.3f')}) |"
        )
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------- cli
def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--members",
        default="heldout",
        help="heldout (default), train, all, or comma-separated member names / .pt paths",
    )
    p.add_argument("--modality", default="image,video", help="image, video or both (default: image,video)")
    p.add_argument("--cases", type=int, default=30, help="cases per member (default: 30)")
    p.add_argument("--budgets", default="10,25,50,100,200,500", help="query budgets of the budgeted methods")
    p.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated, of {', '.join(METHODS)}")
    p.add_argument("--seed", type=int, default=1, help="case and method seed (default: 1)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default: 1)")
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 2 cases, budget 25, the first held-out member of each --modality, no warm-up; writes nothing",
    )
    p.add_argument("--suffix", default="", help="results file name suffix")
    p.add_argument("--verbose", action="store_true")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    import torch

    torch.set_num_threads(args.threads)
    modalities = tuple(m.strip() for m in args.modality.split(",") if m.strip())
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = set(methods) - set(METHODS)
    if unknown:
        print(f"vision: error: unknown methods {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    budgets = [int(b) for b in args.budgets.split(",") if b.strip()]
    paths = member_paths(args.members, modalities)
    if args.quick:
        args.cases, budgets = 2, [25]
        from ecglens.classifiers import vision_zoo as vz

        if args.members == "heldout":
            paths = [vz.member_path(vz.members("heldout", m)[0].name) for m in modalities if vz.members("heldout", m)]
    t_start = time.perf_counter()
    rows: list[Row] = []
    sections: list[str] = []
    loaders = []
    for path in paths:
        model = VisionModel(path)
        loaders.append(f"`{model.name}`: {model.loader}")
        cases, looked = select_cases(model, args.cases, args.seed)
        if not args.quick:  # warm-up (not measured): each method once at the smallest budget on the first case
            run_case(model, -1, *cases[0], methods, budgets[:1], args.seed)
        t0 = time.perf_counter()
        member_rows: list[Row] = []
        for i, (x, label, box) in enumerate(cases):
            member_rows += run_case(model, i, x, label, box, methods, budgets, args.seed)
            if args.verbose:
                print(f"  {model.name} case {i}: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        rows += member_rows
        cells = PatchGridShape(model.input_shape)
        sections += [
            f"## `{model.name}` ({model.split}, {model.modality}, input {list(model.input_shape)})",
            "",
            f"{len(cases)} cases (of the first {looked} generated test samples, the rest misclassified); grid "
            f"{cells}; {(time.perf_counter() - t0) / 60:.1f} min.",
            "",
            member_table(member_rows),
            "",
        ]
        print(sections[-5], file=sys.stderr)
        print(sections[-2], file=sys.stderr)
    for modality in modalities:
        held = [r.member for r in rows if r.modality == modality]
        held = list(dict.fromkeys(m for m in held if _split(m) == "heldout"))
        if len(held) >= 1:
            sections += [
                f"## Mean over held-out {modality} members ({', '.join(held)})",
                "",
                "Means over members of each member's mean; 95% intervals resample cases within each member.",
                "",
                mean_table([r for r in rows if r.member in held], held),
                "",
                f"Targets ({modality}; issue 20): pointing >= 0.95 at 50 queries and >= Occlusion's; deletion AUC "
                "<= the better of Occlusion and FeatureAblation; >= 95% flipped within 500 queries at median PSNR "
                ">= 30 dB; < 1 s per 64 × 64 image at budget 500.",
                "",
                targets_table(rows, held),
                "",
            ]
    report = _report(args, sections, loaders, time.perf_counter() - t_start)
    print(report)
    if not args.quick:
        stem = "vision" + (f"-{modalities[0]}" if len(modalities) == 1 else "") + args.suffix
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / f"{stem}.md").write_text(report)
        (RESULTS / "raw").mkdir(exist_ok=True)
        with open(RESULTS / "raw" / f"{stem}.jsonl", "w") as fh:
            for r in rows:
                fh.write(json.dumps(asdict(r)) + "\n")
        print(f"written: {RESULTS / f'{stem}.md'}", file=sys.stderr)
    return 0


def PatchGridShape(shape: tuple[int, ...]) -> str:
    from ecglens.baselines.vision_peers import PatchGrid

    g = PatchGrid(shape)
    return f"{g.frames} × {g.rows} × {g.cols} = {g.n_cells} cells" if g.frames > 1 else f"{g.rows} × {g.cols} cells"


def _split(member: str) -> str:
    from ecglens.classifiers import vision_zoo as vz

    return vz.SPLIT.get(member, "unseen")


def _report(args: argparse.Namespace, sections: list[str], loaders: list[str], total_s: float) -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    load = os.getloadavg()
    return "\n".join(
        [
            f"# Vision explainers vs peers — digits on a textured canvas, {dt.date.today().isoformat()}",
            "",
            f"Command: `{' '.join(shlex.quote(a) for a in ['python', *sys.argv])}`",
            f"Machine: {cpu}, {os.cpu_count()} CPUs visible, torch {torch.__version__} with {args.threads} thread(s), "
            f"Python {platform.python_version()}; load average at the end {load[0]:.1f} / {load[1]:.1f} / "
            f"{load[2]:.1f} (1 / 5 / 15 min; the machine is shared, so seconds are upper bounds)",
            f"Seed {args.seed}; wall time {total_s / 60:.1f} min. Models loaded by: " + "; ".join(loaders) + ".",
            "",
            "Pointing: the centre of the top-ranked 8 × 8 cell (ties at random) lies in the digit's ink box (its "
            "frame's, for clips). Deletion AUC: cells replaced by their own mean colour in ranking order, 21 steps, "
            "area under the true class's probability (lower is better; the benchmark's queries). Flipped: a "
            "returned input the classifier no longer labels with the true class (checked by the benchmark); PSNR "
            "with peak 1. Attribution-only methods (Occlusion, FeatureAblation, KernelShap) return no input. "
            "ART attacks rank cells by the energy of their perturbation. Budget 'standard': 1 + cells.",
            "",
            *sections,
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
