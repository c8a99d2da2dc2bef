"""Black-box minimal-distortion attacks from the Adversarial Robustness Toolbox: Square (L2), SimBA, HopSkipJump.

ART sees the black box only through ``predict_fn`` (`BlackBoxClassifierNeuralNetwork`: no model, no gradients),
and every row goes through the peer's `QueryCounter`, whose hard budget (default 2,000) ends the attack. ART
decides success by the arg-max of its input, so it is shown a two-class view of the target finding,
``[s, 1 - s]`` with ``s >= 0.5`` exactly when the finding's probability reaches its threshold: an ART "success"
is then our flip (`Target.flipped`, the agent's rule), for single- and multi-label classifiers alike. The smallest (L2) flipping input among all the
rows the attack queried is its answer; cells are scored by the energy of that perturbation.

References: Andriushchenko et al., "Square Attack: a query-efficient black-box adversarial attack via random
search", ECCV 2020; Guo et al., "Simple black-box adversarial attacks", ICML 2019 (SimBA); Chen, Jordan &
Wainwright, "HopSkipJumpAttack: a query-efficient decision-based attack", IEEE S&P 2020; Nicolae et al.,
"Adversarial Robustness Toolbox v1.0.0", arXiv:1807.01069.
"""

from __future__ import annotations

import contextlib
import logging
import math
from abc import abstractmethod
from collections.abc import Iterator
from typing import Any

import numpy as np

from ecglens.agent.grid import SegmentGrid
from ecglens.baselines.base import Attribution, PerturbationBaseline
from ecglens.baselines.cells import cell_energy, cell_medians
from ecglens.classifiers.base import QueryCounter
from ecglens.errors import QueryBudgetExceeded
from ecglens.targets import Target


class _BinaryView:
    """ART's ``predict_fn``: ART-shaped batch -> ``[n, 2]`` (finding holds, flipped), counting and watching flips.

    ``to_signal`` maps ART's input layout back to ``[n, leads, samples]``. ``best`` is the smallest-L2 flipping
    signal seen so far (float32 ``[leads, samples]``) and ``best_l2`` its distance to ``clean``.
    """

    def __init__(self, counter: QueryCounter, clean: np.ndarray, target: Target, to_signal):
        self.counter = counter
        self.clean = clean
        self.target = target
        self.to_signal = to_signal
        self.best: np.ndarray | None = None
        self.best_l2 = math.inf

    def __call__(self, x: np.ndarray) -> np.ndarray:
        signals = self.to_signal(np.asarray(x, dtype=np.float32))
        # ART's L2 Square step can divide by zero and propose NaN; such a row is answered "still holds" without
        # a query, so the attack rejects it (it keeps only improvements) and carries on.
        finite = np.isfinite(signals).all(axis=tuple(range(1, signals.ndim)))
        probs = np.zeros((len(signals), len(self.counter.class_names)))
        if finite.any():
            probs[finite] = np.asarray(self.counter.predict_proba(signals[finite]))
        flipped = self.target.flipped(probs) & finite
        for row, flip in zip(signals, flipped):
            if flip:
                dist = float(np.linalg.norm(row - self.clean))
                if dist < self.best_l2:
                    self.best, self.best_l2 = row.copy(), dist
        s = 0.5 + 0.5 * _margin(probs, self.target)
        # A tie (margin 0) goes to "holds"; make sure the arg-max agrees with the flip rule exactly.
        s = np.where(flipped, np.minimum(s, 0.4999), np.maximum(s, 0.5))
        s = np.where(finite, s, 1.0)
        return np.stack([s, 1.0 - s], axis=1).astype(np.float32)


def _margin(probs: np.ndarray, target: Target) -> np.ndarray:
    """``[n]`` in [-1, 1], >= 0 while the finding holds: monotone in the target's probability."""
    p = probs[:, target.index]
    if target.multilabel:
        t = target.threshold
        return np.where(p >= t, (p - t) / max(1.0 - t, 1e-12), (p - t) / max(t, 1e-12))
    others = np.delete(probs, target.index, axis=1)
    return p - (others.max(axis=1) if others.shape[1] else 0.0)


@contextlib.contextmanager
def _numpy_global_seed(seed: int) -> Iterator[None]:
    """ART draws from numpy's global generator: seed it for the attack, then put the caller's state back."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


class _ArtAttackBaseline(PerturbationBaseline):
    """Runs one ART evasion attack under the query budget and reports its smallest flipping input."""

    distortion = "adversarial"
    default_budget = 2000

    def _attribute(
        self,
        signal: np.ndarray,
        grid: SegmentGrid,
        counter: QueryCounter,
        target: Target,
        rng: np.random.Generator,
        **kwargs: Any,
    ) -> Attribution:
        from art.estimators.classification import BlackBoxClassifierNeuralNetwork

        to_art, to_signal = self._layout(signal.shape)
        view = _BinaryView(counter, signal, target, to_signal)
        x = to_art(signal[None])
        span = float(signal.max() - signal.min()) or 1.0
        estimator = BlackBoxClassifierNeuralNetwork(
            view,
            input_shape=x.shape[1:],
            nb_classes=2,
            channels_first=True,
            clip_values=(float(signal.min()) - span, float(signal.max()) + span),
        )
        last = None
        with _numpy_global_seed(int(rng.integers(2**31))), _quiet_art(), np.errstate(divide="ignore", invalid="ignore"):
            try:
                for attack, options in self._attacks(estimator, signal, grid, counter, to_art):
                    last = attack.generate(x, **options)
                    if view.best is not None:
                        break
            except QueryBudgetExceeded:
                pass  # the budget ends the attack; keep the best flip it saw
        if view.best is not None:
            perturbation = view.best - signal
        elif last is not None:
            perturbation = to_signal(last)[0] - signal
        else:
            perturbation = np.zeros_like(signal)
        return Attribution(
            cell_scores=cell_energy(grid, perturbation), adversarial=view.best, extra={"attack": type(self).__name__}
        )

    def _layout(self, shape: tuple[int, int]):
        """ART's input layout: ``[n, leads, samples]`` as is (override for image-only attacks)."""
        return (lambda s: s.copy()), (lambda a: a)

    @abstractmethod
    def _attacks(self, estimator, signal: np.ndarray, grid: SegmentGrid, counter: QueryCounter, to_art):
        """Yield ``(ART attack, generate() keyword arguments)``, tried in turn until one flips."""


