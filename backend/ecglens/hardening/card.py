"""A hardening's result and its export: `HardenResult`, the hardened model's card (`hardened_card`: the parent's
input contract, new thresholds, parent, recipe and validation figures) and the TorchScript file beside it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ecglens.classifiers.card import ModelCard, card_path_for
from ecglens.classifiers.evaluate import SEPARATED_AUC, unset_threshold_warnings
from ecglens.hardening.config import MAINS_HZ, SOURCES, HardenConfig
from ecglens.hardening.mix import AdversarialPool
from ecglens.hardening.parent import Trainable


@dataclass
class HardenResult:
    """A hardened module and what is known of it on the validation windows.

    module : the fine-tuned, recalibrated TorchScript module; thresholds : per-class operating thresholds;
    pool : the agent's distortions used; history : per-epoch figures; figures : validation figures of parent
    and hardened model, clean and noisy; timing_s : seconds per phase; config : the recipe.
    """

    module: Any
    thresholds: dict[str, float]
    pool: AdversarialPool
    history: list[dict[str, float]]
    figures: dict[str, Any]
    timing_s: dict[str, float]
    config: HardenConfig
    skipped_kinds: dict[str, str] = field(default_factory=dict)
    kept_thresholds: list[str] = field(default_factory=list)  # classes whose threshold is the parent's (`trainer`)


def front_end_text(cfg: HardenConfig) -> str:
    """What stands before the parent's network in the hardened module, for its card."""
    taps = (cfg.highpass_taps or 0) | 1
    if cfg.highpass_hz > 0:
        return (
            f"HighPassed: each lead through a {taps}-tap linear-phase FIR high-pass (-6 dB at "
            f"{cfg.highpass_hz:g} Hz), before the parent's network, fine-tuned with it"
        )
    if cfg.baseline_removal_s > 0:
        front = (
            f"BaselineRemoved: each lead minus its {cfg.baseline_removal_s:g}-s moving average, before the "
            f"parent's network"
        )
        return front if cfg.export_highpass_hz <= 0 else front + "; then (export) " + _export_text(cfg, taps)
    return _export_text(cfg, taps) if cfg.export_highpass_hz > 0 else "none"


def _export_text(cfg: HardenConfig, taps: int) -> str:
    return (
        f"HighPassed: each lead through a {taps}-tap linear-phase FIR high-pass (-6 dB at "
        f"{cfg.export_highpass_hz:g} Hz), put before the network at export (after fine-tuning and "
        f"recalibration without it)"
    )


AUC_DROP_WARN = 0.01  # the tolerance for the clean AUC of the class a hardening is judged on


def validation_warnings(
    figures: dict[str, Any], thresholds_from_validation: bool, kept_thresholds: Sequence[str] = ()
) -> list[str]:
    """What the validation windows already say a user of the hardened model should know (the card's
    ``extra.known_issues``): a class whose clean or noisy validation AUC fell by more than `AUC_DROP_WARN`; a class
    whose threshold stayed the parent's because the validation windows separate it (almost) perfectly
    (the trainer's recalibration); and any other class they separate, whose re-picked threshold the data hardly
    set (`ecglens.classifiers.evaluate.unset_threshold_warnings`)."""
    out = []
    hardened, parent = figures["hardened"], figures["parent"]
    for kind in ("clean", "noisy"):
        for cls, h in hardened[kind].items():
            a, b = (parent[kind].get(cls) or {}).get("auc"), h.get("auc")
            if a is not None and b is not None and b < a - AUC_DROP_WARN:
                out.append(f"{cls}: {kind} validation AUC fell from {a:.3f} (parent) to {b:.3f}.")
    for cls in kept_thresholds:
        h = hardened["clean"].get(cls, {})
        auc, threshold = h.get("auc", float("nan")), h.get("threshold", float("nan"))
        out.append(
            f"{cls}: the validation windows separate it (almost) perfectly (AUC {auc:.4f}), so they cannot "
            f"set a new threshold and the parent's ({threshold:.3g}) is kept; its sensitivity on other "
            "patients is not measured by them. Check it on your own data."
        )
    if thresholds_from_validation:
        out += unset_threshold_warnings({c: f for c, f in hardened["clean"].items() if c not in kept_thresholds})
    return out


def thresholds_text(repicked: bool, kept: Sequence[str]) -> str:
    """The card's line on how the thresholds were set: re-picked by Youden's J (but ``kept`` the parent's), or all
    the parent's."""
    if not repicked:
        return "the parent's, every class (the operating point is kept)"
    return (
        f"Youden's J per class on the validation windows; the parent's for {', '.join(kept) or 'no class'} "
        f"(validation AUC >= {SEPARATED_AUC}: Youden's J does not set it)"
    )


