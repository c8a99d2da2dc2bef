"""`ecglens.explain`: the anytime agent (`anytime.py`), its actions chosen by a policy.

For ECG the learned action policy (`action_policy.py`, ``models/agent_actions.pt``, MaskablePPO warm-started on
the fixed order) chooses by default (``method="agent"``); ``policy="hand"`` runs the fixed order
`anytime.hand_policy` (``method="anytime"``), which is also what runs, with ``fallback_reason`` set, when the
policy file is missing or unusable. Images and video run the fixed order by default: the policy was trained on ECG
episodes only.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ecglens.agent.action_policy import ActionPolicy, default_action_policy_path, load_action_policy
from ecglens.agent.anytime import AnytimeEpisode, explain_anytime, hand_policy
from ecglens.agent.vision import explain_vision, modality_of
from ecglens.ecg import Ecg
from ecglens.errors import ClassifierError
from ecglens.explanation import Explanation, Segment

AGENT = "agent"  # ``Explanation.method`` when the learned policy chose the actions
HAND = "anytime"  # ... when the fixed order did


def explain(
    ecg: Ecg,
    classifier: Any,
    *,
    distortions: Sequence[str] | str | None = None,
    query_budget: int = 500,
    seed: int = 0,
    start_s: float | None = None,
    segment_s: float = 0.25,
    beat_aligned: bool = False,
    policy: Any = None,
    progress: Callable[[float], None] | None = None,
    partial: Callable[[list[Segment]], None] | None = None,
    patch: int | tuple[int, int] | None = None,
    tube_frames: int | None = None,
) -> Explanation:
    """Explain ``classifier``'s diagnosis of ``ecg``: critical segments and the minimal flipping distortion.

    The classifier's card ``modality`` chooses the input: an `Ecg` for an ECG classifier, a float32 numpy array
    ``[C, H, W]`` (image) or ``[T, C, H, W]`` (video) in [0, 1] for an image or video one (`vision.explain_vision`:
    the same agent over patches or tubes; ``saliency`` ``[H, W]`` / ``[T, H, W]``, ``adversarial.snr_db`` the
    PSNR). ``start_s``, ``segment_s``, ``beat_aligned`` and ``partial`` are the ECG's; ``patch`` and
    ``tube_frames`` the image's and video's (`patches.make_patch_grid`).

    Parameters
    ----------
    ecg : Ecg or np.ndarray
        The record (any rate and leads the classifier can be fitted to; see `classifiers.fit.fit_record`), or
        the image / video.
    classifier : Classifier
        The black box; only ``predict_proba`` and its card fields are used.
    distortions : sequence of str, comma-separated str, or None
        Distortion kinds allowed (`ecglens.distortions.KINDS`). Default: None (all five).
    query_budget : int
        Hard cap on classifier rows, window choice and diagnosis included. Default: 500.
    seed : int
        Seeds the noise realisations; same record + model + seed gives the same explanation. Default: 0.
    start_s : float or None
        Start (s) of the window to explain in a record longer than the classifier's window. Default: None (the
        window where a non-normal finding is most probable, `ecglens.targets.explained_window`).
    segment_s : float
        Cell length in seconds. Default: 0.25.
    beat_aligned : bool
        One cell per QRS complex instead of fixed windows. Default: False.
    policy : ActionPolicy, str, Path, "learned", "hand", callable or None
        Who chooses the actions: "learned" for the committed learned policy, "hand" for the fixed order, a path
        to a policy file or an `ActionPolicy`, or any ``callable(AnytimeEpisode) -> action``. Default: None
        (learned for ECG, the fixed order for images and video).
    progress : callable or None
        Called with the fraction of the budget used after every action, and 1.0 at the end. Default: None.
    partial : callable or None
        Called with the current best segments (record time) whenever the ranking changes. Default: None.

    Returns
    -------
    Explanation
        ``method`` is "anytime" (fixed order) or "agent" (learned policy; "anytime" with ``fallback_reason``
        when the learned policy asked for cannot be loaded);
        ``extra["trace"]`` lists every action (cells, queries, probability); ``extra["findings"][i]["found_by"]``
        the action that found each flip ("+redraw" when redrawn realisations made it quieter).
    """
    if query_budget < 2:
        raise ValueError(f"query_budget must be at least 2 (diagnosis and one probe), got {query_budget}")
    modality = modality_of(classifier)
    # the learned policy was trained on ECG episodes; images and video default to the fixed order
    chosen, method, reason = resolve_policy(policy, default="learned" if modality == "ecg" else "hand")
    if modality in ("image", "video"):
        if isinstance(ecg, Ecg):
            raise ClassifierError(
                f"this is an {modality} classifier (card modality {modality!r}); it explains a float32 numpy array "
                f"{list(getattr(classifier, 'input_shape', None) or [])}, not an ECG record"
            )
        out = explain_vision(
            ecg,
            classifier,
            query_budget=query_budget,
            seed=seed,
            policy=chosen,
            distortions=distortions,
            patch=patch,
            tube_frames=tube_frames,
            progress=progress,
            method=method,
        )
        out.fallback_reason = reason
        return out
    if modality != "ecg":
        raise ClassifierError(f"unknown classifier modality {modality!r}; expected ecg, image or video")
    if not isinstance(ecg, Ecg):
        raise TypeError(
            f"explain needs an Ecg for an ECG classifier, got {type(ecg).__name__}"
            + (
                " (an image or video needs a classifier whose card has modality 'image' or 'video')"
                if isinstance(ecg, np.ndarray)
                else ""
            )
        )
    out = explain_anytime(
        ecg,
        classifier,
        query_budget=query_budget,
        seed=seed,
        policy=chosen,
        segment_s=segment_s,
        beat_aligned=beat_aligned,
        distortions=distortions,
        start_s=start_s,
        progress=progress,
        partial=partial,
        method=method,
    )
    out.fallback_reason = reason
    return out


def resolve_policy(policy: Any, default: str = "learned") -> tuple[Callable[[AnytimeEpisode], str], str, str | None]:
    """``(policy callable, method name, fallback reason or None)``; ``policy=None`` means ``default``."""
    if policy is None:
        policy = default
    if isinstance(policy, str) and policy.lower() == "hand":
        return hand_policy, HAND, None
    if isinstance(policy, ActionPolicy):
        return policy, AGENT, None
    if callable(policy):
        return policy, getattr(policy, "method", HAND), None
    learned = isinstance(policy, str) and policy.lower() == "learned"
    path = default_action_policy_path() if learned else Path(policy)
    if not path.exists():
        if not learned:
            raise FileNotFoundError(f"no action policy at {path}")
        return hand_policy, HAND, f"no trained action policy at {path}"
    try:
        return _load_cached(str(path), path.stat().st_mtime), AGENT, None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return hand_policy, HAND, f"action policy not usable: {exc}"


@functools.lru_cache(maxsize=4)
def _load_cached(path: str, mtime: float) -> ActionPolicy:
    return load_action_policy(path)
