"""`explain_vision`: the anytime agent on an image or video classifier (``ecglens.explain`` dispatches here).

The same loop as for an ECG (`anytime.run_findings`, the hand or learned policy): the grid is a `PatchGrid` (patches, or
tubes of frames × patches), the episode a `VisionEpisode` (the image and video distortions at calibrated PSNRs), the
loop's state a `VisionAnytimeEpisode` (the ranking resolved cell by cell; the fixed order is `vision_hand_policy`). The
`Explanation` has the ``saliency`` ``[H, W]`` (image) or ``[T, H, W]`` (video; each tube's frames ordered by their
detail, `frame_saliency`), ``regions`` (the top cells with their pixels and frames, in ``extra["regions"]``) and the
adversarial example: the distorted input, its PSNR as ``snr_db``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ecglens.agent.anytime import AnytimeEpisode, hand_policy, run_findings
from ecglens.agent.localize import DROPOUT
from ecglens.agent.patches import PatchGrid, make_patch_grid
from ecglens.agent.result import SEGMENT_THRESHOLD, EpisodeResult, adversarial_of, diagnosis_of
from ecglens.agent.vision_anytime import VisionAnytimeEpisode, vision_hand_policy
from ecglens.agent.vision_env import LEVELS_PSNR_DB, VisionEpisode, make_bank
from ecglens.classifiers.base import Classifier, QueryCounter
from ecglens.errors import ClassifierError
from ecglens.explanation import Explanation
from ecglens.targets import Target, diagnosed_targets
from ecglens.vision.distortions import parse_kinds

MAX_REGIONS = 10  # regions listed in ``extra["regions"]``
_RANGE_SLACK = 1e-4  # values this far outside [0, 1] still count as in range (float rounding)


def modality_of(classifier: Any) -> str:
    """ "ecg", "image" or "video": the classifier's card modality ("ecg" when it names none)."""
    return str(getattr(classifier, "modality", None) or "ecg")


def check_input(x: Any, classifier: Any) -> np.ndarray:
    """``x`` as float32 of the card's ``input_shape``, or a `ValueError` naming what was expected."""
    modality = modality_of(classifier)
    shape = tuple(getattr(classifier, "input_shape", None) or ())
    dims = "[C, H, W]" if modality == "image" else "[T, C, H, W]"
    if not shape:
        raise ClassifierError(f"{modality} classifier without an input_shape on its card")
    if not isinstance(x, np.ndarray):
        raise ValueError(f"an {modality} classifier explains a numpy array {dims}, got {type(x).__name__}")
    if not np.issubdtype(x.dtype, np.floating):
        hint = " (divide 8-bit pixels by 255)" if np.issubdtype(x.dtype, np.integer) else ""
        raise ValueError(f"expected a float32 {modality} {dims} with values in [0, 1], got dtype {x.dtype}{hint}")
    if tuple(x.shape) != shape:
        raise ValueError(
            f"expected an {modality} of shape {list(shape)} {dims} (the card's input_shape), got {list(x.shape)}"
        )
    if not np.isfinite(x).all():
        raise ValueError(f"the {modality} holds NaN or infinite values")
    lo, hi = float(x.min()), float(x.max())
    if lo < -_RANGE_SLACK or hi > 1 + _RANGE_SLACK:
        raise ValueError(f"expected {modality} values in [0, 1], got [{lo:.4g}, {hi:.4g}]")
    return np.clip(x, 0.0, 1.0).astype(np.float32)


