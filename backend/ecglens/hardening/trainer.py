"""Fine-tuning: `harden_module`, the training loop (agent pool, data mix, AdamW with an EMA of the weights,
distillation towards the parent, a uniform soup of fine-tunes, recalibration on validation windows), and
`harden`, the whole run on the parent's MIT-BIH DS1 data, from the parent's spec to the written model and card.

torch (and `ecglens.classifiers.train`, which imports it) is imported where used, so that importing the package
does not import torch.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ecglens.classifiers.adapter import to_probabilities
from ecglens.classifiers.base import input_samples
from ecglens.classifiers.card import ModelCard, card_path_for
from ecglens.classifiers.evaluate import class_metrics, separated_classes
from ecglens.classifiers.torchscript import TorchScriptClassifier
from ecglens.distortions import KINDS
from ecglens.hardening.card import HardenResult, hardened_card, save_hardened
from ecglens.hardening.config import HardenConfig, check_threshold_rule
from ecglens.hardening.frontends import highpass_length, with_baseline_removal, with_highpass
from ecglens.hardening.mix import (
    AdversarialPool,
    HardeningMix,
    MixBatch,
    WindowSource,
    adversarial_pool,
    mitdb_sources,
    noisy_copies,
)
from ecglens.hardening.parent import Trainable, load_trainable


class _EmaWeights:
    """Moving average of a module's float parameters (buffers copied), swapped in for evaluation."""

    def __init__(self, module: Any, decay: float):
        self.decay = decay
        self.state = {k: v.detach().clone() for k, v in module.state_dict().items()}
        self.param_names = {k for k, p in module.named_parameters() if p.is_floating_point()}

    def update(self, module: Any) -> None:
        import torch

        with torch.no_grad():
            for k, v in module.state_dict().items():
                if k in self.param_names:
                    self.state[k].mul_(self.decay).add_(v.detach(), alpha=1 - self.decay)
                else:
                    self.state[k].copy_(v)

    @contextmanager
    def applied(self, module: Any) -> Iterator[None]:
        """Within the block ``module`` holds the averaged weights; its own come back after."""
        saved = {k: v.detach().clone() for k, v in module.state_dict().items()}
        module.load_state_dict(self.state)
        try:
            yield
        finally:
            module.load_state_dict(saved)


