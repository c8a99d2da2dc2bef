"""Training the built-in any-lead classifier (`ecglens.classifiers.anylead.AnyLeadNet`) on MIT-BIH DS1.

Recipe (`train_anylead`), beside `ecglens.classifiers.train`'s (whose split, sampler, calibration and thresholds it
shares):

1. DS1 only, split as `train.split_ds1` (held-out records 116, 118, 124, 215, 220 and the last 30% of the AF
   records 201, 203 validate). Both recorded channels of every record are used: MLII and V1, V2, V4 or V5.
2. Each step draws a class-balanced batch of 10-s windows (`train.WindowSampler` with `AnyLeadConfig.class_mix`,
   by default `train.CLASS_MIX`; time-stretched by up to ±`AnyLeadConfig.stretch`), then a lead count for the
   whole batch (`LEAD_COUNTS`: 1 to 12 leads) and builds that many leads per window (`synthesise_leads`): the recorded channels (in random order) and, beyond them, other
   projections of the heart's vector, ``cos(a) * ch0 + sin(a) * ch1`` for a random angle ``a``, so that 3 to 12
   leads of other names look like what the network meets in 12-lead records.
3. Per lead: polarity flip, gain (x0.3 to x3), and with probability `AnyLeadConfig.noise_p` one of the five noises
   of `ecglens.distortions` (baseline wander, powerline 50/60 Hz, muscle, electrode motion, Gaussian) at an SNR of
   `AnyLeadConfig.snr_db` (the nst definition: QRS peak-to-peak power, here estimated from the lead's range);
   rarely a lead is off (flat, a trace of Gaussian noise).
4. AdamW, one-cycle learning rate, binary cross-entropy, EMA of the weights; the EMA state with the best mean
   validation AUC over the lead sets {both channels, first channel, second channel} is kept.
5. Platt scaling per class on the validation windows of all three lead sets together; one threshold per class
   for every lead set: Youden's J on those windows (``thresholds="youden"``, the default) or, with
   ``thresholds="held-out"``, `operating_thresholds`: Youden's J on the windows of the held-out records
   (patients not trained on); for a class those do not set (atrial fibrillation/flutter, whose only DS1
   patients are trained on), Youden's J on all validation windows, lowered where needed to 99% specificity on
   the held-out patients' windows. Batch norm is folded into the convolutions for export (`fold_batch_norm`).

6. Optionally (``AnyLeadConfig.beat_head``, ``ecglens train-classifier --beat-head``; not in the committed
   built-in) the supraventricular beat head of `ecglens.classifiers.beat_rhythm` (`fit_beat_head`): boosted trees
   on per-beat rhythm and morphology features of the training records' detected beats, their window score fused
   with the network's supraventricular logit and Platt-scaled on the validation windows; that class's threshold is
   then set again by step 5's rule.

The defaults reproduce the committed built-in. `LOCAL_RHYTHM` is the recipe with local-prematurity RR
features (`AnyLeadNet` ``local_rhythm``), without the heart-rate feature, with more supraventricular windows
(`S_CLASS_MIX`) and held-out thresholds.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ecglens.classifiers.beat_rhythm import FUSION_WEIGHT, N_BEAT_FEATURES, TREE_CONFIG
from ecglens.classifiers.evaluate import class_metrics
from ecglens.classifiers.train import (
    CLASS_MIX,
    Calibrated,
    Span,
    TrainResult,
    WindowSampler,
    _ema_update,
    _logits,
    fit_platt,
    youden_thresholds,
)
from ecglens.datasets.mitdb import CLASS_NAMES
from ecglens.distortions import KINDS, noise_batch

# Share of normal, V, S and AF windows in each batch of the local-rhythm recipe (`LOCAL_RHYTHM`):
# supraventricular ectopy, the hardest class between patients, is drawn most.
S_CLASS_MIX: tuple[float, ...] = (0.3, 0.25, 0.3, 0.15)
# Leads per training batch and how often: single leads and pairs most, up to 12.
LEAD_COUNTS: tuple[tuple[int, float], ...] = ((1, 0.3), (2, 0.3), (3, 0.1), (4, 0.1), (6, 0.1), (8, 0.05), (12, 0.05))
VAL_LEAD_SETS: tuple[tuple[int, ...], ...] = ((0, 1), (0,), (1,))
HELD_OUT_SPECIFICITY = 0.99  # `operating_thresholds` for classes the held-out patients do not set


@dataclass
class AnyLeadConfig:
    """Hyperparameters of `train_anylead`. Defaults are the built-in model's."""

    arch: str = "anylead"
    seed: int = 0
    epochs: int = 12
    steps_per_epoch: int = 100
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-2
    threads: int = 1
    ema: float = 0.995
    stretch: float = 0.15
    noise_p: float = 0.4
    snr_db: tuple[float, float] = (6.0, 30.0)
    flip_p: float = 0.2
    lead_off_p: float = 0.03
    window_s: float = 10.0
    fs: float = 360.0
    leads: tuple[str, ...] = ("MLII", "V1")
    lead_counts: tuple[tuple[int, float], ...] = field(default_factory=lambda: LEAD_COUNTS)
    class_mix: tuple[float, ...] = CLASS_MIX
    local_rhythm: bool = False
    rate_feature: bool = True
    thresholds: str = "youden"
    beat_head: bool = False


