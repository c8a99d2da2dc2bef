"""Confidence intervals for benchmark figures: is a difference between two methods, or a margin to a target,
larger than what the choice of cases alone would give?

A benchmark runs on a few dozen cases. Its shares (pointing game, flipped) are read with Wilson's interval
(`scipy.stats.binomtest`); its means and medians with a percentile bootstrap over cases (`scipy.stats.bootstrap`).
When one case contributes several correlated values (a robustness report's seeds and noise draws), ``groups``
resamples whole cases, not single values, so the interval is not made too narrow by counting a case many times.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

CONFIDENCE = 0.95
N_RESAMPLES = 2000


def proportion_ci(successes: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Wilson score interval of a share ``successes / n``; ``(nan, nan)`` when ``n`` is 0."""
    from scipy.stats import binomtest

    if n <= 0:
        return float("nan"), float("nan")
    ci = binomtest(int(successes), int(n)).proportion_ci(confidence_level=confidence, method="wilson")
    return float(ci.low), float(ci.high)


def bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    statistic: Callable[[np.ndarray], float] = np.mean,
    *,
    groups: Sequence | None = None,
    confidence: float = CONFIDENCE,
    n_resamples: int = N_RESAMPLES,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic(values)``.

    Parameters
    ----------
    values : sequence of float, or array ``[n, k]``
        One value (or one row of ``k`` paired values) per trial; trials holding a NaN are left out.
    statistic : callable
        Of the selected values (``np.mean``, ``np.median``, ...; of an ``[m, k]`` array for paired rows).
        Default: ``np.mean``.
    groups : sequence or None
        One label per value (e.g. the case): whole groups are resampled (a cluster bootstrap). Default: None
        (each value on its own).
    confidence, n_resamples, seed
        Interval level (default 0.95), bootstrap resamples (default 2000) and the resampling seed (default 0), so
        the same rows give the same interval.

    Returns ``(nan, nan)`` with fewer than two values (or groups).
    """
    from scipy.stats import bootstrap

    values = np.asarray(values, dtype=np.float64)
    keep = ~np.isnan(values) if values.ndim == 1 else ~np.isnan(values).any(axis=1)
    values = values[keep]
    labels = np.arange(len(values)) if groups is None else np.asarray(groups, dtype=object)[keep]
    _, members = np.unique(labels.astype(str), return_inverse=True)
    n_groups = int(members.max()) + 1 if members.size else 0
    if n_groups < 2:
        return float("nan"), float("nan")
    by_group = [values[members == g] for g in range(n_groups)]

    def stat(idx: np.ndarray) -> float:
        return float(statistic(np.concatenate([by_group[int(i)] for i in idx])))

    if len({stat(np.array([g])) for g in range(n_groups)}) == 1:
        v = stat(np.arange(n_groups))  # every group says the same: the interval is that value
        return v, v
    res = bootstrap(
        (np.arange(n_groups),),
        stat,
        vectorized=False,
        n_resamples=n_resamples,
        confidence_level=confidence,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def paired_difference_ci(
    a: Sequence[float], b: Sequence[float], statistic: Callable[[np.ndarray], float] = np.mean, **kwargs
) -> tuple[float, tuple[float, float]]:
    """``statistic(a - b)`` over paired values (same cases) and its bootstrap interval (`bootstrap_ci`)."""
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    if d.size == 0 or np.isnan(d).all():
        return float("nan"), (float("nan"), float("nan"))
    return float(statistic(d[~np.isnan(d)])), bootstrap_ci(d, statistic, **kwargs)


def format_ci(lo: float, hi: float, fmt: str = ".2f") -> str:
    """``"[lo, hi]"``, or "–" when undefined."""
    if np.isnan(lo) or np.isnan(hi):
        return "–"
    return f"[{lo:{fmt}}, {hi:{fmt}}]"
