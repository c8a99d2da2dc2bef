"""What an episode found, and the `Explanation` built from it: diagnosis, segments, saliency, the minimal
adversarial example. Shared by the anytime agent (`anytime.py`) and the staged baseline (`search.py`)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ecglens.agent.env import Episode
from ecglens.agent.grid import SegmentGrid
from ecglens.agent.localize import DROPOUT
from ecglens.classifiers.base import Classifier, QueryCounter
from ecglens.classifiers.fit import input_leads
from ecglens.ecg import Ecg
from ecglens.explanation import Adversarial, Diagnosis, Explanation, Segment
from ecglens.targets import Target

SEGMENT_THRESHOLD = 0.3  # cells scoring at least this share of the top cell become segments


@dataclass
class EpisodeResult:
    """What one episode found: the final `Episode`, scores per cell and bookkeeping."""

    episode: Episode
    cell_scores: np.ndarray
    minimal_cells: list[int]
    contributions: dict[int, float]
    probe_kind: dict[int, int]
    queries: int
    extra: dict[str, Any] = field(default_factory=dict)


def build_explanation(
    ecg: Ecg,
    classifier: Classifier,
    x: np.ndarray,
    probs0: np.ndarray,
    targets: list[Target],
    main: EpisodeResult | None,
    results: list[EpisodeResult],
    counter: QueryCounter,
    grid: SegmentGrid,
    window_start_s: float,
    method: str,
    fallback_reason: str | None,
    t0: float,
) -> Explanation:
    names = tuple(classifier.class_names)
    leads = input_leads(ecg, classifier)
    diagnosis = diagnosis_of(targets, probs0, names)
    fs = float(classifier.sampling_rate)
    if main is None:
        scores = np.zeros(grid.n_cells)
        segments: list[Segment] = []
        adversarial = None
    else:
        scores = main.cell_scores
        segments = segments_of(main, grid, leads, window_start_s)
        adversarial = adversarial_of(main.episode, classifier) if main.episode.flipped else None
    saliency = grid.to_samples(scores)
    extra: dict[str, Any] = {
        "grid": {
            "n_leads": grid.n_leads,
            "n_windows": grid.n_windows,
            "beat_aligned": grid.beat_aligned,
            "bounds_s": (grid.bounds / fs).round(4).tolist(),
        },
        "calls": counter.calls,
        "findings": [
            {
                "label": r.episode.target.label,
                "flipped": r.episode.flipped,
                "found_by": r.extra.get("found_by") if r.episode.flipped else None,
                "snr_db": r.episode.snr_db() if r.episode.flipped else None,
                "queries": r.queries,
                "segments": [s.to_dict() for s in segments_of(r, grid, leads, window_start_s)[:5]],
            }
            for r in results
        ],
    }
    if main is not None and not main.episode.flipped:
        extra["best_probability"] = main.episode.p
    if main is not None:
        extra["localization"] = main.extra.get("localization", [])
    return Explanation(
        diagnosis=diagnosis,
        segments=segments,
        saliency=saliency,
        adversarial=adversarial,
        queries=counter.queries,
        elapsed_s=time.perf_counter() - t0,
        method=method,
        fallback_reason=fallback_reason,
        fs=fs,
        leads=leads,
        start_s=float(window_start_s),
        cell_scores=scores.astype(np.float32),
        extra=extra,
    )


def diagnosis_of(targets: list[Target], probs0: np.ndarray, names: tuple[str, ...]) -> Diagnosis:
    """The `Diagnosis` on the clean input: the first target's label, every probability, the findings present."""
    return Diagnosis(
        label=targets[0].label,
        probabilities={n: float(p) for n, p in zip(names, probs0)},
        findings=[t.label for t in targets if probs0[t.index] >= t.threshold and t.multilabel]
        or ([targets[0].label] if not targets[0].multilabel else []),
    )


def segments_of(result: EpisodeResult, grid: SegmentGrid, leads: tuple[str, ...], offset_s: float) -> list[Segment]:
    """Cells scoring at least `SEGMENT_THRESHOLD`, adjacent windows of a lead merged, highest score first."""
    ep, scores = result.episode, result.cell_scores
    out: list[Segment] = []
    n_w = grid.n_windows
    for lead in range(grid.n_leads):
        w = 0
        while w < n_w:
            c = lead * n_w + w
            if scores[c] < SEGMENT_THRESHOLD or scores[c] <= 0:
                w += 1
                continue
            run = [c]
            while w + 1 < n_w and scores[lead * n_w + w + 1] >= SEGMENT_THRESHOLD:
                w += 1
                run.append(lead * n_w + w)
            best = max(run, key=lambda i: scores[i])
            kind = ep.kind[best] if ep.kind[best] >= 0 else result.probe_kind.get(best, -1)
            # A cell outside the minimal flip that the localisation ranked: what moved the decision was dropout.
            fallback = DROPOUT if result.extra.get("localization") else "none"
            _, a, _ = grid.cell_span(run[0])
            _, _, b = grid.cell_span(run[-1])
            out.append(
                Segment(
                    lead=leads[lead] if lead < len(leads) else str(lead),
                    start_s=offset_s + a / grid.fs,
                    end_s=offset_s + b / grid.fs,
                    score=float(scores[best]),
                    distortion=ep.kinds[kind] if kind >= 0 else fallback,
                )
            )
            w += 1
    out.sort(key=lambda s: (-s.score, s.lead, s.start_s))
    return out


def adversarial_of(ep: Episode, classifier: Classifier) -> Adversarial:
    signal = ep.signal()
    names = tuple(classifier.class_names)
    probs = ep.probs
    if ep.target.multilabel:
        thresholds = getattr(classifier, "thresholds", {}) or {}
        found = [i for i in np.argsort(-probs, kind="stable") if probs[i] >= thresholds.get(names[i], 0.5)]
        label = names[found[0]] if found else "no finding"
    else:
        label = names[int(np.argmax(probs))]
    noise = (signal - ep.clean).astype(np.float32)
    return Adversarial(
        signal=signal.astype(np.float32), noise=noise, snr_db=ep.snr_db(), l2=ep.l2(), flipped=ep.flipped, label=label
    )
