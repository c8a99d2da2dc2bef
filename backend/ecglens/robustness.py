"""The robustness report: how much realistic noise a classifier's diagnosis withstands.

For one classifier window of the record and each distortion kind (`ecglens.distortions.KINDS`), noise is laid
over the whole window at the NSTDB stress-test levels (24, 18, 12, 6, 0, -6 dB SNR, nst-style: against the QRS
power of each lead, see `ecglens.distortions`), with ``seeds`` independent noise realisations per kind. Each
realisation keeps its shape across levels (only its amplitude changes), so for each one the highest SNR at
which the diagnosis flips is a well-defined threshold, found by bisection between 40 and -12 dB to 0.5 dB.

Every classifier row goes through one `QueryCounter`; rows are batched: one call to choose the window, one for
all (kind, seed, level) trials, then one per bisection step for all (kind, seed) pairs together.

Score (for the README): *the share of noisy versions of this ECG on which the classifier kept its diagnosis —
each noise type at each of the six stress-test levels, several random draws each. 1 means the diagnosis
survived every one; 0.5 that it survived half of them, typically only the milder half.*
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np

from ecglens.classifiers.base import Classifier, QueryCounter, input_samples
from ecglens.classifiers.fit import fit_record
from ecglens.distortions import NSTDB_SNR_LEVELS_DB, noise_batch, parse_kinds
from ecglens.ecg import Ecg
from ecglens.errors import QueryBudgetExceeded
from ecglens.explanation import Diagnosis, DistortionRobustness, RobustnessReport
from ecglens.qrs import signal_power
from ecglens.targets import Target, choose_target, diagnosed_targets, window_for_label

SEARCH_HIGH_DB = 40.0
SEARCH_LOW_DB = -12.0
RESOLUTION_DB = 0.5

SCORE_DEFINITION = (
    "Share of noisy versions of this ECG (each noise type at each stress-test SNR level, several "
    "random draws) on which the classifier kept its diagnosis; 1 = it always held."
)

# Class names that mean "no finding" (the same list as the explainer's env uses).


def robustness(
    ecg: Ecg,
    classifier: Classifier,
    *,
    distortions: Sequence[str] | str | None = None,
    snr_levels_db: Sequence[float] = NSTDB_SNR_LEVELS_DB,
    seeds: int = 3,
    seed: int = 0,
    start_s: float | None = None,
    label: str | None = None,
    mains_hz: float = 50.0,
    query_budget: int | None = None,
    progress: Callable[[float], None] | None = None,
) -> RobustnessReport:
    """Robustness of ``classifier``'s diagnosis of ``ecg`` to realistic noise at calibrated SNRs.

    Parameters
    ----------
    ecg : Ecg
        The record; it is fitted to the classifier (resampled, leads mapped: `classifiers.fit.fit_record`).
    classifier : Classifier
        The black box; only ``predict_proba`` and the card fields are used.
    distortions : sequence of str, comma-separated str, or None
        Kinds to test (names or aliases, see `ecglens.distortions.KINDS`). Default: None (all five).
    snr_levels_db : sequence of float
        SNR levels in dB at which the diagnosed class's probability is reported. Default: the NSTDB levels
        (24, 18, 12, 6, 0, -6).
    seeds : int
        Noise realisations per kind. Default: 3.
    seed : int
        Seeds the realisations; the same record, classifier and seed give the same report. Default: 0.
    start_s : float or None
        Start (s, in the record) of the classifier window to test. Default: None (the window where the
        diagnosed finding is most probable, non-normal findings first, chosen with one batched query; pass the
        explanation's ``start_s`` to test the window that was explained).
    label : str or None
        The class whose diagnosis is tested. Default: None (the diagnosis: the most probable class at or above
        its threshold for multilabel classifiers, else the argmax class).
    mains_hz : float
        Mains frequency (Hz) for powerline noise. Default: 50.0.
    query_budget : int or None
        Hard cap on classifier rows. The window choice and the level grid must fit (else
        `QueryBudgetExceeded`); the bisection stops early when the budget runs out (``extra["budget_exhausted"]``).
        Default: None (no cap; about ``windows + kinds*seeds*(levels + 5)`` rows are used).
    progress : callable or None
        Called with a float in [0, 1] as the work proceeds, and with 1.0 at the end. Default: None.

    Returns
    -------
    RobustnessReport
        ``label``, ``score`` (share of (kind, level, seed) trials where the diagnosis held), one
        `DistortionRobustness` per kind (flip SNR = median over seeds of the highest SNR at which the
        diagnosis flips, None when it holds at -12 dB for most seeds; mean probability and flip rate per
        level), ``queries`` and ``elapsed_s``. ``extra`` holds the window, the flip rule, per-seed flip SNRs and
        any kind that could not be applied at the classifier's rate (e.g. 60 Hz mains at 100 Hz).
    """
    started = time.perf_counter()
    report_progress = progress or (lambda _fraction: None)
    kinds = list(parse_kinds(distortions))
    levels = sorted((float(x) for x in snr_levels_db), reverse=True)
    if seeds < 1:
        raise ValueError(f"seeds must be at least 1, got {seeds}")
    counter = QueryCounter(classifier, budget=query_budget)
    fitted = fit_record(ecg, counter)
    n = input_samples(counter)

    window, probs, window_start = window_for_label(fitted, counter, n, start_s, label)
    target = choose_target(probs, counter, label)
    report_progress(0.1)

    # One realisation per (kind, seed) and lead; the record's QRS power per lead scales it to each SNR.
    power = signal_power(fitted.signal, fitted.fs)
    noises, trial_kinds, skipped = [], [], {}
    for k, kind in enumerate(kinds):
        for s in range(seeds):
            rng = np.random.default_rng([seed, k, s])
            try:
                noises.append(noise_batch(kind, fitted.n_leads, n, fitted.fs, rng, mains_hz=mains_hz))
            except ValueError as exc:  # e.g. 60 Hz mains at 100 Hz: the kind cannot exist at this rate
                skipped[kind] = str(exc)
                break
            trial_kinds.append(kind)
    kinds = [k for k in kinds if k not in skipped]
    # A record shorter than the window is zero-padded by the window choice; the padding gets no noise.
    valid = max(1, min(n, fitted.n_samples - int(round(window_start * fitted.fs))))
    stacked = np.stack(noises) if noises else np.zeros((0, fitted.n_leads, n), np.float32)
    stacked[:, :, valid:] = 0.0
    trials = _Trials(window, stacked, power, counter, target, valid)

    needed = trials.count * len(levels)
    if query_budget is not None and counter.remaining is not None and needed > counter.remaining:
        raise QueryBudgetExceeded(
            f"robustness needs {needed} more queries for {len(kinds)} kinds x {seeds} "
            f"seeds x {len(levels)} levels, {counter.remaining} left of {query_budget}"
        )
    # All (trial, level) rows in one call: [trials, levels] flipped / probability.
    flip_grid, prob_grid = trials.evaluate(
        np.repeat(np.arange(trials.count), len(levels)), np.tile(levels, trials.count)
    )
    flip_grid = flip_grid.reshape(trials.count, len(levels))
    prob_grid = prob_grid.reshape(trials.count, len(levels))
    report_progress(0.4)

    flip_snr, exhausted = _bisect_flip_snr(trials, levels, flip_grid, lambda f: report_progress(0.4 + 0.6 * f))

    results, per_seed = [], {}
    trial_kinds_arr = np.array(trial_kinds)
    for kind in kinds:
        rows = trial_kinds_arr == kind
        per_seed[kind] = [None if not np.isfinite(v) else float(v) for v in flip_snr[rows]]
        results.append(
            DistortionRobustness(
                distortion=kind,
                flip_snr_db=_median_flip(flip_snr[rows]),
                probability_at_snr={lv: float(prob_grid[rows, j].mean()) for j, lv in enumerate(levels)},
                flip_rate_at_snr={lv: float(flip_grid[rows, j].mean()) for j, lv in enumerate(levels)},
            )
        )
    score = float(1.0 - flip_grid.mean()) if flip_grid.size else 1.0
    names = tuple(counter.class_names)
    diagnosis = Diagnosis(
        label=target.label,
        probabilities={c: float(p) for c, p in zip(names, probs)},
        findings=[t.label for t in diagnosed_targets(probs, counter) if t.multilabel and probs[t.index] >= t.threshold]
        if counter.multilabel
        else [target.label],
    )
    report_progress(1.0)
    return RobustnessReport(
        label=target.label,
        score=score,
        distortions=results,
        snr_levels_db=levels,
        queries=counter.queries,
        elapsed_s=time.perf_counter() - started,
        extra={
            "diagnosis": diagnosis.to_dict(),
            "start_s": window_start,
            "window_s": n / fitted.fs,
            "fs": fitted.fs,
            "leads": list(fitted.leads),
            "flip_rule": (
                f"probability of {target.label} below {target.threshold:.4g}"
                if target.multilabel
                else f"another class than {target.label} becomes the most probable"
            ),
            "held_on_clean": not bool(target.flipped(probs[None])[0]),
            "flip_snr_db_per_seed": per_seed,
            "search_range_db": [SEARCH_HIGH_DB, SEARCH_LOW_DB],
            "resolution_db": RESOLUTION_DB,
            "seeds": int(seeds),
            "seed": int(seed),
            "mains_hz": float(mains_hz),
            "skipped": skipped,
            "budget_exhausted": exhausted,
            "score_definition": SCORE_DEFINITION,
        },
    )


class _Trials:
    """Noisy versions of one window: trial ``i`` is noise realisation ``i`` scaled to an SNR and added.

    window : float32 ``[leads, samples]``; noises : float32 ``[trials, leads, samples]``;
    power : ``[leads]`` signal power (mV²) the SNR refers to; valid : samples of the window that are record
    (the rest is padding); the noise power is measured over them.
    """

    def __init__(
        self,
        window: np.ndarray,
        noises: np.ndarray,
        power: np.ndarray,
        counter: QueryCounter,
        target: Target,
        valid: int,
    ):
        self.window = window
        self.noises = noises
        self.counter = counter
        self.target = target
        # Noise power is the mean square over the window, so each lead's gain is sqrt(S / 10^(SNR/10) / P_n).
        p_noise = np.mean(noises[:, :, :valid].astype(np.float64) ** 2, axis=2)  # [trials, leads]
        with np.errstate(divide="ignore", invalid="ignore"):
            self.unit_gain = np.where((p_noise > 0) & (power[None] > 0), np.sqrt(power[None] / p_noise), 0.0)

    @property
    def count(self) -> int:
        return int(self.noises.shape[0])

    def evaluate(self, trial: np.ndarray, snr_db: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(flipped bool ``[m]``, probability of the diagnosed class ``[m]``) for rows (trial, SNR), one call."""
        trial = np.asarray(trial, dtype=int)
        if trial.size == 0:
            return np.zeros(0, dtype=bool), np.zeros(0)
        gain = self.unit_gain[trial] * 10.0 ** (-np.asarray(snr_db, dtype=np.float64)[:, None] / 20.0)
        batch = self.window[None] + (self.noises[trial] * gain[:, :, None]).astype(np.float32)
        probs = self.counter.predict_proba(batch)
        return self.target.flipped(probs), probs[:, self.target.index]


def _bisect_flip_snr(
    trials: _Trials, levels: list[float], flip_grid: np.ndarray, report: Callable[[float], None]
) -> tuple[np.ndarray, bool]:
    """Highest SNR (dB) at which each trial flips, to `RESOLUTION_DB`; -inf when it holds at `SEARCH_LOW_DB`.

    The level grid brackets each trial first (the diagnosis is taken to flip below some SNR and hold above):
    ``lo`` = highest level that flipped, ``hi`` = the level above it. Trials that flipped at the top level are
    checked at `SEARCH_HIGH_DB`, and those that held at the bottom level at `SEARCH_LOW_DB`; then all open
    brackets are halved together, one batched query per step. Returns (flip SNRs ``[trials]``, whether the
    query budget ran out first; then the bracket's flipping end is reported, at a coarser resolution).
    """
    t = trials.count
    lo = np.full(t, np.nan)  # an SNR known to flip
    hi = np.full(t, np.nan)  # an SNR known to hold, above lo
    for i in range(t):
        flipped = np.flatnonzero(flip_grid[i])
        if len(flipped) == 0:
            hi[i] = levels[-1]
            continue
        j = int(flipped[0])  # levels run from high to low SNR
        lo[i] = levels[j]
        hi[i] = levels[j - 1] if j > 0 else np.nan
    exhausted = False

    def ask(rows: np.ndarray, snr: np.ndarray) -> np.ndarray | None:
        nonlocal exhausted
        if rows.size == 0:
            return np.zeros(0, dtype=bool)
        if trials.counter.remaining is not None and trials.counter.remaining < rows.size:
            exhausted = True
            return None
        return trials.evaluate(rows, snr)[0]

    # Open ends of the bracket: flipped already at the top level, or held down to the bottom level.
    top = np.flatnonzero(np.isnan(hi))
    bottom = np.flatnonzero(np.isnan(lo) & (hi > SEARCH_LOW_DB))
    rows = np.concatenate([top, bottom])
    snr = np.concatenate([np.full(len(top), SEARCH_HIGH_DB), np.full(len(bottom), SEARCH_LOW_DB)])
    answer = ask(rows, snr)
    if answer is not None:
        for r, s, f in zip(rows, snr, answer):
            if s == SEARCH_HIGH_DB:
                if f:
                    lo[r] = hi[r] = SEARCH_HIGH_DB  # flips even at 40 dB: report 40
                else:
                    hi[r] = SEARCH_HIGH_DB
            elif f:
                lo[r] = SEARCH_LOW_DB
    else:  # no budget for the open ends: report the grid's answer
        hi[top] = lo[top]
    # Bisection over all open brackets at once.
    steps = int(np.ceil(np.log2(max(SEARCH_HIGH_DB - SEARCH_LOW_DB, RESOLUTION_DB) / RESOLUTION_DB)))
    for step in range(steps):
        open_ = np.flatnonzero(~np.isnan(lo) & ~np.isnan(hi) & (hi - lo > RESOLUTION_DB))
        if open_.size == 0 or exhausted:
            break
        mid = (lo[open_] + hi[open_]) / 2
        answer = ask(open_, mid)
        if answer is None:
            break
        lo[open_[answer]] = mid[answer]
        hi[open_[~answer]] = mid[~answer]
        report((step + 1) / steps)
    return np.where(np.isnan(lo), -np.inf, lo), exhausted


def _median_flip(values: np.ndarray) -> float | None:
    """Median over seeds with "never flipped" (-inf) counted as the lowest value; None when that is the median."""
    if values.size == 0:
        return None
    v = np.sort(values)
    m = len(v)
    med = v[m // 2] if m % 2 else (v[m // 2 - 1] + v[m // 2]) / 2
    return float(med) if np.isfinite(med) else None