def _soup(states: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The uniform average of state dicts (floating-point entries; others, e.g. batch counters, from the first)."""
    first = states[0]
    return {
        k: (sum(st[k] for st in states) / len(states)).to(v.dtype) if v.is_floating_point() else v.clone()
        for k, v in first.items()
    }


def _outputs(module: Any, X: np.ndarray, batch: int = 256) -> np.ndarray:
    """Raw outputs ``[n, classes]`` (float64) of ``module`` in eval mode."""
    import torch

    module.eval()
    with torch.no_grad():  # not inference_mode: these weights are trained again after an evaluation
        out = [
            module(torch.from_numpy(np.ascontiguousarray(X[a : a + batch]))).double().numpy()
            for a in range(0, len(X), batch)
        ]
    return np.concatenate(out) if out else np.zeros((0, 0))


def _probabilities(parent: Trainable, X: np.ndarray) -> np.ndarray:
    """Calibrated probabilities ``[n, classes]`` of the whole module, as the adapter would answer."""
    scale = np.float32(parent.card.input_scale)
    return to_probabilities(_outputs(parent.module, X * scale if scale != 1 else X), parent.card)


def _targets(parent: Trainable, out: Any) -> Any:
    """The trainable part's raw outputs as probability targets (sigmoid / softmax of logits, else as they are)."""
    import torch

    if parent.calibrated or parent.card.output == "logits":
        return torch.sigmoid(out) if (parent.card.multilabel or parent.calibrated) else torch.softmax(out, dim=1)
    return out


def _loss(parent: Trainable, out: Any, y: Any) -> Any:
    """Loss of the trainable part's raw outputs ``out`` against targets ``y`` in [0, 1] (labels or soft)."""
    import torch
    from torch.nn import functional as F

    card = parent.card
    if parent.calibrated or card.output == "logits":
        if card.multilabel or parent.calibrated:
            return F.binary_cross_entropy_with_logits(out, y)
        log_p = F.log_softmax(out, dim=1)
    else:
        if card.multilabel:
            return F.binary_cross_entropy(out.clamp(1e-6, 1 - 1e-6), y)
        log_p = torch.log(out.clamp_min(1e-6))
    # Mutually exclusive classes: cross-entropy against the labels normalised per row; rows without one skip.
    mass = y.sum(dim=1, keepdim=True)
    has = mass[:, 0] > 0
    if not bool(has.any()):
        return (out * 0).sum()
    return -((y[has] / mass[has]) * log_p[has]).sum(dim=1).mean()


def _batch_loss(
    parent: Trainable,
    out: Any,
    batch: MixBatch,
    config: HardenConfig,
    *,
    teacher: Any | None,
    scale: float,
    params: Sequence[Any],
    anchor: Sequence[Any] | None,
) -> Any:
    """The fine-tuning loss of one batch: the label loss of the trainable part's raw outputs ``out``
    ``[batch, classes]``, plus ``config.distill`` times the loss against ``teacher``'s answer on each row's clean
    window (when a teacher is given), plus the L2-SP penalty towards ``anchor`` (when given)."""
    import torch

    y = torch.from_numpy(batch.Y)
    if config.clean_label_weight == config.label_weight == 1.0:
        loss = _loss(parent, out, y)
    else:  # each part weighs its share of the batch times its label weight
        loss = out.new_zeros(())
        is_clean = torch.from_numpy(batch.source == 0)
        for rows, weight in ((~is_clean, config.label_weight), (is_clean, config.clean_label_weight)):
            if weight > 0 and bool(rows.any()):
                share = float(rows.float().mean())
                loss = loss + weight * share * _loss(parent, out[rows], y[rows])
    if teacher is not None:  # stability training: answer a noisy row as the parent answers its clean window
        with torch.no_grad():
            soft = _targets(parent, teacher(torch.from_numpy(batch.clean) * scale))
        loss = loss + config.distill * _loss(parent, out, soft)
    if anchor is not None:  # L2-SP: stay near the parent's weights
        loss = loss + 0.5 * config.l2sp * sum(((p - p0) ** 2).sum() for p, p0 in zip(params, anchor))
    return loss


def _val_figures(parent: Trainable, X: np.ndarray, Y: np.ndarray, thresholds: dict[str, float]) -> dict[str, dict]:
    return class_metrics(Y, _probabilities(parent, X), parent.card.classes, thresholds)


def _mean_auc(figures: dict[str, dict]) -> float:
    aucs = [v["auc"] for v in figures.values() if v["auc"] is not None]
    return float(np.mean(aucs)) if aucs else 0.0


def _recalibrate(
    parent: Trainable, X: np.ndarray, Y: np.ndarray, rule: str = "parent"
) -> tuple[dict[str, float], list[str]]:
    """Refit the Platt scaling (a `Calibrated` module) on validation windows, and set the per-class thresholds by
    ``rule`` (`HardenConfig.thresholds`).

    Returns the thresholds and, for "youden", the classes whose threshold still stays the parent's: those the
    validation windows separate (almost) perfectly (AUC >= `SEPARATED_AUC`), where Youden's J is flat across the
    gap and would put the threshold at the lowest positive, wherever that happens to be (the first hardened
    model's AF threshold moved from 0.036 to 0.746 that way).
    """
    import torch

    from ecglens.classifiers.train import fit_platt, youden_thresholds  # imports torch

    check_threshold_rule(rule)  # before the Platt buffers change
    scale = np.float32(parent.card.input_scale)
    Xs = X * scale if scale != 1 else X
    if parent.calibrated:
        a, b = fit_platt(_outputs(parent.module.net, Xs), Y)
        with torch.no_grad():
            parent.module.a.copy_(torch.tensor(a, dtype=torch.float32))
            parent.module.b.copy_(torch.tensor(b, dtype=torch.float32))
    if not parent.card.multilabel or rule == "parent":
        return dict(parent.card.thresholds), []
    probs = _probabilities(parent, X)
    picked = youden_thresholds(probs, Y, parent.card.classes)
    separated = separated_classes(class_metrics(Y, probs, parent.card.classes, picked))
    kept = [c for c in parent.card.classes if c in separated and c in parent.card.thresholds]
    return {c: float(parent.card.thresholds[c]) if c in kept else picked[c] for c in parent.card.classes}, kept


def harden_module(
    parent: Trainable,
    train: WindowSource,
    val_X: np.ndarray,
    val_Y: np.ndarray,
    config: HardenConfig | None = None,
    *,
    log: Callable[[str], None] | None = print,
    progress: Callable[[float], None] | None = None,
    pool: AdversarialPool | None = None,
) -> HardenResult:
    """Fine-tune ``parent`` on the hardening mix (the package docstring, steps 2-5). ``parent.module`` is changed in
    place and returned in the result.

    Parameters
    ----------
    parent : Trainable
        From `load_trainable`.
    train : WindowSource
        The parent's training windows at its input rate, leads and length (mV).
    val_X, val_Y : np.ndarray
        Validation windows float32 ``[n, leads, samples]`` and targets ``[n, classes]``: model selection,
        recalibration and thresholds use them (never the test set).
    config : HardenConfig or None
        Default: `HardenConfig()`.
    log : callable or None
        Receives one line per phase and epoch. Default: print.
    progress : callable or None
        Called with the fraction done (pool 0-0.3, fine-tuning 0.3-1). Default: None.
    pool : AdversarialPool or None
        The agent pool of an earlier run with the same parent, training windows and ``config`` (seed,
        ``agent_windows``, ``agent_budget``), to skip recomputing it. Default: None (computed here).

    Deterministic for a given ``config.seed``, data and thread count.
    """
    import torch

    from ecglens.classifiers.train import augment  # imports torch

    config = replace(config) if config else HardenConfig()  # a copy: the filter length is filled in below
    say = log or (lambda _line: None)
    report = progress or (lambda _f: None)
    card = parent.card
    if val_Y.shape[1] != len(card.classes):
        raise ValueError(
            f"{parent.path}: validation targets have {val_Y.shape[1]} columns, the card {len(card.classes)} classes"
        )
    check_threshold_rule(config.thresholds)  # now, not after minutes of fine-tuning
    threads_before, det_before = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    torch.use_deterministic_algorithms(True)
    try:
        timing: dict[str, float] = {}
        t0 = time.perf_counter()
        rng = np.random.default_rng([config.seed, 1])
        clf = TorchScriptClassifier(parent.path, card, device="cpu")
        n = input_samples(clf)
        if val_X.shape[1:] != (len(card.leads), n):
            raise ValueError(
                f"{parent.path}: validation windows are {list(val_X.shape[1:])}, the card wants "
                f"[{len(card.leads)}, {n}]"
            )
        if pool is None:
            pool = adversarial_pool(
                clf,
                train,
                config.agent_windows,
                np.random.default_rng([config.seed, 2]),
                query_budget=config.agent_budget,
                seed=config.seed,
                progress=lambda f: report(0.3 * f),
            )
        timing["agent_pool"] = time.perf_counter() - t0
        say(
            f"agent pool: {len(pool)} of {pool.tried} training windows flipped ({pool.method}, "
            f"{pool.queries} queries, {timing['agent_pool']:.0f} s)"
        )
        mix = HardeningMix(train, pool, card.sampling_rate, config)

        val_noisy = noisy_copies(val_X, card.sampling_rate, config.seed, [k for k, _ in mix.kinds] or KINDS)
        before = {
            "clean": _val_figures(parent, val_X, val_Y, card.thresholds),
            "noisy": _val_figures(parent, val_noisy, val_Y, card.thresholds),
        }

        if config.highpass_hz > 0 or config.export_highpass_hz > 0:
            config.highpass_taps = highpass_length(card, config.highpass_taps)  # recorded on the card
        if config.highpass_hz > 0:
            parent = with_highpass(parent, config.highpass_hz, config.highpass_taps)
        elif config.baseline_removal_s > 0:
            parent = with_baseline_removal(parent, config.baseline_removal_s)
        net = parent.logits_net()
        params = [p for p in net.parameters() if p.is_floating_point() and p.requires_grad]
        start = {k: v.detach().clone() for k, v in net.state_dict().items()}
        scale = float(card.input_scale)
        teacher = load_trainable(parent.path).logits_net().eval() if config.distill > 0 else None
        total = max(1, config.epochs * config.steps_per_epoch)
        members, history = [], []
        t1 = time.perf_counter()
        for member in range(max(1, config.soup)):
            # Member k starts from the parent's weights with seed + k (member 0 draws exactly as a single run).
            seed_k = config.seed + member
            net.load_state_dict(start)
            rng_k = rng if member == 0 else np.random.default_rng([seed_k, 1])
            opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
            sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=total, pct_start=0.2)
            ema = _EmaWeights(net, config.ema)
            anchor = [p.detach().clone() for p in params] if config.l2sp > 0 else None
            gen = torch.Generator().manual_seed(seed_k)
            # Dropout draws from torch's global generator; the agent (e.g. building its policy network on first
            # use in this process) may have drawn from it, so seed it again here.
            torch.manual_seed(seed_k)
            best, best_score = None, -np.inf
            for epoch in range(config.epochs):
                net.train()
                if config.freeze_bn:  # keep the parent's normalisation statistics: noisy rows must not move them
                    for m in net.modules():
                        if getattr(m, "original_name", type(m).__name__).startswith("BatchNorm"):
                            m.eval()
                losses = []
                for _ in range(config.steps_per_epoch):
                    b = mix.draw(config.batch_size, rng_k)
                    x = augment(torch.from_numpy(b.X), card.sampling_rate, gen) * scale
                    loss = _batch_loss(
                        parent, net(x), b, config, teacher=teacher, scale=scale, params=params, anchor=anchor
                    )
                    opt.zero_grad()
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(params, 5.0)
                    opt.step()
                    sched.step()
                    ema.update(net)
                    losses.append(float(loss.item()))
                with ema.applied(net):
                    clean = _val_figures(parent, val_X, val_Y, card.thresholds)
                    noisy = _val_figures(parent, val_noisy, val_Y, card.thresholds)
                score = (_mean_auc(clean) + _mean_auc(noisy)) / 2
                history.append(
                    {
                        "member": member + 1,
                        "seed": seed_k,
                        "epoch": epoch + 1,
                        "loss": float(np.mean(losses)) if losses else 0.0,
                        "val_mean_auc_clean": _mean_auc(clean),
                        "val_mean_auc_noisy": _mean_auc(noisy),
                        "score": score,
                        "elapsed_s": time.perf_counter() - t1,
                    }
                )
                say(
                    f"member {member + 1} epoch {epoch + 1:3d}  loss {history[-1]['loss']:.4f}  val AUC clean "
                    f"{_mean_auc(clean):.4f}  noisy {_mean_auc(noisy):.4f}  ({time.perf_counter() - t1:.0f} s)"
                )
                if score > best_score:
                    best_score, best = score, {k: v.clone() for k, v in ema.state.items()}
                done = member * config.epochs + epoch + 1
                report(0.3 + 0.7 * done / max(1, config.epochs * max(1, config.soup)))
            members.append(best if best is not None else {k: v.detach().clone() for k, v in net.state_dict().items()})
        # Uniform model soup (Wortsman et al., ICML 2022): fine-tunes of one parent share its basin, so their
        # averaged weights keep their robustness while their seed-to-seed drift on clean windows averages out.
        net.load_state_dict(_soup(members))
        timing["fine_tune"] = time.perf_counter() - t1
        thresholds, kept_thresholds = _recalibrate(parent, val_X, val_Y, config.thresholds)
        if config.export_highpass_hz > 0 and config.highpass_hz <= 0:
            # After the recalibration, so the Platt buffers and thresholds carry over unchanged.
            parent = with_highpass(parent, config.export_highpass_hz, config.highpass_taps)
        parent.module.eval()
        after = {
            "clean": _val_figures(parent, val_X, val_Y, thresholds),
            "noisy": _val_figures(parent, val_noisy, val_Y, thresholds),
        }
        timing["total"] = time.perf_counter() - t0
        figures = {
            "validation_windows": int(len(val_X)),
            "noisy_validation": "the same windows, window i with kind i mod 5 at NSTDB level (i div 5) mod "
            "6 (nst-style SNR per lead), seeded by the recipe seed",
            "parent": before,
            "hardened": after,
        }
        report(1.0)
        return HardenResult(
            parent.module,
            thresholds,
            pool,
            history,
            figures,
            {k: round(v, 1) for k, v in timing.items()},
            config,
            dict(mix.skipped),
            kept_thresholds,
        )
    finally:
        torch.set_num_threads(threads_before)
        torch.use_deterministic_algorithms(det_before)


