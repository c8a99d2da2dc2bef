"""The peers ECG Lens is measured against, captum-style: one class per peer, one verb, the same segment grid.

``Peer(classifier).explain(ecg_window, target) -> Explanation`` with ``method`` = the peer's name, ``cell_scores``
on the shared grid (lead × 0.25-s window, `ecglens.agent.grid`) and ``queries`` counted by a `QueryCounter`
under the peer's query budget.

- attribution: `OcclusionBaseline`, `FeatureAblationBaseline`, `ShapleyValueSamplingBaseline`,
  `KernelShapBaseline`, `LimeBaseline` (captum); `GreedyScanBaseline` (the published greedy sensitivity scan);
  `RandomBaseline` (a random ranking).
- minimal distortion: `SquareAttackBaseline`, `SimBABaseline`, `HopSkipJumpBaseline` (ART, black-box);
  `OracleBaseline` (knows where the beat is; a reference, not a method).

Classes load on first use (captum and ART are slow to import; `ecglens.metrics` needs only `cells`).
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "Attribution": "base",
    "PerturbationBaseline": "base",
    "OcclusionBaseline": "captum_peers",
    "FeatureAblationBaseline": "captum_peers",
    "ShapleyValueSamplingBaseline": "captum_peers",
    "KernelShapBaseline": "captum_peers",
    "LimeBaseline": "captum_peers",
    "GreedyScanBaseline": "greedy",
    "RandomBaseline": "random_ranking",
    "SquareAttackBaseline": "attacks",
    "SimBABaseline": "attacks",
    "HopSkipJumpBaseline": "attacks",
    "OracleBaseline": "oracle",
}
# Peer names (``Peer.name``, as the benchmark reports them) -> class names, in report order.
PEER_CLASSES: dict[str, str] = {
    "occlusion": "OcclusionBaseline",
    "feature-ablation": "FeatureAblationBaseline",
    "shapley-sampling": "ShapleyValueSamplingBaseline",
    "kernel-shap": "KernelShapBaseline",
    "lime": "LimeBaseline",
    "greedy-scan": "GreedyScanBaseline",
    "random": "RandomBaseline",
    "square-attack": "SquareAttackBaseline",
    "simba": "SimBABaseline",
    "hopskipjump": "HopSkipJumpBaseline",
    "oracle": "OracleBaseline",
}

__all__ = [*_WHERE, "PEER_CLASSES", "peer"]


def peer(name: str) -> type:
    """The peer class called ``name`` (see `PEER_CLASSES`); ValueError listing the valid names otherwise."""
    if name not in PEER_CLASSES:
        raise ValueError(f"unknown peer {name!r}; valid: {', '.join(PEER_CLASSES)}")
    return __getattr__(PEER_CLASSES[name])


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f"ecglens.baselines.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'ecglens.baselines' has no attribute {name!r}")
