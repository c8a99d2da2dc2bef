"""Metrics for explanations and minimal distortions: SNR, L2, pointing game, deletion / insertion AUC, success.

Pure functions named after the metric. Signals are ``[leads, samples]`` arrays in mV; a ranking is a sequence of
cell numbers of a `SegmentGrid`, most important first. The deletion and insertion curves query the classifier
through their own `QueryCounter`, never the explainer's, so an evaluation never costs a method queries.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ecglens.classifiers.base import Classifier, QueryCounter
from ecglens.agent.grid import SegmentGrid
from ecglens.baselines.cells import cell_mask, cell_medians


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
    e_signal = float(np.sum(centred ** 2))
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


def deletion_curve(signal: np.ndarray, ranking_of_cells: Sequence[int], grid: SegmentGrid,
                   classifier: Classifier, target_class: int | str, steps: int = 21, *,
                   insertion: bool = False, counter: QueryCounter | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Probability of ``target_class`` as the top-ranked cells are flattened (or, for insertion, restored).

    Step ``i`` of ``steps`` flattens the first ``k_i = round(i / (steps - 1) * n_cells)`` cells of the ranking,
    each to a flat line at its own median (`ecglens.baselines.cells.flatten`). Insertion starts from every cell flattened
    and restores the first ``k_i`` cells of the ranking. Cells missing from a partial ranking follow it in
    cell order. All ``steps`` inputs go to the classifier in one batch.

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

    Returns
    -------
    fractions : np.ndarray
        ``[steps]`` fraction of cells flattened (restored), 0 to 1.
    probabilities : np.ndarray
        ``[steps]`` probability of the target class.
    """
    if steps < 2:
        raise ValueError(f"steps must be at least 2, got {steps}")
    signal = np.asarray(signal, dtype=np.float32)
    order = _full_ranking(ranking_of_cells, grid.n_cells)
    column = _class_column(classifier, target_class)
    counts = np.round(np.linspace(0, grid.n_cells, steps)).astype(int)
    flat = cell_medians(grid, signal)
    batch = np.empty((steps, *signal.shape), dtype=np.float32)
    for i, k in enumerate(counts):
        mask = cell_mask(grid, order[:k])
        batch[i] = np.where(mask, signal, flat) if insertion else np.where(mask, flat, signal)
    evaluator = counter if counter is not None else QueryCounter(_unwrap(classifier))
    probabilities = np.asarray(evaluator.predict_proba(batch))[:, column]
    return counts / grid.n_cells, probabilities.astype(np.float64)


def deletion_auc(signal: np.ndarray, ranking_of_cells: Sequence[int], grid: SegmentGrid, classifier: Classifier,
                 target_class: int | str, steps: int = 21, *, counter: QueryCounter | None = None) -> float:
    """Area under the deletion curve: lower is better (the ranking removes the evidence fastest).

    Trapezoid rule over the fraction removed in [0, 1] of the target probability, see `deletion_curve`.
    Petsiuk, Das & Saenko, "RISE: Randomized input sampling for explanation of black-box models", BMVC 2018.
    """
    x, y = deletion_curve(signal, ranking_of_cells, grid, classifier, target_class, steps, counter=counter)
    return float(np.trapezoid(y, x))


def insertion_auc(signal: np.ndarray, ranking_of_cells: Sequence[int], grid: SegmentGrid, classifier: Classifier,
                  target_class: int | str, steps: int = 21, *, counter: QueryCounter | None = None) -> float:
    """Area under the insertion curve: higher is better (the ranking restores the evidence fastest).

    Starts from every cell flattened to its median and restores cells in ranking order; see `deletion_curve`.
    Petsiuk, Das & Saenko, BMVC 2018.
    """
    x, y = deletion_curve(signal, ranking_of_cells, grid, classifier, target_class, steps, insertion=True,
                          counter=counter)
    return float(np.trapezoid(y, x))


def is_flipped(probabilities: np.ndarray, target_class: int, threshold: float) -> bool:
    """Whether a finding is gone: its probability fell below its operating threshold.

    The same rule flags a finding on the clean record (probability >= threshold), so flip and flag agree.
    """
    return bool(float(np.asarray(probabilities).ravel()[target_class]) < threshold)


def attack_success(flipped: Sequence[bool], snr_db: Sequence[float] | None = None,
                   min_snr_db: float | None = None) -> float:
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
