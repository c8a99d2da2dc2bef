"""`OracleBaseline`: a reference that is told where the beat is, not a method anyone could run on a new record.

It lays one random draw of each realistic noise kind (default Gaussian, muscle/EMG-band and powerline, from
`ecglens.distortions`) over the annotated beat, ``beat_time_s ± half_width_s`` on every lead with tapered
edges, and bisects the whole-input SNR (`ecglens.metrics.snr_db`) for the weakest noise that still flips the
finding (a batched ladder of levels first, since loud noise may itself look abnormal). The answer is the kind that
flips at the highest SNR. It bounds what knowing *where* buys; a method
that beats it found a cheaper place or noise than the beat itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.signal.windows import tukey

from ecglens import distortions
from ecglens.agent.grid import SegmentGrid
from ecglens.baselines.base import Attribution, PerturbationBaseline
from ecglens.baselines.cells import cell_energy
from ecglens.classifiers.base import QueryCounter
from ecglens.targets import Target


class OracleBaseline(PerturbationBaseline):
    """Noise over the known beat, SNR bisected per kind.

    Parameters (besides `PerturbationBaseline`'s; default query budget 100)
    ----------
    kinds : sequence of str
        Noise kinds tried (`ecglens.distortions.KINDS` or aliases). Default: ("gaussian", "muscle", "powerline").
    half_width_s : float
        Half-width of the distorted span around the beat in seconds. Default: 0.15.
    snr_range_db : tuple of float
        ``(lowest, highest)`` SNR searched, in dB. Default: (-20, 40).
    ladder_step_db : float
        Spacing of the first, batched look over the range, in dB. Default: 6.
    bisection_steps : int
        Queries per kind after the ladder. Default: 8 (6 dB / 2**8, about 0.02 dB).

    `explain` needs ``beat_time_s`` (s from the input's start).
    """

    name = "oracle"
    distortion = "oracle"
    default_budget = 100

    def __init__(
        self,
        classifier,
        *,
        kinds: Sequence[str] = ("gaussian", "muscle", "powerline"),
        half_width_s: float = 0.15,
        snr_range_db: tuple[float, float] = (-20.0, 40.0),
        ladder_step_db: float = 6.0,
        bisection_steps: int = 8,
        **kwargs: Any,
    ):
        super().__init__(classifier, **kwargs)
        self.kinds = tuple(kinds)
        self.half_width_s = half_width_s
        self.snr_range_db = snr_range_db
        self.ladder_step_db = ladder_step_db
        self.bisection_steps = bisection_steps

    def _attribute(
        self,
        signal: np.ndarray,
        grid: SegmentGrid,
        counter: QueryCounter,
        target: Target,
        rng: np.random.Generator,
        **kwargs: Any,
    ) -> Attribution:
        if kwargs.get("beat_time_s") is None:
            raise ValueError("the oracle needs beat_time_s, the annotated beat's time in seconds")
        fs = grid.fs
        a = max(0, int(round((float(kwargs["beat_time_s"]) - self.half_width_s) * fs)))
        b = min(signal.shape[1], int(round((float(kwargs["beat_time_s"]) + self.half_width_s) * fs)))
        if b - a < 2:
            raise ValueError(f"beat at {kwargs['beat_time_s']} s lies outside the {signal.shape[1] / fs:.2f} s input")
        centred = signal - signal.mean(axis=1, keepdims=True)
        e_signal = float(np.sum(centred.astype(np.float64) ** 2))
        best, best_snr, tried = None, -np.inf, {}
        for kind in self.kinds:
            shape = np.zeros_like(signal)
            try:
                draw = distortions.noise_batch(kind, signal.shape[0], signal.shape[1], fs, rng)
            except ValueError:  # e.g. 50 Hz powerline at a rate that cannot carry it
                tried[kind] = None
                continue
            shape[:, a:b] = draw[:, a:b] * tukey(b - a, 0.5)[None, :]
            unit = shape / np.sqrt(np.sum(shape.astype(np.float64) ** 2))  # unit energy
            snr = self._bisect(signal, unit, e_signal, counter, target)
            tried[kind] = snr
            if snr is not None and snr > best_snr:
                best_snr = snr
                best = (signal + unit * np.sqrt(e_signal * 10 ** (-snr / 10))).astype(np.float32)
        span = np.zeros_like(signal)
        span[:, a:b] = 1.0  # without a flip, the cells it was told about still rank first
        scores = cell_energy(grid, best - signal if best is not None else span)
        return Attribution(
            cell_scores=scores,
            adversarial=best,
            extra={"flip_snr_db_by_kind": {k: (None if v is None else round(float(v), 3)) for k, v in tried.items()}},
        )

    def _bisect(
        self, signal: np.ndarray, unit: np.ndarray, e_signal: float, counter: QueryCounter, target: Target
    ) -> float | None:
        """Highest SNR (dB) in range at which ``signal + scaled unit`` flips, or None when no level does.

        A classifier need not be monotone in noise (loud noise can look like ectopy), so a ladder of levels
        ``ladder_step_db`` apart is asked first in one call; the bisection then runs between the highest level
        that flips and the one above it.
        """

        def noisy(snr: float) -> np.ndarray:
            return (signal + unit * np.sqrt(e_signal * 10 ** (-snr / 10))).astype(np.float32)

        lo, hi = self.snr_range_db
        ladder = np.arange(hi, lo - 1e-9, -self.ladder_step_db)
        if counter.remaining is not None and counter.remaining < len(ladder) + self.bisection_steps:
            return None
        flips = target.flipped(counter.predict_proba(np.stack([noisy(v) for v in ladder])))
        if not flips.any():
            return None
        k = int(np.argmax(flips))  # highest SNR that flips
        if k == 0:
            return float(ladder[0])
        below, above = float(ladder[k]), float(ladder[k - 1])  # flips at `below`, holds at `above`
        for _ in range(self.bisection_steps):
            mid = 0.5 * (below + above)
            if target.flipped(counter.predict_proba(noisy(mid)[None]))[0]:
                below = mid
            else:
                above = mid
        return below
