"""The anytime episode loop (issue 16, item 1), localisation half: state, actions of one bounded batched call each,
and a best explanation that is valid after every step.

Not yet what `ecglens.explain` runs (that is still the staged schedule in `search.py`, the benchmark's
``scheduled``). This module is the loop the learned policy is meant to drive; today it has the dropout actions and
one hand-written policy, so the benchmark can measure what a schedule-free, budget-blind search gives at budgets
10-500 (``anytime-N`` in `benchmarks/explainers.py`).

- **State** (`AnytimeEpisode`): the cell grid (lead × time window), the `Episode` (per-cell signal features, probe
  features, distortion set), the tree of dropout groups probed so far with the diagnosis' drop for each, the queries
  left, and the trace.
- **Actions**, each one classifier call of at most ``max_rows`` rows: ``split`` (drop out each half of the most
  promising group: time halves over all its leads down to one window, then lead halves), ``stop``. The flip
  actions (add / remove distortion, redraw) are the next step (docs/agent.md).
- **Budget-blind**: no action depends on the total budget, only on what the probes measured; the explanation at
  budget B is therefore the prefix of the one at any larger budget, and more budget refines it.
- **Best explanation** (`AnytimeEpisode.cell_scores`): every cell by the drop of the finest group holding it (the
  best-first search keeps splitting the group with the largest drop, so the deepest measured group leads), then by
  depth, then by the energy dropout removes from it (a QRS before a flat stretch).
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ecglens.agent.env import Episode, diagnosed_targets
from ecglens.agent.grid import make_grid
from ecglens.baselines.cells import cell_energy, cell_mask, cell_medians
from ecglens.classifiers.base import Classifier, QueryCounter
from ecglens.ecg import Ecg

MAX_ROWS = 16  # the largest batched call one action may make


@dataclass(frozen=True)
class Group:
    """Cells ``lead * n_windows + w`` for ``lead in leads`` and ``w0 <= w < w1``."""

    leads: tuple[int, ...]
    w0: int
    w1: int

    def cells(self, n_windows: int) -> list[int]:
        return [lead * n_windows + w for lead in self.leads for w in range(self.w0, self.w1)]

    def children(self) -> tuple[Group, Group] | None:
        """Time halves while the group spans more than one window, then lead halves; None for one cell."""
        if self.w1 - self.w0 > 1:
            mid = (self.w0 + self.w1 + 1) // 2
            return Group(self.leads, self.w0, mid), Group(self.leads, mid, self.w1)
        if len(self.leads) > 1:
            half = (len(self.leads) + 1) // 2
            return Group(self.leads[:half], self.w0, self.w1), Group(self.leads[half:], self.w0, self.w1)
        return None


@dataclass
class Step:
    """One entry of the trace: the action, how many cells it touched, its queries, and the best drop it saw."""

    action: str
    cells: int
    queries: int
    probability: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "cells": self.cells,
            "queries": self.queries,
            "probability": round(float(self.probability), 4),
        }


@dataclass
class AnytimeEpisode:
    """One finding of one record: what has been probed, and the best explanation so far."""

    ep: Episode
    counter: QueryCounter
    max_rows: int = MAX_ROWS
    trace: list[Step] = field(default_factory=list)

    def __post_init__(self) -> None:
        grid = self.ep.grid
        self.flat = cell_medians(grid, self.ep.clean)
        self.energy = cell_energy(grid, self.ep.clean - self.flat)
        self.drop = np.zeros(grid.n_cells)  # drop (over p0) of the finest probed group holding each cell
        self.depth = np.zeros(grid.n_cells, dtype=int)
        root = Group(tuple(range(grid.n_leads)), 0, grid.n_windows)
        self._frontier: list[tuple[float, int, int, Group]] = [(-np.inf, 0, 0, root)]  # (-drop, -depth, tie, group)
        self._tie = 1

    # ---------------------------------------------------------------------------------------------- actions
    def legal(self) -> dict[str, bool]:
        """Which actions may be taken now (the mask a policy sees)."""
        room = self.counter.remaining
        return {"split": bool(self._frontier) and (room is None or room >= 2), "stop": True}

    def step(self, action: str) -> Step:
        """Take ``action`` ("split" or "stop"); every classifier row goes through `counter`."""
        if not self.legal().get(action, False):
            raise ValueError(f"action {action!r} is not legal now ({self.legal()})")
        if action == "stop":
            step = Step("stop", 0, 0, self.ep.p)
        else:
            step = self._split()
        self.trace.append(step)
        return step

    def _split(self) -> Step:
        neg_drop, neg_depth, _, group = heapq.heappop(self._frontier)
        kids = group.children()
        assert kids is not None  # leaves never enter the frontier
        n_w = self.ep.grid.n_windows
        signal = self.ep.signal()
        rows = np.stack([np.where(cell_mask(self.ep.grid, k.cells(n_w)), self.flat, signal) for k in kids])
        q0 = self.counter.queries
        probs = self.ep.probe_rows(self.counter, rows)
        drops = (self.ep.p - probs[:, self.ep.target.index]) / max(self.ep.p0, 1e-3)
        for kid, d, row in zip(kids, drops, probs):
            cells = kid.cells(n_w)
            self.drop[cells] = float(d)
            self.depth[cells] = -neg_depth + 1
            self.ep.record_probe(cells, np.tile(row, (len(cells), 1)), self.ep.p, [0.0] * len(cells))
            if kid.children() is not None:
                heapq.heappush(self._frontier, (-float(d), neg_depth - 1, self._tie, kid))
                self._tie += 1
        return Step(
            "split", len(group.cells(n_w)), self.counter.queries - q0, float(probs[:, self.ep.target.index].min())
        )

    # ---------------------------------------------------------------------------------------------- best so far
    def cell_scores(self) -> np.ndarray:
        """float64 ``[n_cells]`` in (0, 1]: the ranking of the best explanation so far (see the module notes)."""
        n = self.drop.size
        order = np.lexsort((-self.energy, -self.depth, -self.drop))
        scores = np.empty(n)
        top = max(float(self.drop[order[0]]), 1e-9) if n else 1.0
        value = np.clip(self.drop[order] / top, 0.0, 1.0)
        value = np.minimum.accumulate(value)  # never above a cell ranked higher
        scores[order] = value * (1 - 1e-3) + 1e-3 * (n - np.arange(n)) / max(n, 1)
        return scores


def hand_policy(episode: AnytimeEpisode) -> str:
    """The budget-blind hand-written policy: split while anything can be split, then stop."""
    return "split" if episode.legal()["split"] else "stop"


def explain_anytime(
    ecg: Ecg,
    classifier: Classifier,
    *,
    query_budget: int = 500,
    seed: int = 0,
    policy: Callable[[AnytimeEpisode], str] = hand_policy,
    segment_s: float = 0.25,
    distortions: Sequence[str] | None = None,
):
    """Explain ``classifier``'s first finding on ``ecg`` with the anytime loop (localisation only: no flip yet).

    Returns an `Explanation` (``method="anytime-dropout"``, ``adversarial=None``) whose ``extra["trace"]`` lists
    the steps taken.
    """
    from ecglens.agent.env import KINDS
    from ecglens.agent.result import EpisodeResult, build_explanation
    from ecglens.agent.search import _window

    t0 = time.perf_counter()
    counter = QueryCounter(classifier, budget=int(query_budget))
    x, probs0, window_start_s = _window(ecg, counter, None)
    fs = float(classifier.sampling_rate)
    targets = diagnosed_targets(probs0, classifier)
    grid = make_grid(x, fs, segment_s=segment_s)
    kinds = tuple(distortions) if distortions else KINDS
    ep = Episode(
        x, fs, probs0, targets[0], np.random.default_rng(seed), kinds=kinds, grid=grid, query_budget=query_budget
    )
    run = AnytimeEpisode(ep, counter)
    while True:
        action = policy(run)
        run.step(action)
        if action == "stop":
            break
    result = EpisodeResult(
        ep,
        run.cell_scores(),
        [],
        {},
        {},
        counter.queries,
        extra={"found_by": None, "localization": [s.to_dict() for s in run.trace]},
    )
    out = build_explanation(
        ecg,
        classifier,
        x,
        probs0,
        targets,
        result,
        [result],
        counter,
        grid,
        window_start_s,
        "anytime-dropout",
        None,
        t0,
    )
    out.extra["trace"] = [s.to_dict() for s in run.trace]
    return out