def hardened_card(
    parent: Trainable, result: HardenResult, name: str, *, data: dict[str, Any] | None = None
) -> ModelCard:
    """The card of a hardened model: the parent's input contract, new thresholds, parent, recipe and figures."""
    cfg = result.config
    repicked = parent.card.multilabel and cfg.thresholds == "youden"  # else every threshold is the parent's
    base = parent.card.to_dict()
    base.update(
        name=name,
        version="1",
        thresholds={k: round(float(v), 6) for k, v in result.thresholds.items()},
        parent=f"{parent.card.name}@{parent.card.version}",
        description=(parent.card.description + " " if parent.card.description else "")
        + "Hardened: fine-tuned on its training data mixed with realistic noise at NSTDB SNR levels and the "
        "ECG Lens agent's minimal flipping distortions, original labels kept (ecglens.hardening).",
        data={**parent.card.data, **(data or {})},
        metrics={
            "ds1_validation": result.figures["hardened"]["clean"],
            "ds1_validation_noisy": result.figures["hardened"]["noisy"],
            "ds1_validation_parent": result.figures["parent"]["clean"],
            "ds1_validation_noisy_parent": result.figures["parent"]["noisy"],
            "validation_note": result.figures["noisy_validation"],
            "ds2": {},
            "hardening_ds2": {},
        },
        training={
            "recipe": "ecglens.hardening (module docstring)",
            "parent": {
                "name": parent.card.name,
                "version": parent.card.version,
                "sha256": parent.sha256,
                "file": parent.path.name,
                "architecture": parent.card.architecture,
            },
            "data_mix": {
                "shares": dict(zip(SOURCES, (float(m) for m in cfg.mix))),
                "snr_levels_db": list(cfg.snr_levels_db),
                "snr_jitter_db": cfg.snr_jitter_db,
                "kinds": list(cfg.kinds),
                "mains_hz": list(MAINS_HZ),
                "kind_weights": {k: float(dict(cfg.kind_weights).get(k, 1.0)) for k in cfg.kinds},
                "adversarial_gain_db": list(cfg.adversarial_gain_db),
                "labels": "original labels for every row",
                "augmentation": "ecglens.classifiers.train.augment on every row",
                "skipped_kinds": result.skipped_kinds,
            },
            "agent_pool": {**result.pool.summary(), "query_budget": cfg.agent_budget},
            "seed": cfg.seed,
            "epochs": cfg.epochs,
            "steps_per_epoch": cfg.steps_per_epoch,
            "batch_size": cfg.batch_size,
            "lr": cfg.lr,
            "weight_decay": cfg.weight_decay,
            "ema": cfg.ema,
            "optimizer": "AdamW, one-cycle",
            "threads": cfg.threads,
            "front_end": front_end_text(cfg),
            "regularisation": {
                "l2sp": cfg.l2sp,
                "weight_decay": cfg.weight_decay,
                "freeze_bn": cfg.freeze_bn,
                "label_weight": cfg.label_weight,
                "clean_label_weight": cfg.clean_label_weight,
                "distill": cfg.distill,
            },
            "loss": (
                f"binary cross-entropy against the original labels (weight {cfg.label_weight:g} on noisy and "
                f"agent rows, {cfg.clean_label_weight:g} on clean rows)"
                + (
                    f" + {cfg.distill:g} x the same against the parent's answer on the clean window (stability "
                    f"training)"
                    if cfg.distill > 0
                    else ""
                )
                + (f" + L2-SP {cfg.l2sp:g}" if cfg.l2sp > 0 else "")
            ),
            "soup": (
                f"uniform average of {cfg.soup} fine-tunes (seeds {cfg.seed}..{cfg.seed + cfg.soup - 1})"
                if cfg.soup > 1
                else "one fine-tune"
            ),
            "calibration": (
                "Platt scaling per class refitted on the validation windows"
                if parent.calibrated
                else "the parent's output kept"
            ),
            "thresholds": thresholds_text(repicked, result.kept_thresholds),
            "selection": "EMA weights of the epoch with the best (clean + noisy) / 2 mean validation AUC",
            "history": [
                {k: (round(v, 4) if isinstance(v, float) else v) for k, v in h.items()} for h in result.history
            ],
            "timing_s": result.timing_s,
            "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()},
        },
    )
    base["extra"] = {
        **(base.get("extra") or {}),
        "known_issues": validation_warnings(result.figures, repicked, result.kept_thresholds),
    }
    return ModelCard.from_dict(base)


def save_hardened(result: HardenResult, card: ModelCard, out: str | Path) -> Path:
    """Write the TorchScript module to ``out`` and the card beside it; returns ``out``."""
    import torch

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    result.module.eval()
    torch.jit.save(result.module, str(out))
    card.save(card_path_for(out))
    return out