def explain_vision(
    x: np.ndarray,
    classifier: Classifier,
    *,
    query_budget: int = 500,
    seed: int = 0,
    policy: Callable[[AnytimeEpisode], str] | None = None,
    distortions: Sequence[str] | str | None = None,
    patch: int | tuple[int, int] | None = None,
    tube_frames: int | None = None,
    levels_db: Sequence[float] = LEVELS_PSNR_DB,
    progress: Callable[[float], None] | None = None,
    method: str = "anytime",
) -> Explanation:
    """Explain ``classifier``'s answer on image / video ``x`` with the anytime loop driven by ``policy``.

    Parameters
    ----------
    x : np.ndarray
        float32 ``[C, H, W]`` or ``[T, C, H, W]`` (the card's ``input_shape``), values in [0, 1].
    classifier : Classifier
        An image or video classifier (card ``modality``).
    query_budget, seed, policy, progress : as in `ecglens.explain`.
    distortions : kinds allowed (`ecglens.vision.distortions.IMAGE_KINDS` / ``VIDEO_KINDS``). Default: all.
    patch, tube_frames : the grid (`make_patch_grid`). Default: 8 × 8-px patches (`patches.default_patch_side`),
        tubes over the whole clip.
    levels_db : whole-input PSNR levels of the distortions, weakest first. Default: `LEVELS_PSNR_DB`.
    """
    t0 = time.perf_counter()
    modality = modality_of(classifier)
    if modality not in ("image", "video"):
        raise ClassifierError(f"explain_vision needs an image or video classifier, got modality {modality!r}")
    x = check_input(x, classifier)
    # "hand" (the default) is the fixed order; for images and video that is the vision order
    policy = vision_hand_policy if policy is None or policy is hand_policy else policy
    kinds = parse_kinds(distortions, modality)
    counter = QueryCounter(classifier, budget=int(query_budget))
    probs0 = counter.predict_proba(x[None])[0]
    targets = diagnosed_targets(probs0, classifier)
    grid = make_patch_grid(x.shape, patch=patch, tube_frames=tube_frames)
    bank = make_bank(x, grid, kinds, levels_db, np.random.default_rng([seed, 7]))

    def new_episode(target: Target, rng: np.random.Generator) -> VisionEpisode:
        return VisionEpisode(x, probs0, target, grid=grid, bank=bank, query_budget=query_budget)

    results = run_findings(
        targets, counter, new_episode, policy, seed, query_budget, progress, episode_type=VisionAnytimeEpisode
    )
    main = results[0] if results else None
    names = tuple(classifier.class_names)
    scores = main.cell_scores if main is not None else np.zeros(grid.n_cells)
    detail = main.extra.get("frame_detail") if main is not None else None
    adversarial = adversarial_of(main.episode, classifier) if main is not None and main.episode.flipped else None
    extra: dict[str, Any] = {
        "grid": {
            "shape": list(grid.shape),
            "patch": list(grid.patch),
            "tube_frames": grid.tube_frames,
            "n_rows": grid.n_leads,
            "n_positions": grid.n_windows,
        },
        "regions": regions_of(main, grid) if main is not None else [],
        "calls": counter.calls,
        "levels_psnr_db": list(bank.levels_db),
        "calibration": {
            k: {"strength": bank.strength[i].round(4).tolist(), "psnr_db": bank.reached[i].round(2).tolist()}
            for i, k in enumerate(bank.kinds)
        },
        "findings": [
            {
                "label": r.episode.target.label,
                "flipped": r.episode.flipped,
                "found_by": r.extra.get("found_by") if r.episode.flipped else None,
                "snr_db": r.episode.snr_db() if r.episode.flipped else None,
                "queries": r.queries,
                "regions": regions_of(r, grid)[:5],
            }
            for r in results
        ],
    }
    if main is not None:
        extra["localization"] = main.extra.get("localization", [])
        extra["trace"] = main.extra["trace"]
        if not main.episode.flipped:
            extra["best_probability"] = main.episode.p
    return Explanation(
        diagnosis=diagnosis_of(targets, probs0, names),
        segments=[],
        saliency=frame_saliency(grid, scores, detail),
        adversarial=adversarial,
        queries=counter.queries,
        elapsed_s=time.perf_counter() - t0,
        method=method,
        cell_scores=np.asarray(scores, dtype=np.float32),
        modality=modality,
        extra=extra,
    )


def frame_saliency(grid: PatchGrid, scores: np.ndarray, detail: np.ndarray | None) -> np.ndarray:
    """The saliency map of ``scores``; on a video, each tube's frames ordered by ``detail`` (`VisionAnytimeEpisode.
    frame_detail`): the frame holding most of the tube's content takes the tube's score, the others a little less,
    all above the next tube, so the tubes' ranking is kept and a frame-by-frame reading peaks where the content is."""
    out = grid.to_samples(scores)
    if detail is None or not grid.video or grid.tube_frames < 2:
        return out
    s = np.asarray(scores, dtype=np.float64)
    levels = np.unique(s)
    for c in range(grid.n_cells):
        k = np.searchsorted(levels, s[c])
        gap = s[c] - levels[k - 1] if k > 0 else s[c]
        t0, t1, y0, y1, x0, x1 = grid.cell_rect(c)
        rank = np.argsort(np.argsort(-np.nan_to_num(detail[c, : t1 - t0], nan=-np.inf), kind="stable"), kind="stable")
        out[t0:t1, y0:y1, x0:x1] = (s[c] - 0.5 * gap * rank / (t1 - t0))[:, None, None]
    return out


def peak_frame(result: EpisodeResult, cell: int) -> int | None:
    """The frame of tube ``cell`` holding most of its content (None on an image)."""
    detail = result.extra.get("frame_detail")
    if detail is None or not result.episode.grid.video:
        return None
    return result.episode.grid.cell_rect(cell)[0] + int(np.nanargmax(detail[cell]))


def regions_of(result: EpisodeResult, grid: PatchGrid) -> list[dict[str, Any]]:
    """The cells scoring at least `SEGMENT_THRESHOLD` of the top one (at most `MAX_REGIONS`), highest first: pixels
    (and frames), score, and the distortion laid there in the flip (else "dropout": removal moved the answer)."""
    ep, scores = result.episode, result.cell_scores
    order = np.argsort(-scores, kind="stable")
    out = []
    for c in order[:MAX_REGIONS]:
        c = int(c)
        if scores[c] < SEGMENT_THRESHOLD or scores[c] <= 0:
            break
        kind = ep.kind[c] if ep.kind[c] >= 0 else result.probe_kind.get(c, -1)
        region = {
            **grid.label(c),
            "score": round(float(scores[c]), 4),
            "distortion": ep.kinds[kind] if kind >= 0 else DROPOUT,
        }
        frame = peak_frame(result, c) if grid.video else None
        if frame is not None:
            region["frame"] = frame
        out.append(region)
    return out
