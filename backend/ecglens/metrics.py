"""Metrics for explanations and minimal distortions: SNR, L2, pointing game, deletion / insertion AUC (flat-line and
ROAD-style noisy linear imputation), success.

Pure functions named after the metric. Signals are ``[leads, samples]`` arrays in mV; a ranking is a sequence of
cell numbers of a `SegmentGrid`, most important first. The deletion and insertion curves query the classifier
through their own `QueryCounter`, never the explainer's, so an evaluation never costs a method queries.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ecglens.agent.grid import SegmentGrid
from ecglens.baselines.cells import cell_mask, cell_medians
from ecglens.classifiers.base import Classifier, QueryCounter


def snr_db(clean: np.ndarray, noisy: np.ndarray) -> float:
    """Signal-to-noise ratio of a distorted signal, in dB.

    ``10 * log10(E_signal / E_noise)`` with ``E_signal`` the energy (sum of squares) of ``clean`` after removing
    each lead's mean, and ``E_noise`` the energy of ``noisy - clean``. The usual definition in ECG noise-stress
    testing (Moody, Muldrow & Mark, "A noise stress test for arrhythmia detectors", Computers in Cardiology 11,
    1984), without the per-beat amplitude estimate.

    Parameters
    ----------
    clean, noisy : np.ndarray
        Same shape, ``[leads, samples]`` or ``[samples]``, in mV.

    Returns
    -------
    float
        SNR in dB; ``inf`` when ``noisy == clean``, ``-inf`` when the clean signal is flat but noise was added.
    """
    clean, noisy = _same_shape(clean, noisy)
    centred = clean - clean.mean(axis=-1, keepdims=True)
    e_signal = float(np.sum(centred**2))
    e_noise = float(np.sum((noisy - clean) ** 2))
    if e_noise == 0.0:
        return float("inf")
    if e_signal == 0.0:
        return float("-inf")
    return float(10.0 * np.log10(e_signal / e_noise))


def l2(clean: np.ndarray, noisy: np.ndarray) -> float:
    """L2 norm of the distortion ``noisy - clean`` in mV (square root of its summed squares over all leads)."""
    clean, noisy = _same_shape(clean, noisy)
    return float(np.sqrt(np.sum((noisy - clean) ** 2)))


def pointing_game(segments_or_top_segment: Any, beat_time_s: float, tolerance_s: float = 0.15) -> bool:
    """Whether the explanation's top segment points at the annotated beat.

    A hit when the top segment ``[start_s, end_s)`` overlaps the window ``[beat_time_s - tolerance_s,
    beat_time_s + tolerance_s]``, i.e. ``start_s <= beat + tol`` and ``end_s > beat - tol``. Leads are not
    judged: a beat is on every lead. Zhang et al., "Top-down neural attention by excitation backprop", ECCV 2016.

    Parameters
    ----------
    segments_or_top_segment :
        An `Explanation` (its highest-scored segment is used), a list of segments (objects with ``start_s``,
        ``end_s`` and ``score``; the highest score wins, the first on ties), one segment, or a ``(start_s, end_s)``
        pair, in seconds from the explained input's start.
    beat_time_s : float
        Time of the annotated beat (e.g. the PVC's R peak) in seconds from the same start.
    tolerance_s : float
        Half-width of the accepted window in seconds. Default: 0.15.

    Returns
    -------
    bool
        False when there is no segment at all.
    """
    span = _top_span(segments_or_top_segment)
    if span is None:
        return False
    start_s, end_s = span
    return bool(start_s <= beat_time_s + tolerance_s and end_s > beat_time_s - tolerance_s)


def deletion_curve(
    signal: np.ndarray,
    ranking_of_cells: Sequence[int],
    grid: SegmentGrid,
    classifier: Classifier,
    target_class: int | str,
    steps: int = 21,
    *,
    insertion: bool = False,
    counter: QueryCounter | None = None,
    fill: str = "flat",
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Probability of ``target_class`` as the top-ranked cells are flattened (or, for insertion, restored).

    Step ``i`` of ``steps`` flattens the first ``k_i = round(i / (steps - 1) * n_cells)`` cells of the ranking,
    each to a flat line at its own median (`ecglens.baselines.cells.flatten`). Insertion starts from every cell flattened
    and restores the first ``k_i`` cells of the ranking. Cells missing from a partial ranking follow it in
    cell order. All ``steps`` inputs go to the classifier in one batch. With ``fill="road"`` removed samples are
    filled by noisy linear imputation from the kept neighbours instead (`road_fill`).

    Parameters
    ----------
    signal : np.ndarray
        ``[leads, samples]`` in mV, on ``grid``.
    ranking_of_cells : sequence of int
        Cell numbers, most important first.
    grid : SegmentGrid
        The shared grid (`ecglens.agent.grid`; `ecglens.baselines.cells.fixed_grid` for lead × 0.25 s).
    classifier : Classifier
        Queried through ``counter``; a `QueryCounter` passed here is unwrapped, so the explainer's tally is
        never touched.
    target_class : int or str
        Column of ``predict_proba`` (or a class name).
    steps : int
        Points on the curve, from none to all cells. Default: 21.
    insertion : bool
        Restore instead of flatten. Default: False.
    counter : QueryCounter or None
        Evaluation counter to charge (e.g. to report evaluation cost). Default: a fresh one.
    fill : str
        "flat" (each removed cell a flat line at its median) or "road" (`road_fill`). Default: "flat".
    seed : int
        Seed of the ROAD noise; one realisation per call, the same at every step. Default: 0.

    Returns
    -------
    fractions : np.ndarray
        ``[steps]`` fraction of cells flattened (restored), 0 to 1.
    probabilities : np.ndarray
        ``[steps]`` probability of the target class.
    """
    if steps < 2:
        raise ValueError(f"steps must be at least 2, got {steps}")
    if fill not in ("flat", "road"):
        raise ValueError(f"fill must be 'flat' or 'road', got {fill!r}")
    signal = np.asarray(signal, dtype=np.float32)
    order = _full_ranking(ranking_of_cells, grid.n_cells)
    column = _class_column(classifier, target_class)
    counts = np.round(np.linspace(0, grid.n_cells, steps)).astype(int)
    batch = np.empty((steps, *signal.shape), dtype=np.float32)
    if fill == "road":
        noise = _road_noise(signal, seed)
        for i, k in enumerate(counts):
            mask = cell_mask(grid, order[:k])
            batch[i] = road_fill(signal, ~mask if insertion else mask, noise=noise)
    else:
        flat = cell_medians(grid, signal)
        for i, k in enumerate(counts):
            mask = cell_mask(grid, order[:k])
            batch[i] = np.where(mask, signal, flat) if insertion else np.where(mask, flat, signal)
    evaluator = counter if counter is not None else QueryCounter(_unwrap(classifier))
    probabilities = np.asarray(evaluator.predict_proba(batch))[:, column]
    return counts / grid.n_cells, probabilities.astype(np.float64)


def deletion_auc(
    signal: np.ndarray,
    ranking_of_cells: Sequence[int],
    grid: SegmentGrid,
    classifier: Classifier,
    target_class: int | str,
    steps: int = 21,
    *,
    counter: QueryCounter | None = None,
) -> float:
    """Area under the deletion curve: lower is better (the ranking removes the evidence fastest).

    Trapezoid rule over the fraction removed in [0, 1] of the target probability, see `deletion_curve`.
    Petsiuk, Das & Saenko, "RISE: Randomized input sampling for explanation of black-box models", BMVC 2018.
    """
    x, y = deletion_curve(signal, ranking_of_cells, grid, classifier, target_class, steps, counter=counter)
    return float(np.trapezoid(y, x))


def insertion_auc(
    signal: np.ndarray,
    ranking_of_cells: Sequence[int],
    grid: SegmentGrid,
    classifier: Classifier,
    target_class: int | str,
    steps: int = 21,
    *,
    counter: QueryCounter | None = None,
) -> float:
    """Area under the insertion curve: higher is better (the ranking restores the evidence fastest).

    Starts from every cell flattened to its median and restores cells in ranking order; see `deletion_curve`.
    Petsiuk, Das & Saenko, BMVC 2018.
    """
    x, y = deletion_curve(
        signal, ranking_of_cells, grid, classifier, target_class, steps, insertion=True, counter=counter
    )
    return float(np.trapezoid(y, x))


def road_fill(signal: np.ndarray, removed: np.ndarray, *, noise: np.ndarray | None = None, seed: int = 0) -> np.ndarray:
    """``signal`` with the ``removed`` samples imputed as in ROAD (Rong, Leemann, Borisov, Kasneci & Kasneci,
    "A consistent and efficient evaluation strategy for attribution methods", ICML 2022).

    ROAD replaces each removed value by the mean of its neighbours (a sparse linear system) plus noise, so that the
    shape of the removed region does not itself tell the classifier where the evidence was (the "class
    information leakage" of a flat or mean fill). On a time series, neighbours are the samples before and after
    on the same lead, and that system's solution is the straight line between the nearest kept samples (constant
    beyond the first / last kept one); a lead removed entirely takes its own median. The noise is Gaussian with
    a standard deviation of 5% of each lead's robust spread (1.4826 x MAD), as ROAD's small additive noise.

    Parameters
    ----------
    signal : np.ndarray
        ``[leads, samples]`` in mV.
    removed : np.ndarray
        bool, same shape: True where a sample is removed.
    noise : np.ndarray or None
        The noise to add on removed samples (same shape), e.g. one realisation shared by the steps of a curve.
        Default: None (drawn with ``seed``).
    seed : int
        Seed of the noise when ``noise`` is None. Default: 0.
    """
    signal = np.asarray(signal, dtype=np.float32)
    removed = np.asarray(removed, dtype=bool)
    if removed.shape != signal.shape:
        raise ValueError(f"removed {removed.shape} and signal {signal.shape} differ in shape")
    if noise is None:
        noise = _road_noise(signal, seed)
    out = signal.copy()
    t = np.arange(signal.shape[1])
    for lead in range(signal.shape[0]):
        gone = removed[lead]
        if not gone.any():
            continue
        kept = np.flatnonzero(~gone)
        base = (
            np.interp(t[gone], kept, signal[lead, kept])
            if kept.size
            else np.full(int(gone.sum()), np.median(signal[lead]))
        )
        out[lead, gone] = base + noise[lead, gone]
    return out


def _road_noise(signal: np.ndarray, seed: int) -> np.ndarray:
    mad = np.median(np.abs(signal - np.median(signal, axis=1, keepdims=True)), axis=1, keepdims=True)
    sd = 0.05 * 1.4826 * mad
    return (np.random.default_rng(seed).standard_normal(signal.shape) * sd).astype(np.float32)


def road_deletion_auc(
    signal: np.ndarray,
    ranking_of_cells: Sequence[int],
    grid: SegmentGrid,
    classifier: Classifier,
    target_class: int | str,
    steps: int = 21,
    *,
    counter: QueryCounter | None = None,
    seed: int = 0,
) -> float:
    """Area under the ROAD deletion curve (most relevant first, `road_fill`): lower is better.

    A second faithfulness metric beside the flat-line `deletion_auc`: a method whose probes flatten cells may
    learn what a flat line does to the classifier rather than where the evidence is; ROAD's imputation differs.
    """
    x, y = deletion_curve(
        signal, ranking_of_cells, grid, classifier, target_class, steps, counter=counter, fill="road", seed=seed
    )
    return float(np.trapezoid(y, x))


def is_flipped(probabilities: np.ndarray, target_class: int, threshold: float) -> bool:
    """Whether a finding is gone: its probability fell below its operating threshold.

    The same rule flags a finding on the clean record (probability >= threshold), so flip and flag agree.
    """
    return bool(float(np.asarray(probabilities).ravel()[target_class]) < threshold)


def attack_success(
    flipped: Sequence[bool], snr_db: Sequence[float] | None = None, min_snr_db: float | None = None
) -> float:
    """Share of cases whose diagnosis was flipped, optionally only counting flips at SNR >= ``min_snr_db``.

    The attack success rate of the adversarial-example literature (e.g. Chen, Jordan & Wainwright,
    "HopSkipJumpAttack", IEEE S&P 2020), with distortion size measured as SNR in dB rather than an Lp ball.

    Parameters
    ----------
    flipped : sequence of bool
        One per case.
    snr_db : sequence of float or None
        SNR (dB) of each case's flipping distortion; needed with ``min_snr_db``. Default: None.
    min_snr_db : float or None
        Count a flip only when its SNR is at least this. Default: None (every flip counts).

    Returns
    -------
    float
        In [0, 1]; ``nan`` for no cases.
    """
    flipped_arr = np.asarray(flipped, dtype=bool)
    if flipped_arr.size == 0:
        return float("nan")
    if min_snr_db is not None:
        if snr_db is None:
            raise ValueError("min_snr_db needs snr_db")
        snr = np.asarray(snr_db, dtype=np.float64)
        if snr.shape != flipped_arr.shape:
            raise ValueError(f"{snr.size} SNR values for {flipped_arr.size} cases")
        flipped_arr = flipped_arr & (np.nan_to_num(snr, nan=-np.inf) >= min_snr_db)
    return float(flipped_arr.mean())


def _same_shape(clean: np.ndarray, noisy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    clean = np.asarray(clean, dtype=np.float64)
    noisy = np.asarray(noisy, dtype=np.float64)
    if clean.shape != noisy.shape:
        raise ValueError(f"clean {clean.shape} and noisy {noisy.shape} differ in shape")
    return clean, noisy


def _top_span(obj: Any) -> tuple[float, float] | None:
    if hasattr(obj, "segments") and hasattr(obj, "saliency"):  # an Explanation
        obj = obj.segments
    if hasattr(obj, "start_s"):
        return float(obj.start_s), float(obj.end_s)
    if isinstance(obj, tuple) and len(obj) == 2 and all(isinstance(v, (int, float, np.floating)) for v in obj):
        return float(obj[0]), float(obj[1])
    items = list(obj)
    if not items:
        return None
    top = max(range(len(items)), key=lambda i: (float(getattr(items[i], "score", 0.0)), -i))
    return _top_span(items[top])


def _full_ranking(ranking: Sequence[int], n_cells: int) -> np.ndarray:
    ranking = [int(c) for c in ranking]
    if any(not 0 <= c < n_cells for c in ranking):
        raise ValueError(f"ranking names cells outside a grid of {n_cells} cells")
    seen = set(ranking)
    if len(seen) != len(ranking):
        raise ValueError("ranking names a cell twice")
    return np.array(ranking + [c for c in range(n_cells) if c not in seen], dtype=np.int64)


def _class_column(classifier: Classifier, target_class: int | str) -> int:
    if isinstance(target_class, str):
        names = list(classifier.class_names)
        if target_class not in names:
            raise ValueError(f"class {target_class!r} not among {', '.join(names)}")
        return names.index(target_class)
    return int(target_class)


def _unwrap(classifier: Classifier) -> Classifier:
    while isinstance(classifier, QueryCounter):
        classifier = classifier.classifier
    return classifier