# The local-rhythm recipe (`AnyLeadConfig(**LOCAL_RHYTHM)`, ``ecglens train-classifier --recipe local-rhythm``):
# local-prematurity RR features and track, no heart-rate feature, more supraventricular windows, thresholds from
# the held-out patients (`operating_thresholds`). On MIT-BIH DS2 it lifts supraventricular ectopy from 0.824 to
# 0.862 AUC (docs/classifiers.md); the committed built-in is still the default recipe's.
LOCAL_RHYTHM: dict[str, object] = {
    "local_rhythm": True,
    "rate_feature": False,
    "class_mix": S_CLASS_MIX,
    "thresholds": "held-out",
}


def _range(x: np.ndarray) -> np.ndarray:
    """Robust amplitude (99th minus 1st percentile) of each row of ``[..., samples]``, floored at 0.05 mV."""
    q = np.percentile(x, [1, 99], axis=-1)
    return np.maximum(q[1] - q[0], 0.05)


def synthesise_leads(xb: np.ndarray, n_leads: int, rng: np.random.Generator, config: AnyLeadConfig) -> np.ndarray:
    """``[batch, n_leads, samples]`` mV from 2-channel windows ``xb`` (module docstring, steps 2-3)."""
    b, _, t = xb.shape
    amp = _range(xb)  # [b, 2]
    unit = xb / amp[:, :, None]
    out = np.empty((b, n_leads, t), dtype=np.float32)
    for i in range(b):
        order = rng.permutation(2)
        originals = list(order[: min(2, n_leads)])
        if n_leads <= 2 and rng.random() < 0.2:  # sometimes one projection stands for a recorded channel
            originals = originals[:-1]
        rows, scale = [], []
        for c in originals:
            rows.append(unit[i, c])
            scale.append(amp[i, c])
        while len(rows) < n_leads:
            a = rng.uniform(0, 2 * np.pi)
            rows.append(np.cos(a) * unit[i, 0] + np.sin(a) * unit[i, 1])
            scale.append(float(np.sqrt(amp[i, 0] * amp[i, 1])))
        positions = rng.permutation(n_leads)
        for j, (row, sc) in enumerate(zip(rows, scale)):
            out[i, positions[j]] = row * sc
    sign = np.where(rng.random((b, n_leads, 1)) < config.flip_p, -1.0, 1.0)
    out *= (sign * np.exp(rng.uniform(np.log(0.3), np.log(3.0), (b, n_leads, 1)))).astype(np.float32)
    flat = out.reshape(b * n_leads, t)
    noisy = np.flatnonzero(rng.random(b * n_leads) < config.noise_p)
    if len(noisy):
        kinds = rng.integers(len(KINDS), size=len(noisy))
        power = _range(flat[noisy]) ** 2 / 8.0
        snr = rng.uniform(*config.snr_db, size=len(noisy))
        for k, kind in enumerate(KINDS):
            rows = noisy[kinds == k]
            if not len(rows):
                continue
            mains = 50.0 if rng.random() < 0.5 else 60.0
            raw = noise_batch(kind, len(rows), t, config.fs, rng, mains_hz=mains)
            gain = np.sqrt(power[kinds == k] / 10 ** (snr[kinds == k] / 10))
            flat[rows] += raw * gain[:, None].astype(np.float32)
    off = np.flatnonzero(rng.random(b * n_leads) < config.lead_off_p)
    if len(off):
        flat[off] = 0.005 * rng.standard_normal((len(off), t)).astype(np.float32)
    return flat.reshape(b, n_leads, t)


