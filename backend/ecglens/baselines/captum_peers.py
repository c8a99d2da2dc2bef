"""The captum attribution peers on the segment grid: Occlusion, FeatureAblation, ShapleyValueSampling, KernelShap,
Lime.

Each wraps the black box in a forward function (torch tensor in -> numpy ``predict_proba`` through the
`QueryCounter` -> tensor out), so captum never sees gradients. A removed cell becomes a flat line at its own median
(the same "flatten" the deletion metric uses). Query cost per call of `explain` (2-lead 10-s input at 360 Hz,
80 cells of 0.25 s; the 1 is the diagnosis query, captum adds one look at the unperturbed input):

============================  ===============================================================
Occlusion                     1 + 1 + leads × ((samples - window) // stride + 1) = 200 (0.2 s / 0.1 s)
FeatureAblation               1 + 1 + cells = 82
ShapleyValueSampling          1 + 1 + n_samples × cells, n_samples = (budget - 2) // cells -> 1,922 of 2,000
KernelShap / Lime             1 + n_samples, n_samples = budget - 1 -> 200 of 200
============================  ===============================================================

References: Zeiler & Fergus, "Visualizing and understanding convolutional networks", ECCV 2014 (occlusion);
Castro, Gómez & Tejada, "Polynomial calculation of the Shapley value based on sampling", Computers & OR 2009;
Lundberg & Lee, "A unified approach to interpreting model predictions", NeurIPS 2017 (KernelSHAP); Ribeiro,
Singh & Guestrin, "Why should I trust you?", KDD 2016 (LIME); Kokhlikyan et al., "Captum", arXiv:2009.07896.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from ecglens.agent.grid import SegmentGrid
from ecglens.baselines.base import Attribution, PerturbationBaseline
from ecglens.baselines.cells import cell_means, cell_medians, feature_mask
from ecglens.classifiers.base import QueryCounter
from ecglens.targets import Target


def black_box_forward(counter: QueryCounter) -> Callable[[torch.Tensor], torch.Tensor]:
    """A captum forward function over a black box: ``[n, leads, samples]`` tensor -> ``[n, classes]`` tensor.

    Every row goes through ``counter`` (and is counted there); no gradient ever flows.
    """

    def forward(inputs: torch.Tensor) -> torch.Tensor:
        batch = inputs.detach().cpu().numpy().astype(np.float32, copy=False)
        return torch.from_numpy(np.asarray(counter.predict_proba(batch), dtype=np.float32))

    return forward


class _CaptumBaseline(PerturbationBaseline):
    """A captum perturbation method on the grid: build the attribution object, call ``attribute``, pool to cells."""

    captum_class: Any = None

    def _attribute(
        self,
        signal: np.ndarray,
        grid: SegmentGrid,
        counter: QueryCounter,
        target: Target,
        rng: np.random.Generator,
        **kwargs: Any,
    ) -> Attribution:
        method = self.captum_class(black_box_forward(counter))
        inputs = torch.from_numpy(signal[None].copy())
        baselines = torch.from_numpy(cell_medians(grid, signal)[None])
        options = self._options(grid, counter)
        # Sampling peers draw from torch's global generator; seed it from ours and restore it after.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(rng.integers(2**31)))
            with torch.no_grad():
                attr = method.attribute(
                    inputs, baselines=baselines, target=target.index, perturbations_per_eval=self.batch_size, **options
                )
        attr = attr.detach().cpu().numpy()[0].astype(np.float64)
        return Attribution(
            cell_scores=self._pool(attr, grid), extra={"captum": self.captum_class.__name__, **_jsonable(options)}
        )

    def _options(self, grid: SegmentGrid, counter: QueryCounter) -> dict[str, Any]:
        return {"feature_mask": torch.from_numpy(feature_mask(grid)[None])}

    def _pool(self, attr: np.ndarray, grid: SegmentGrid) -> np.ndarray:
        # Grid-masked attributions are constant within a cell, so the cell mean is the cell's value.
        return cell_means(grid, attr)


class OcclusionBaseline(_CaptumBaseline):
    """captum `Occlusion`: slide a flat window along each lead; a cell scores the mean drop over its samples.

    Parameters (besides `PerturbationBaseline`'s)
    ----------
    window_s : float
        Occluding window length in seconds, on one lead at a time. Default: 0.2.
    stride_s : float
        Step between windows in seconds. Default: 0.1.
    """

    name = "occlusion"
    default_budget = None  # set by the window count

    def __init__(self, classifier, *, window_s: float = 0.2, stride_s: float = 0.1, **kwargs: Any):
        super().__init__(classifier, **kwargs)
        self.window_s = window_s
        self.stride_s = stride_s

    @property
    def captum_class(self):
        from captum.attr import Occlusion

        return Occlusion

    def _options(self, grid: SegmentGrid, counter: QueryCounter) -> dict[str, Any]:
        window = max(1, int(round(self.window_s * grid.fs)))
        stride = max(1, int(round(self.stride_s * grid.fs)))
        return {"sliding_window_shapes": (1, window), "strides": (1, stride)}


class FeatureAblationBaseline(_CaptumBaseline):
    """captum `FeatureAblation` with ``feature_mask`` = the grid: flatten one cell at a time (cells + 2 queries)."""

    name = "feature-ablation"

    @property
    def captum_class(self):
        from captum.attr import FeatureAblation

        return FeatureAblation


class ShapleyValueSamplingBaseline(_CaptumBaseline):
    """captum `ShapleyValueSampling` over grid cells; permutations sized to the query budget (default 2,000)."""

    name = "shapley-sampling"
    default_budget = 2000

    @property
    def captum_class(self):
        from captum.attr import ShapleyValueSampling

        return ShapleyValueSampling

    def _options(self, grid: SegmentGrid, counter: QueryCounter) -> dict[str, Any]:
        left = (counter.remaining if counter.remaining is not None else 2000) - 1  # captum's own clean look
        n_samples = max(1, left // grid.n_cells)
        return {**super()._options(grid, counter), "n_samples": n_samples}


class KernelShapBaseline(_CaptumBaseline):
    """captum `KernelShap` over grid cells; coalitions sized to the query budget (default 200)."""

    name = "kernel-shap"
    default_budget = 200

    @property
    def captum_class(self):
        from captum.attr import KernelShap

        return KernelShap

    def _options(self, grid: SegmentGrid, counter: QueryCounter) -> dict[str, Any]:
        left = counter.remaining if counter.remaining is not None else 200
        return {**super()._options(grid, counter), "n_samples": max(2, left)}


class LimeBaseline(KernelShapBaseline):
    """captum `Lime` over grid cells (exponential cosine kernel, linear surrogate); default budget 200."""

    name = "lime"

    @property
    def captum_class(self):
        from captum.attr import Lime

        return Lime


def _jsonable(options: dict[str, Any]) -> dict[str, Any]:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in options.items() if not torch.is_tensor(v)}