def harden(
    spec: str | Path,
    out: str | Path,
    *,
    data_dir: str | Path | None = None,
    config: HardenConfig | None = None,
    name: str | None = None,
    log: Callable[[str], None] | None = print,
    progress: Callable[[float], None] | None = None,
    hold_out: Sequence[str] = (),
    pool: AdversarialPool | None = None,
) -> ModelCard:
    """Harden the classifier ``spec`` on its MIT-BIH DS1 training data and write ``out`` + card.

    Parameters
    ----------
    spec : str or Path
        The parent: ``"builtin"``, a model name under ``models/`` or a TorchScript file (see `load_trainable`).
    out : str or Path
        The new TorchScript file (its card goes beside it, ``.json``). Must not be the parent's file.
    data_dir : str or Path or None
        Folder with the MIT-BIH records. Default: ``../shared/data/mitdb``.
    config : HardenConfig or None
        Default: `HardenConfig()`.
    name : str or None
        The new card's name. Default: the stem of ``out``.
    log, progress : callables or None
        See `harden_module`.
    hold_out : sequence of str
        DS1 records to leave out of hardening altogether (recipe experiments validate on them). Default: ().
    pool : AdversarialPool or None
        See `harden_module`. Default: None.

    Returns
    -------
    ModelCard
        The card written beside ``out``.
    """
    parent = load_trainable(spec)
    out = Path(out)
    if out.resolve() == parent.path.resolve() or card_path_for(out).resolve() == card_path_for(parent.path).resolve():
        raise ValueError(f"{out}: the hardened model must not overwrite its parent {parent.path}")
    if out.suffix.lower() not in (".pt", ".pth", ".ts", ".torchscript"):
        raise ValueError(f"{out}: the hardened model is TorchScript; give a .pt path")
    train, val_X, val_Y = mitdb_sources(parent, data_dir, hold_out=hold_out)
    result = harden_module(parent, train, val_X, val_Y, config, log=log, progress=progress, pool=pool)
    data = {
        "hardening_data": "DS1 training windows (classifiers.train.split_ds1); agent pool from the same "
        "training windows; validation = the DS1 validation split; DS2 untouched"
    }
    if hold_out:
        data["held_out_records"] = sorted(hold_out)
    card = hardened_card(parent, result, name or out.stem, data=data)
    save_hardened(result, card, out)
    return card