def validation_sets(val_spans: Sequence[Span], window: int) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """``([X for each of VAL_LEAD_SETS], Y, held_out)``: DS1 validation windows every half window, per lead set;
    ``held_out`` (bool per window) marks the windows of spans that are whole records (patients not trained on),
    as opposed to the held-out tails of training records."""
    sampler = WindowSampler(val_spans, window)
    x, y = sampler.grid_windows(window // 2)
    held_out = np.concatenate(
        [
            np.full(len(range(sp.lo, sp.hi - window + 1, window // 2)), sp.lo == 0 and sp.hi == sp.rec.n_samples)
            for sp in val_spans
        ]
    )
    return [np.ascontiguousarray(x[:, list(s)]) for s in VAL_LEAD_SETS], y, held_out


def operating_thresholds(
    probs: np.ndarray,
    y: np.ndarray,
    held_out: np.ndarray,
    class_names: Sequence[str],
    specificity: float = HELD_OUT_SPECIFICITY,
) -> dict[str, float]:
    """One threshold per class from validation probabilities ``probs`` (targets ``y``; ``held_out`` marks the
    windows of patients not trained on).

    Youden's J on the held-out patients' windows, so that the operating point is that of a patient the network
    never saw (the validation tails of training records make classes look easier than they are). Where the
    held-out patients have no positive of a class or separate it (almost) perfectly (AUC >= `SEPARATED_AUC`: MIT-BIH
    DS1's atrial fibrillation/flutter, whose only patients are trained on), Youden's J is set by a few windows
    near the lowest positive; the threshold is then Youden's J on all validation windows, lowered where needed to
    the one that keeps ``specificity`` on the held-out patients' negatives.
    """
    from sklearn.metrics import roc_auc_score

    from ecglens.classifiers.evaluate import SEPARATED_AUC

    held = youden_thresholds(probs[held_out], y[held_out], class_names)
    every = youden_thresholds(probs, y, class_names)
    out = {}
    for c, name in enumerate(class_names):
        t = y[held_out, c] > 0.5
        if t.any() and not t.all() and roc_auc_score(t, probs[held_out, c]) < SEPARATED_AUC:
            out[name] = held[name]
            continue
        negatives = probs[held_out, c][~t]
        if len(negatives):
            out[name] = float(min(every[name], max(np.quantile(negatives, specificity), 1e-4)))
        else:
            out[name] = every[name]
    return out


def load_base(path) -> nn.Module:
    """The calibrated default-recipe network (`train.Calibrated` over a folded `AnyLeadNet`) of a built-in file:
    the whole model of a file without a beat head, else its ``base``."""
    from ecglens.classifiers.anylead import AnyLeadNet

    state = torch.jit.load(str(path), map_location="cpu").state_dict()
    if any(k.startswith("base.") for k in state):
        state = {k[len("base.") :]: v for k, v in state.items() if k.startswith("base.")}
    net = Calibrated(fold_batch_norm(AnyLeadNet(len(CLASS_NAMES))), [1.0] * len(CLASS_NAMES), [0.0] * len(CLASS_NAMES))
    net.load_state_dict(state, strict=True)
    return net.eval()


def fold_batch_norm(net: nn.Module) -> nn.Module:
    """A copy of ``net`` (eval) with every ``Conv1d`` followed by ``BatchNorm1d`` in a `nn.Sequential` fused into
    one convolution with a bias (the same outputs, fewer operations per query)."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    net = copy.deepcopy(net).eval()
    for module in net.modules():
        if isinstance(module, nn.Sequential):
            for k in range(len(module) - 1):
                if isinstance(module[k], nn.Conv1d) and isinstance(module[k + 1], nn.BatchNorm1d):
                    module[k] = fuse_conv_bn_eval(module[k], module[k + 1])
                    module[k + 1] = nn.Identity()
    return net


def train_anylead(
    train_spans: Sequence[Span],
    val_spans: Sequence[Span],
    config: AnyLeadConfig | None = None,
    log: Callable[[str], None] | None = print,
    base: nn.Module | None = None,
) -> TrainResult:
    """Train, select, calibrate and threshold an `AnyLeadNet` (module docstring), then, with
    ``config.beat_head``, fit its supraventricular beat head (step 6). Deterministic per seed and thread count.

    ``base``: an already trained, calibrated network (`train.Calibrated` over a folded `AnyLeadNet`, e.g.
    `load_base` of ``models/builtin.pt``) to start from at step 5 instead of training one."""
    from ecglens.classifiers.anylead import AnyLeadNet

    config = config or AnyLeadConfig()
    if base is not None:
        return _finish(base.eval(), train_spans, val_spans, config, [], 0.0)
    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    torch.use_deterministic_algorithms(True)
    rng = np.random.default_rng(config.seed)
    window = int(round(config.window_s * config.fs))
    sampler = WindowSampler(train_spans, window)
    val_xs, val_y, held_out = validation_sets(val_spans, window)
    net = AnyLeadNet(len(CLASS_NAMES), fs=config.fs, local_rhythm=config.local_rhythm, rate_feature=config.rate_feature)
    opt = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    total = config.epochs * config.steps_per_epoch
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=total, pct_start=0.2)
    ema = copy.deepcopy(net).eval()
    counts = np.asarray([c for c, _ in config.lead_counts])
    weights = np.asarray([w for _, w in config.lead_counts], dtype=np.float64)
    best, best_score, history = None, -np.inf, []
    t0 = time.perf_counter()
    for epoch in range(config.epochs):
        net.train()
        losses = []
        for _ in range(config.steps_per_epoch):
            xb, yb = sampler.draw(config.batch_size, rng, mix=config.class_mix, stretch=config.stretch)
            n_leads = int(rng.choice(counts, p=weights / weights.sum()))
            x = torch.from_numpy(synthesise_leads(xb, n_leads, rng, config))
            loss = nn.functional.binary_cross_entropy_with_logits(net(x), torch.from_numpy(yb))
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(net.parameters(), 5.0)
            opt.step()
            sched.step()
            losses.append(loss.item())
            _ema_update(ema, net, config.ema)
        per_set = []
        for vx in val_xs:
            m = class_metrics(val_y, 1 / (1 + np.exp(-_logits(ema, vx))), CLASS_NAMES, {})
            per_set.append([v["auc"] or 0.0 for v in m.values()])
        aucs = np.asarray(per_set)
        score = float(aucs.mean())
        history.append(
            {
                "epoch": epoch + 1,
                "loss": float(np.mean(losses)),
                "val_mean_auc": score,
                **{f"val_auc/{k}": float(aucs[:, c].mean()) for c, k in enumerate(CLASS_NAMES)},
                "elapsed_s": time.perf_counter() - t0,
            }
        )
        if log:
            log(
                f"epoch {epoch + 1:3d}  loss {np.mean(losses):.4f}  val AUC (mean of lead sets) "
                + " ".join(f"{a:.4f}" for a in aucs.mean(axis=0))
                + "  per set "
                + " ".join(f"{a:.4f}" for a in aucs.mean(axis=1))
                + f"  ({time.perf_counter() - t0:.0f} s)"
            )
        if score > best_score:
            best_score, best = score, {k: v.detach().clone() for k, v in ema.state_dict().items()}
    net.load_state_dict(best)
    net = fold_batch_norm(net)
    val_logits = np.concatenate([_logits(net, vx) for vx in val_xs])
    val_all_y = np.concatenate([val_y] * len(val_xs))
    a, b = fit_platt(val_logits, val_all_y)
    model = Calibrated(net, a, b).eval()
    return _finish(model, train_spans, val_spans, config, history, time.perf_counter() - t0)


def _finish(
    model: nn.Module,
    train_spans: Sequence[Span],
    val_spans: Sequence[Span],
    config: AnyLeadConfig,
    history: list[dict[str, float]],
    seconds: float,
) -> TrainResult:
    """Steps 5 (thresholds) and 6 (the beat head) on a calibrated network ``model``."""
    t0 = time.perf_counter() - seconds
    window = int(round(config.window_s * config.fs))
    val_xs, val_y, held_out = validation_sets(val_spans, window)
    val_all_y = np.concatenate([val_y] * len(val_xs))
    if config.beat_head:
        from ecglens.classifiers.beat_rhythm import fit_beat_head

        model = fit_beat_head(model, train_spans, val_xs, val_y, s_index=CLASS_NAMES.index("supraventricular ectopy"))
    probs = _logits(model, val_xs[0])
    val_probs = np.concatenate([_logits(model, vx) for vx in val_xs])
    if config.thresholds == "held-out":
        thresholds = operating_thresholds(val_probs, val_all_y, np.concatenate([held_out] * len(val_xs)), CLASS_NAMES)
    else:
        thresholds = youden_thresholds(val_probs, val_all_y, CLASS_NAMES)
    val_metrics = {"MLII+V1": class_metrics(val_y, probs, CLASS_NAMES, thresholds)}
    for name, vx in zip(("MLII", "second lead"), val_xs[1:]):
        val_metrics[name] = class_metrics(val_y, _logits(model, vx), CLASS_NAMES, thresholds)
    return TrainResult(model, thresholds, val_metrics, history, time.perf_counter() - t0, config)  # type: ignore


DS2_LEAD_SETS: dict[str, tuple[int, ...]] = {"MLII+V1": (0, 1), "MLII": (0,), "V1 (second lead)": (1,)}


def ds2_lead_set_metrics(classifier, data_dir=None, cache_dir=None) -> dict[str, dict[str, dict]]:
    """`class_metrics` of an any-lead ``classifier`` on MIT-BIH DS2 (non-overlapping 10-s windows) per lead set
    (`DS2_LEAD_SETS`: both channels, the first (MLII), the second (V1; V2, V4 or V5 in records 103, 117, 100,
    123))."""
    from ecglens.classifiers.evaluate import evaluate
    from ecglens.datasets.mitdb import DS2, load_windows

    w = load_windows(DS2, data_dir, window_s=classifier.window_s, leads=("MLII", "V1"), cache_dir=cache_dir)
    return {
        name: evaluate(classifier, np.ascontiguousarray(w.X[:, list(rows)]), w.Y)
        for name, rows in DS2_LEAD_SETS.items()
    }


def cinc2021_metrics(classifier, folder) -> dict[str, object]:
    """`class_metrics` of ``classifier`` on the first 10 s of the CinC 2021 12-lead records in ``folder`` (all 12
    leads), labels from their SNOMED-CT codes (`evaluate.snomed_labels`)."""
    from ecglens.classifiers.evaluate import cinc2021_windows, class_metrics

    X, Y, names, _ = cinc2021_windows(folder, classifier.sampling_rate, classifier.window_s, classifier.class_names)
    probs = classifier.predict_proba(X)
    return {
        "records": len(names),
        "leads": 12,
        "figures": class_metrics(Y, probs, classifier.class_names, dict(classifier.thresholds)),
    }


def low_sensitivity_notes(ds2: dict[str, dict], below: float = 0.6) -> list[str]:
    """A note per lead set and class whose DS2 sensitivity at the card's threshold is under ``below``."""
    return [
        f"On MIT-BIH DS2 ({lead_set}) the {cls} sensitivity at its threshold is {f['sensitivity']:.2f} "
        f"(specificity {f['specificity']:.2f}, AUC {f['auc']:.3f}): the threshold chosen on DS1 validation does "
        "not carry over; pick one on your own data."
        for lead_set, figures in ds2.items()
        for cls, f in figures.items()
        if f.get("sensitivity") is not None and f["sensitivity"] < below
    ]


def build_anylead_card(
    name: str, result: TrainResult, ds2: dict[str, dict] | None, cinc: dict[str, object] | None = None
):
    """The built-in's model card: lead rule "any", DS1 validation and DS2 figures per lead set, CinC 2021 check."""
    from ecglens.classifiers.card import ModelCard
    from ecglens.classifiers.evaluate import unset_threshold_warnings
    from ecglens.classifiers.train import AF_SPLIT_RECORDS, AF_TRAIN_FRACTION, DATA_ATTRIBUTION, VAL_RECORDS
    from ecglens.datasets.mitdb import DS1, DS2

    cfg = result.config
    params = sum(p.numel() for p in result.model.parameters())
    trees = getattr(result.model, "trees", None)
    head = (
        f"; supraventricular beat head: {int(trees.value.shape[0])} boosted trees of up to "
        f"{int(trees.value.shape[1])} leaves on {N_BEAT_FEATURES} per-beat rhythm and morphology features, fused "
        f"with the network's logit (weight {float(result.model.weight):g})"
        if trees is not None
        else ""
    )
    ds2 = ds2 or {}
    warnings: list[str] = []
    for lead_set, figures in result.val_metrics.items():
        warnings += [f"{lead_set}: {w}" for w in unset_threshold_warnings(figures)]
    warnings += low_sensitivity_notes(ds2)
    return ModelCard(
        name=name,
        version="2",
        classes=list(CLASS_NAMES),
        sampling_rate=cfg.fs,
        leads=list(cfg.leads),
        lead_rule="any",
        window_s=cfg.window_s,
        input_units="mV",
        output="probabilities",
        multilabel=True,
        thresholds={k: round(v, 6) for k, v in result.thresholds.items()},
        input_scale=1.0,
        architecture=f"anylead: AnyLeadNet (one single-lead CNN shared by all leads, RR-interval features, pooled "
        f"over leads), {params} parameters{head}",
        description="Multi-label 10-s classifier for any lead set (1 lead of any name, 2 leads, 12 leads; 360 Hz, "
        "records are resampled): normal, ventricular ectopy, supraventricular ectopy, atrial fibrillation/flutter. "
        "Every lead is normalised to its own amplitude and seen by the same network; RR-interval features come "
        "from a QRS detector all leads vote in. Outputs calibrated probabilities.",
        intended_use="Research and demonstration of ECG Lens (explanations and robustness of black-box ECG "
        "classifiers). Not a medical device; not for diagnosis. Trained on 22 Holter patients of one database "
        "(MIT-BIH, 1975-79, 2 leads: MLII and V1, V2, V4 or V5; other leads only as synthetic projections of "
        "those two): expect lower accuracy on 12-lead resting ECGs, paced rhythms (excluded from training) and "
        "rare rhythms (ventricular flutter, AV blocks). Atrial fibrillation/flutter was learned from 2 patients.",
        data=dict(
            DATA_ATTRIBUTION,
            train_records=[r for r in DS1 if r not in VAL_RECORDS],
            validation=f"records {', '.join(VAL_RECORDS)} and the last {1 - AF_TRAIN_FRACTION:.0%} of "
            f"{', '.join(AF_SPLIT_RECORDS)}",
            test_records=list(DS2),
            leads="both channels of every record (MLII; V1, or V2: 103, 117; V4: 124; V5: 100, 114, 123), "
            "and random projections of the two as further leads (1 to 12 leads per input)",
            labels="datasets.mitdb.load_windows: V = any V/E beat; S = any A/a/J/S beat; AF = (AFIB/(AFL "
            "over >50% of the window; normal = >=1 beat, all AAMI N, not AF, no flutter wave",
            out_of_database="PhysioNet/CinC Challenge 2021 (Reyna et al., Computing in Cardiology 48, 2021; "
            "CC BY 4.0), 50 12-lead records (Georgia, PTB-XL, Chapman-Shaoxing/Ningbo); labels "
            "from SNOMED-CT codes (evaluate.SNOMED_FINDINGS)",
        ),
        metrics={
            "test_set": "MIT-BIH DS2, non-overlapping 10-s windows (hop 10 s); ds2 = both channels",
            "ds2": ds2.get("MLII+V1", {}),
            "ds2_by_lead_set": ds2,
            "ds1_validation": result.val_metrics.get("MLII+V1", {}),
            "ds1_validation_by_lead_set": result.val_metrics,
            "cinc2021": cinc or {},
            "params": params,
        },
        training={
            "recipe": "ecglens.classifiers.train_anylead (module docstring)",
            "arch": cfg.arch,
            "seed": cfg.seed,
            "epochs": cfg.epochs,
            "steps_per_epoch": cfg.steps_per_epoch,
            "batch_size": cfg.batch_size,
            "lr": cfg.lr,
            "weight_decay": cfg.weight_decay,
            "optimizer": "AdamW, one-cycle",
            "ema": cfg.ema,
            "time_stretch": cfg.stretch,
            "lead_counts": [list(x) for x in cfg.lead_counts],
            "noise_p": cfg.noise_p,
            "snr_db": list(cfg.snr_db),
            "polarity_flip_p": cfg.flip_p,
            "lead_off_p": cfg.lead_off_p,
            "loss": f"binary cross-entropy, class-balanced sampling {tuple(cfg.class_mix)}",
            "local_rhythm": cfg.local_rhythm,
            "rate_feature": cfg.rate_feature,
            "beat_head": "ecglens.classifiers.beat_rhythm (module docstring): HistGradientBoosting "
            f"{dict(TREE_CONFIG)} on the detected beats of the DS1 training records (3 lead sets, windows every "
            "5 s), supraventricular vs any other beat; window score = the largest beat logit; fused logit = "
            f"network logit + {FUSION_WEIGHT} x score, Platt-scaled on DS1 validation"
            if trees is not None
            else None,
            "selection": "best mean DS1-validation AUC over the lead sets MLII+V1, MLII, second lead",
            "calibration": "Platt scaling per class on DS1 validation (all three lead sets)",
            "thresholds": "Youden's J per class on DS1 validation (all three lead sets)"
            if cfg.thresholds != "held-out"
            else "train_anylead.operating_thresholds: Youden's J per class on the held-out DS1 records (all three "
            "lead sets); AF (no held-out positive): Youden's J on all DS1 validation, at most the threshold of "
            "99% specificity on the held-out records",
            "threads": cfg.threads,
            "train_seconds": round(result.train_seconds, 1),
            "best_epoch": int(np.argmax([h["val_mean_auc"] for h in result.history]) + 1) if result.history else None,
        },
        extra={"known_issues": warnings},
    )