class SquareAttackBaseline(_ArtAttackBaseline):
    """ART `SquareAttack` with ``norm=2`` on an L2 ball sized by SNR.

    Square is written for images, so each lead's samples are laid row by row into a square (zero-padded). The
    ball grows from ``snr_levels_db[0]`` to the last level (radius = mean-removed signal norm ×
    ``10 ** (-snr / 20)``), an equal share of the budget each; the first level that flips ends the search.

    Parameters (besides `PerturbationBaseline`'s; default budget 2,000)
    ----------
    snr_levels_db : tuple of float
        Default: (24, 18, 12, 6, 0).
    """

    name = "square-attack"

    def __init__(self, classifier, *, snr_levels_db: tuple[float, ...] = (24.0, 18.0, 12.0, 6.0, 0.0), **kwargs: Any):
        super().__init__(classifier, **kwargs)
        self.snr_levels_db = tuple(snr_levels_db)

    def _layout(self, shape: tuple[int, int]):
        leads, samples = shape
        side = math.isqrt(samples - 1) + 1

        def to_art(s: np.ndarray) -> np.ndarray:
            out = np.zeros((s.shape[0], leads, side * side), dtype=np.float32)
            out[:, :, :samples] = s
            return out.reshape(s.shape[0], leads, side, side)

        def to_signal(a: np.ndarray) -> np.ndarray:
            return a.reshape(a.shape[0], leads, side * side)[:, :, :samples]

        return to_art, to_signal

    def _attacks(self, estimator, signal: np.ndarray, grid: SegmentGrid, counter: QueryCounter, to_art):
        from art.attacks.evasion import SquareAttack

        norm = float(np.linalg.norm(signal - signal.mean(axis=1, keepdims=True)))
        share = (counter.remaining or 2000) // len(self.snr_levels_db)
        for level in self.snr_levels_db:
            # About three rows per iteration (robustness check, current and new loss).
            yield (
                SquareAttack(
                    estimator,
                    norm=2,
                    eps=norm * 10 ** (-level / 20),
                    max_iter=max(1, share // 3),
                    nb_restarts=1,
                    batch_size=self.batch_size,
                    verbose=False,
                ),
                {},
            )


class SimBABaseline(_ArtAttackBaseline):
    """ART `SimBA` in the sample ("px") basis: try ± epsilon on one random sample at a time, keep what helps.

    Parameters (besides `PerturbationBaseline`'s; default budget 2,000)
    ----------
    epsilon_rel : float
        Step per sample as a fraction of the input's standard deviation. Default: 1.0.
    """

    name = "simba"

    def __init__(self, classifier, *, epsilon_rel: float = 1.0, **kwargs: Any):
        super().__init__(classifier, **kwargs)
        self.epsilon_rel = epsilon_rel

    def _attacks(self, estimator, signal: np.ndarray, grid: SegmentGrid, counter: QueryCounter, to_art):
        from art.attacks.evasion import SimBA

        left = counter.remaining or 2000
        eps = float(signal.std()) * self.epsilon_rel or 0.01
        # Two rows per iteration, one for the initial prediction.
        yield (
            SimBA(
                estimator,
                attack="px",
                order="random",
                epsilon=eps,
                max_iter=max(1, (left - 1) // 2),
                batch_size=1,
                verbose=False,
            ),
            {},
        )


class HopSkipJumpBaseline(_ArtAttackBaseline):
    """ART `HopSkipJump` (L2, decision-based): start across the boundary, then walk along it toward the record.

    The start is the record with every grid cell flattened to its median (one query to confirm it flips);
    HopSkipJump's own uniform-noise starts are its fallback.

    Parameters (besides `PerturbationBaseline`'s; default budget 2,000)
    ----------
    max_eval : int
        Cap on rows per gradient estimate. Default: 100.
    init_eval : int
        Rows of the first gradient estimate. Default: 10.
    """

    name = "hopskipjump"

    def __init__(self, classifier, *, max_eval: int = 100, init_eval: int = 10, **kwargs: Any):
        super().__init__(classifier, **kwargs)
        self.max_eval = max_eval
        self.init_eval = init_eval

    def _attacks(self, estimator, signal: np.ndarray, grid: SegmentGrid, counter: QueryCounter, to_art):
        from art.attacks.evasion import HopSkipJump

        # Start from the record with every cell flattened (no beats at all: surely not the finding); ART checks
        # it with one query and falls back to its own uniform-noise starts if it does not flip.
        start = to_art(cell_medians(grid, signal)[None])
        yield (
            HopSkipJump(
                estimator,
                norm=2,
                max_iter=100,
                max_eval=self.max_eval,
                init_eval=self.init_eval,
                init_size=100,
                batch_size=self.batch_size,
                verbose=False,
            ),
            {"x_adv_init": start},
        )


@contextlib.contextmanager
def _quiet_art() -> Iterator[None]:
    logger = logging.getLogger("art")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)
