"""`RandomBaseline`: a uniformly random cell ranking — the floor every explainer must beat."""

from __future__ import annotations

from typing import Any

import numpy as np

from ecglens.agent.grid import SegmentGrid
from ecglens.baselines.base import Attribution, PerturbationBaseline
from ecglens.classifiers.base import QueryCounter
from ecglens.targets import Target


class RandomBaseline(PerturbationBaseline):
    """Scores every cell with an independent uniform draw; asks the classifier only for the diagnosis (1 query)."""

    name = "random"
    default_budget = 1

    def _attribute(
        self,
        signal: np.ndarray,
        grid: SegmentGrid,
        counter: QueryCounter,
        target: Target,
        rng: np.random.Generator,
        **kwargs: Any,
    ) -> Attribution:
        return Attribution(cell_scores=rng.random(grid.n_cells))
