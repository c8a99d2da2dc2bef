"""`PerturbationBaseline`: what every peer shares — the segment grid, query counting, and the `Explanation` built.

A peer only says how it scores the cells (``_attribute``); the base class fits the input, counts every query
through one `QueryCounter` (with the peer's query budget as a hard cap), times the run and packs the cell
scores and any flipping distortion into the same `Explanation` the agent returns, with ``method`` set to the
peer's name. So the benchmark treats the agent and the peers alike.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import numpy as np

from ecglens.agent.grid import SegmentGrid
from ecglens.baselines.cells import fixed_grid, ranking_from_scores
from ecglens.classifiers.base import Classifier, QueryCounter, follows_record_leads, input_samples
from ecglens.classifiers.fit import fit_record
from ecglens.ecg import Ecg
from ecglens.explanation import Adversarial, Diagnosis, Explanation, Segment
from ecglens.metrics import l2, snr_db
from ecglens.targets import Target, diagnosed_targets


@dataclass
class Attribution:
    """What a peer's ``_attribute`` returns.

    cell_scores : float64 ``[n_cells]``, higher = the cell matters more for the target class.
    adversarial : float32 ``[leads, samples]`` the smallest flipping signal the peer found, or None.
    extra : anything worth keeping (settings, iterations).
    """

    cell_scores: np.ndarray
    adversarial: np.ndarray | None = None
    extra: dict[str, Any] | None = None


class PerturbationBaseline(ABC):
    """Base of the peers: one classifier, one segment grid, one verb (`explain`).

    Parameters
    ----------
    classifier : Classifier
        The black box; only ``predict_proba`` and its card fields are used.
    segment_s : float
        Grid window length in seconds (cells are lead × window). Default: 0.25.
    query_budget : int or None
        Hard cap on classifier rows per `explain` call, the diagnosis query included. Default: the peer's own
        `default_budget`.
    batch_size : int
        Rows per classifier call (captum's ``perturbations_per_eval``). Default: 64.
    seed : int
        Seed of the peer's `np.random.Generator` (and of torch / numpy global RNGs a library insists on, restored
        afterwards). Default: 0.
    top_segments : int
        Segments listed in the `Explanation` (highest scores). Default: 5.
    """

    name = "perturbation"
    distortion = "flatten"
    default_budget: int | None = None

    def __init__(
        self,
        classifier: Classifier,
        *,
        segment_s: float = 0.25,
        query_budget: int | None = None,
        batch_size: int = 64,
        seed: int = 0,
        top_segments: int = 5,
    ):
        self.classifier = classifier
        self.segment_s = segment_s
        self.query_budget = query_budget if query_budget is not None else self.default_budget
        self.batch_size = batch_size
        self.seed = seed
        self.top_segments = top_segments

    def explain(self, ecg_window: Ecg | np.ndarray, target: int | str | None = None, **kwargs: Any) -> Explanation:
        """Score every cell of the grid for ``target``.

        Parameters
        ----------
        ecg_window : Ecg or np.ndarray
            One classifier input: an `Ecg` (fitted to the classifier: resampled, leads mapped, its first
            window taken, zero-padded when shorter) or a float32 ``[leads, samples]`` array in mV already on the classifier's input grid.
        target : int, str or None
            Class index or name whose evidence is sought. Default: the diagnosed class, as the agent picks it
            (`ecglens.targets.diagnosed_targets`: the most probable finding at or above its threshold).
            "Flipped" means what it means for the agent (`Target.flipped`): for a multi-label classifier the
            finding's probability falls below its threshold, otherwise another class becomes the most probable.
        **kwargs :
            Peer-specific knowledge (the oracle's ``beat_time_s``). Peers also receive ``clean_probs``, the
            diagnosis query's answer, so none pays for it twice.

        Returns
        -------
        Explanation
            ``cell_scores`` ``[n_cells]`` on the grid (``extra["grid"]`` describes it), ``segments`` the top
            cells, ``saliency`` ``[leads, samples]`` in [0, 1], ``adversarial`` when the peer found a flip,
            ``queries`` counted by one `QueryCounter`, ``method`` = the peer's name.
        """
        t0 = time.perf_counter()
        signal, fs, leads, start_s = self._fit(ecg_window)
        grid = fixed_grid(signal, fs, self.segment_s)
        counter = QueryCounter(self.classifier, budget=self.query_budget)
        rng = np.random.default_rng(self.seed)
        probs = counter.predict_proba(signal[None])[0]
        goal = self._target(probs, target)
        result = self._attribute(signal, grid, counter, goal, rng, clean_probs=probs, **kwargs)
        elapsed = time.perf_counter() - t0
        return self._explanation(signal, grid, probs, goal, result, counter.queries, elapsed, fs, leads, start_s)

    # -- the hook a peer overrides --------------------------------------------------------------------------
    @abstractmethod
    def _attribute(
        self,
        signal: np.ndarray,
        grid: SegmentGrid,
        counter: QueryCounter,
        target: Target,
        rng: np.random.Generator,
        **kwargs: Any,
    ) -> Attribution:
        """Score the cells of ``grid`` for ``target``, querying only through ``counter``."""

    # -- shared helpers -------------------------------------------------------------------------------------
    @property
    def threshold_of(self) -> dict[int, float]:
        """Operating threshold per class column (0.5 when the classifier names none)."""
        thresholds = dict(getattr(self.classifier, "thresholds", {}) or {})
        return {i: float(thresholds.get(c, 0.5)) for i, c in enumerate(self.classifier.class_names)}

    def _fit(self, ecg_window: Ecg | np.ndarray) -> tuple[np.ndarray, float, tuple[str, ...], float]:
        n = input_samples(self.classifier)
        fs = float(self.classifier.sampling_rate)
        if isinstance(ecg_window, Ecg):
            fitted = fit_record(ecg_window, self.classifier)
            signal = np.zeros((fitted.n_leads, n), dtype=np.float32)
            piece = fitted.signal[:, :n]
            signal[:, : piece.shape[1]] = piece
            return signal, fs, tuple(fitted.leads), 0.0
        signal = np.asarray(ecg_window, dtype=np.float32)
        leads = tuple(self.classifier.lead_names)
        if follows_record_leads(self.classifier) and signal.ndim == 2 and signal.shape[0] >= 1:
            leads = leads if signal.shape[0] == len(leads) else tuple(f"lead {k + 1}" for k in range(len(signal)))
        expected = (len(leads), n)
        if signal.shape != expected:
            raise ValueError(
                f"input must be [leads, samples] = {list(expected)} for this classifier, got {list(signal.shape)}"
            )
        return signal, fs, leads, 0.0

    def _target(self, probs: np.ndarray, target: int | str | None) -> Target:
        names = list(self.classifier.class_names)
        if target is None:
            return diagnosed_targets(probs, self.classifier)[0]
        if isinstance(target, str):
            if target not in names:
                raise ValueError(f"class {target!r} not among {', '.join(names)}")
            index = names.index(target)
        else:
            index = int(target)
            if not 0 <= index < len(names):
                raise ValueError(f"class index {target} outside 0..{len(names) - 1}")
        return Target(
            index, names[index], self.threshold_of[index], bool(getattr(self.classifier, "multilabel", False))
        )

    def _explanation(
        self,
        signal: np.ndarray,
        grid: SegmentGrid,
        probs: np.ndarray,
        target: Target,
        result: Attribution,
        queries: int,
        elapsed: float,
        fs: float,
        leads: tuple[str, ...],
        start_s: float,
    ) -> Explanation:
        names = list(self.classifier.class_names)
        scores = np.nan_to_num(np.asarray(result.cell_scores, dtype=np.float64).ravel(), nan=0.0)
        if scores.size != grid.n_cells:
            raise ValueError(f"{self.name}: {scores.size} cell scores for a grid of {grid.n_cells} cells")
        top = float(scores.max()) if scores.size else 0.0
        unit = np.clip(scores / top, 0.0, 1.0) if top > 0 else np.zeros_like(scores)
        ranking = ranking_from_scores(scores)
        segments = []
        for c in ranking[: self.top_segments]:
            if unit[c] <= 0:
                break
            lead, a_s, b_s = grid.cell_times(int(c))
            segments.append(
                Segment(
                    lead=leads[lead],
                    start_s=start_s + a_s,
                    end_s=start_s + b_s,
                    score=float(unit[c]),
                    distortion=self.distortion,
                )
            )
        diagnosis = Diagnosis(
            label=target.label,
            probabilities={n: float(p) for n, p in zip(names, probs)},
            findings=[n for i, n in enumerate(names) if probs[i] >= self.threshold_of[i]],
        )
        adversarial = None
        if result.adversarial is not None:
            adv = np.asarray(result.adversarial, dtype=np.float32)
            # The peer reports a flip its own (counted) query saw, so no further look is needed.
            adversarial = Adversarial(
                signal=adv,
                noise=adv - signal,
                snr_db=snr_db(signal, adv),
                l2=l2(signal, adv),
                flipped=True,
                label=f"not {target.label}",
            )
        extra = {
            "target": target.label,
            "grid": {"n_leads": grid.n_leads, "n_samples": grid.n_samples, "fs": grid.fs, "segment_s": self.segment_s},
            "query_budget": self.query_budget,
            **(result.extra or {}),
        }
        return Explanation(
            diagnosis=diagnosis,
            segments=segments,
            saliency=grid.to_samples(unit),
            adversarial=adversarial,
            queries=int(queries),
            elapsed_s=float(elapsed),
            method=self.name,
            fs=fs,
            leads=leads,
            start_s=start_s,
            cell_scores=scores,
            extra=extra,
        )
