"""`GreedyScanBaseline`: the greedy sensitivity scan of the published reference code — our baseline, not our method.

The scan itself is the agent package's (`ecglens.agent.greedy.greedy_scan`, the same code the explainer falls
back to): each step probes every cell once (one query per cell per step) and distorts the cells whose probe
lowered the target probability most per unit of added energy, until the finding flips or the budget is spent.
As in the reference, the peer uses Gaussian noise only and stops there: no cleanup of distortion that no longer
pays (that is part of our method).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ecglens.agent.env import Episode
from ecglens.agent.greedy import greedy_scan
from ecglens.agent.grid import SegmentGrid
from ecglens.baselines.base import Attribution, PerturbationBaseline
from ecglens.classifiers.base import QueryCounter
from ecglens.distortions import parse_kinds
from ecglens.targets import Target


class GreedyScanBaseline(PerturbationBaseline):
    """Greedy sensitivity scan with realistic noise (default: Gaussian), default query budget 2,000.

    Parameters (besides `PerturbationBaseline`'s)
    ----------
    kinds : sequence of str
        Distortion kinds the scan cycles through (`ecglens.distortions.parse_kinds`). Default: ("gaussian",).
    top_fraction : float
        Share of the cells distorted after each scan (at least one). Default: 0.05.

    Cell scores: cells distorted, in the order found, rank first; the others by the drop of the target
    probability their last probe caused (relative to the clean probability).
    """

    name = "greedy-scan"
    distortion = "gaussian"
    default_budget = 2000

    def __init__(self, classifier, *, kinds: Sequence[str] = ("gaussian",), top_fraction: float = 0.05, **kwargs: Any):
        super().__init__(classifier, **kwargs)
        self.kinds = parse_kinds(kinds)
        self.top_fraction = top_fraction

    def _attribute(
        self,
        signal: np.ndarray,
        grid: SegmentGrid,
        counter: QueryCounter,
        target: Target,
        rng: np.random.Generator,
        **kwargs: Any,
    ) -> Attribution:
        ep = Episode(
            signal,
            grid.fs,
            kwargs["clean_probs"],
            target,
            rng,
            kinds=self.kinds,
            grid=grid,
            signal_features=np.zeros((grid.n_cells, 0), dtype=np.float32),
        )
        left = counter.remaining if counter.remaining is not None else self.default_budget
        greedy_scan(ep, counter, left, top_fraction=self.top_fraction)
        scores = ep.last_drop.astype(np.float64)
        top = max(float(scores.max()), 0.0) if scores.size else 0.0
        for rank, c in enumerate(ep.order):
            scores[c] = top + 1.0 + (len(ep.order) - rank)
        adversarial = ep.signal().astype(np.float32) if ep.flipped else None
        return Attribution(
            cell_scores=scores,
            adversarial=adversarial,
            extra={"cells_distorted": len(ep.order), "kinds": list(self.kinds)},
        )
