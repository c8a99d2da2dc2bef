"""The hardening recipe's settings: `HardenConfig`, the data-mix source codes, the threshold rules, and the
hardened model's default registry name."""

from __future__ import annotations

from dataclasses import dataclass, field

from ecglens.distortions import KINDS, NSTDB_SNR_LEVELS_DB

SOURCES = ("clean", "noise", "adversarial")  # the `MixBatch.source` codes 0, 1, 2
MAINS_HZ = (50.0, 60.0)
THRESHOLD_RULES = ("parent", "youden")  # `HardenConfig.thresholds`


@dataclass
class HardenConfig:
    """Hyperparameters of `harden`. Defaults are what ``ecglens harden`` uses for the built-in model; why the
    defaults are what they are: ``docs/decisions/hardening-recipe.md``.

    seed : seeds the pool windows, the data mix, torch and the augmentation. Default: 0.
    epochs, steps_per_epoch, batch_size : fine-tuning length. Defaults: 6, 100, 64.
    lr, weight_decay : AdamW peak learning rate (one-cycle) and decay. Defaults: 1e-3, 1e-3.
    ema : decay of the weights' moving average. Default: 0.98.
    threads : torch CPU threads. Default: 1 (on a shared 2-core machine a second thread mostly spins).
    mix : shares of clean, noisy and agent-distorted rows per batch. Default: (0.35, 0.45, 0.2).
    snr_levels_db, snr_jitter_db : noise SNRs drawn from these levels (dB) plus uniform ±jitter.
        Defaults: the NSTDB levels (24, 18, 12, 6, 0, -6), 3.0.
    kinds : distortion kinds for the noisy share. Default: all of `ecglens.distortions.KINDS`.
    distill : weight of the parent-consistency term (the package docstring, step 4); 0 turns it off.
        Default: 1.0.
    agent_windows : DS1 training windows the agent explains for the pool. Default: 64.
    agent_budget : query budget of each of those explanations. Default: 300.
    adversarial_gain_db : range (dB) of the random gain on a pool distortion (positive = stronger).
        Default: (-3.0, 6.0).
    kind_weights : relative draw weight of a kind for a noisy row, by kind name; kinds not named weigh 1
        (powerline's weight is split between 50 and 60 Hz mains). Default: {"powerline": 2.0}: powerline twice,
        once per mains frequency.
    label_weight : weight of the label loss on noisy and agent-distorted rows. Default: 1.0.
    clean_label_weight : weight of the label loss on clean rows (their distillation term is always kept).
        Default: 1.0.
    l2sp : weight of the L2-SP penalty ``l2sp / 2 * ||w - w_parent||^2`` on the trainable weights (Li et al.,
        ICML 2018): the fine-tune stays near the parent, whose clean ranking it should keep. Default: 0.0.
    freeze_bn : keep batch-normalisation layers in evaluation mode while fine-tuning, so their running
        statistics stay the parent's instead of drifting to the noisy mix (their weights still train).
        Default: False.
    baseline_removal_s : when > 0, the hardened model subtracts from each lead its moving average over this many
        seconds before the parent's network (`BaselineRemoved`, part of the exported module), the usual ECG
        baseline correction: NSTDB-like baseline wander (~98 % of its power below 0.5 Hz) and the slow drift of
        electrode motion then mostly never reach the network. 0 = no front end. Default: 0.0.
    soup : fine-tunes (seeds ``seed``, ``seed + 1``, ...; each from the parent, same agent pool) whose selected
        weights are averaged into the hardened model (a uniform model soup). Default: 2.
    highpass_hz : when > 0, the hardened model high-passes each lead with a fixed linear-phase FIR of this
        cut-off (Hz, -6 dB) before the parent's network (`HighPassed`, part of the exported module), fine-tuned
        with it: the diagnostic-ECG baseline filter (AHA / IEC 60601-2-25 allow up to 0.67 Hz for a linear-phase
        filter). Takes the place of ``baseline_removal_s``. 0 = no filter. Default: 0.0.
    export_highpass_hz : when > 0 (and ``highpass_hz`` is 0), the same kind of FIR high-pass is put in front of
        the network after fine-tuning and recalibration, at export: the fine-tune never sees it, and it keeps
        baseline wander (and the slow drift of electrode motion) from reaching the network. Default: 0.67.
    highpass_taps : length of that FIR (odd, samples at the card's rate; Hamming-windowed `scipy.signal.firwin`).
        Default: None = 3 s at the card's rate (1081 at 360 Hz: at 0.67 Hz ~99 % of NSTDB-like baseline-wander
        power is removed), shortened to what the card's window allows (fewer than twice its samples).
    thresholds : one of `THRESHOLD_RULES`: "parent" keeps the parent's operating threshold for every class (the
        Platt scaling is still refitted, so a probability keeps its meaning); "youden" re-picks them by Youden's
        J on the validation windows, except for a class they separate (almost) perfectly. Default: "parent".
    """

    seed: int = 0
    epochs: int = 6
    steps_per_epoch: int = 100
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-3
    ema: float = 0.98
    threads: int = 1
    mix: tuple[float, float, float] = (0.35, 0.45, 0.2)
    snr_levels_db: tuple[float, ...] = NSTDB_SNR_LEVELS_DB
    snr_jitter_db: float = 3.0
    kinds: tuple[str, ...] = KINDS
    distill: float = 1.0
    agent_windows: int = 64
    agent_budget: int = 300
    adversarial_gain_db: tuple[float, float] = (-3.0, 6.0)
    kind_weights: dict[str, float] = field(default_factory=lambda: {"powerline": 2.0})
    label_weight: float = 1.0
    clean_label_weight: float = 1.0
    l2sp: float = 0.0
    freeze_bn: bool = False
    baseline_removal_s: float = 0.0
    soup: int = 2
    highpass_hz: float = 0.0
    export_highpass_hz: float = 0.67
    highpass_taps: int | None = None
    thresholds: str = "parent"


def check_threshold_rule(rule: str) -> None:
    """Raise ValueError unless ``rule`` is one of `THRESHOLD_RULES`."""
    if rule not in THRESHOLD_RULES:
        raise ValueError(f"thresholds rule must be {' or '.join(map(repr, THRESHOLD_RULES))}, got {rule!r}")


def hardened_name(parent: str, seed: int) -> str:
    """The registry name a hardening of model ``parent`` with recipe seed ``seed`` gets unless one is given:
    ``"{parent}-hardened-s{seed}"`` (``POST /models/{name}/harden`` and its job)."""
    return f"{parent}-hardened-s{seed}"
