"""Hardening: fine-tune a classifier so that realistic noise and the agent's minimal flips no longer change its
diagnosis (``ecglens harden``, ``POST /api/v1/models/{name}/harden``; docs/hardening.md).

The recipe (`harden`):

1. *Parent* (`parent`): the built-in model or a TorchScript file with trainable float parameters; ONNX, HTTP and
   frozen TorchScript models are refused (`ClassifierError`). Its card's classes, leads, window and rate stay.
2. *Agent pool* (`mix.adversarial_pool`): `ecglens.explain` against the parent on ``agent_windows``
   class-balanced DS1 *training* windows; each flipped explanation gives (window, ``adversarial.noise``) with the
   window's original labels.
3. *Data mix* (`mix.HardeningMix`): per batch, a ``mix[0]`` share of clean DS1 training windows, a ``mix[1]``
   share with realistic noise (a kind of `ecglens.distortions.KINDS` at an NSTDB level 24..-6 dB, jittered), and
   a ``mix[2]`` share of pool windows with their agent distortion at a random gain; original labels on every row,
   the parent recipe's augmentation on top.
4. *Fine-tuning* (`trainer.harden_module`): AdamW, one-cycle learning rate, an EMA of the weights; binary
   cross-entropy against the labels plus ``distill`` times the same against the parent's answer on the row's
   clean window (stability training, Zheng et al., CVPR 2016). The EMA state with the best DS1-validation score
   (clean + noisy mean AUC) is kept; ``soup`` such fine-tunes (seeds ``seed``, ``seed + 1``, ...) are averaged (a
   uniform model soup, Wortsman et al., ICML 2022).
5. *Recalibration* on the DS1 validation split only (never DS2): Platt scaling refitted; thresholds per
   ``HardenConfig.thresholds``. Then the export front end (`frontends.HighPassed`, 0.67 Hz FIR high-pass).
6. *Export* (`card`): TorchScript beside a card recording the parent (name, version, SHA-256), the recipe and
   DS1-validation figures before and after; ``benchmarks/hardening.py`` adds the DS2 before/after figures.

Modules, each importing only those above it: `config` → `parent` → `frontends` → `mix` → `card` → `trainer` →
`cli`. The service's hardening job (registry, blobs, database) is `ecglens.service.hardening_job`.
"""

from __future__ import annotations

from ecglens.hardening.card import (
    AUC_DROP_WARN,
    HardenResult,
    front_end_text,
    hardened_card,
    save_hardened,
    thresholds_text,
    validation_warnings,
)
from ecglens.hardening.config import (
    MAINS_HZ,
    SOURCES,
    THRESHOLD_RULES,
    HardenConfig,
    check_threshold_rule,
    hardened_name,
)
from ecglens.hardening.frontends import highpass_length, highpass_taps, with_baseline_removal, with_highpass
from ecglens.hardening.mix import (
    AdversarialPool,
    ArraySampler,
    HardeningMix,
    MixBatch,
    WindowSource,
    adversarial_pool,
    mitdb_sources,
    noisy_copies,
    quick_signal_power,
)
from ecglens.hardening.parent import Trainable, file_sha256, load_trainable
from ecglens.hardening.trainer import harden, harden_module

__all__ = [
    "AUC_DROP_WARN",
    "MAINS_HZ",
    "SOURCES",
    "THRESHOLD_RULES",
    "AdversarialPool",
    "ArraySampler",
    "HardenConfig",
    "HardenResult",
    "HardeningMix",
    "MixBatch",
    "Trainable",
    "WindowSource",
    "adversarial_pool",
    "check_threshold_rule",
    "file_sha256",
    "front_end_text",
    "harden",
    "harden_module",
    "hardened_card",
    "hardened_name",
    "highpass_length",
    "highpass_taps",
    "load_trainable",
    "mitdb_sources",
    "noisy_copies",
    "quick_signal_power",
    "save_hardened",
    "thresholds_text",
    "validation_warnings",
    "with_baseline_removal",
    "with_highpass",
]
