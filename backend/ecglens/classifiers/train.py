"""Training the former 2-lead built-in classifier (ResNet1d, ``--arch resnet1d``) and the transfer architectures on
MIT-BIH DS1, evaluated on DS2. The built-in any-lead model shares the split, sampler, calibration and thresholds
defined here and is trained by `ecglens.classifiers.train_anylead`.

Recipe (`train_classifier`):

1. DS1 only. Validation = whole held-out DS1 records (`VAL_RECORDS`) plus the last 30% (in time) of the two DS1
   records with atrial fibrillation/flutter (201, 203), which are the only AF/flutter records in DS1; training
   uses the rest of DS1 (the first 70% of 201 and 203). DS2 is never looked at until the final evaluation.
2. Each step draws a class-balanced batch: a class is picked (normal, V, S, AF with `CLASS_MIX`), then a
   10-s window start among training windows (every 0.5 s) positive for it, jittered by up to ±0.5 s; the labels
   are recomputed for the jittered window (`load_windows` rules).
3. Augmentation in mV: amplitude scaling (whole window and per lead), Gaussian noise, baseline wander, mains
   interference, time scaling by up to ±12% (heart rate and QRS width), second lead sign flip or dropout (half
   the windows: the second lead is V1, V2, V4 or V5 depending on the record, so MLII must suffice).
4. AdamW with a one-cycle learning rate, binary cross-entropy on the 4 logits; an exponential moving average
   of the weights (decay `TrainConfig.ema`) is what gets evaluated. The EMA state with the best mean validation
   AUC is kept.
5. Calibration: Platt scaling per class (``sigmoid(a * logit + b)``) fitted on the validation windows; operating
   threshold per class maximising Youden's J (sensitivity + specificity - 1) on the validation windows.
6. Export: TorchScript module answering calibrated probabilities, model card beside it with DS2 figures.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ecglens.classifiers.anylead import AnyLeadNet
from ecglens.classifiers.card import ModelCard, card_path_for
from ecglens.classifiers.evaluate import class_metrics, evaluate, unset_threshold_warnings
from ecglens.classifiers.gru import ConvGRU
from ecglens.classifiers.resnet import ResNet1d
from ecglens.datasets.mitdb import (
    AAMI_CLASSES,
    AF_RHYTHMS,
    CLASS_NAMES,
    DS1,
    DS2,
    MitdbRecord,
    load_record,
    load_windows,
)

VAL_RECORDS: tuple[str, ...] = ("116", "118", "124", "215", "220")
AF_SPLIT_RECORDS: tuple[str, ...] = ("201", "203")
AF_TRAIN_FRACTION = 0.7
ARCH_EPOCHS = {"resnet1d": 14, "gru": 8}  # the GRU's steps cost ~5x more on CPU: fewer, to stay under 15 min
CLASS_MIX = (0.3, 0.3, 0.25, 0.15)  # normal, V, S, AF share of each training batch
DATA_ATTRIBUTION = {
    "dataset": "MIT-BIH Arrhythmia Database",
    "citation": "Moody GB, Mark RG. The impact of the MIT-BIH Arrhythmia Database. IEEE Eng Med Biol "
    "20(3):45-50 (2001)",
    "physionet": "Goldberger AL et al. PhysioBank, PhysioToolkit, and PhysioNet. Circulation 101(23):e215-e220 (2000)",
    "licence": "Open Data Commons Attribution License v1.0 (ODC-By 1.0)",
    "url": "https://physionet.org/content/mitdb/1.0.0/",
    "split": "inter-patient DS1 (train/validation) / DS2 (test), de Chazal et al. IEEE TBME 51(7) (2004); paced "
    "records 102, 104, 107, 217 excluded",
}


def build_network(arch: str, n_leads: int = 2, n_classes: int = 4) -> nn.Module:
    """A fresh network by architecture name: "resnet1d" (built-in) or "gru" (transfer)."""
    if arch == "resnet1d":
        return ResNet1d(n_leads, n_classes)
    if arch == "gru":
        return ConvGRU(n_leads, n_classes)
    if arch == "anylead":
        return AnyLeadNet(n_classes)
    raise ValueError(f"unknown architecture {arch!r}; expected one of: anylead, resnet1d, gru")


class Calibrated(nn.Module):
    """A logit network followed by per-class Platt scaling: outputs ``sigmoid(a * logit + b)`` probabilities."""

    def __init__(self, net: nn.Module, a: Sequence[float], b: Sequence[float]):
        super().__init__()
        self.net = net
        self.register_buffer("a", torch.tensor(list(a), dtype=torch.float32))
        self.register_buffer("b", torch.tensor(list(b), dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.net(x) * self.a + self.b)


@dataclass
class Span:
    """Part of a record usable for windows: samples ``[lo, hi)`` of ``rec``."""

    rec: MitdbRecord
    lo: int
    hi: int


class WindowSampler:
    """Labelled windows at arbitrary starts of a set of record spans, drawn class-balanced.

    Parameters
    ----------
    spans : sequence of Span
        Record parts to draw from.
    window : int
        Window length in samples. Default: 3600.
    grid : int
        Spacing of candidate starts in samples. Default: 180 (0.5 s at 360 Hz).
    """

    def __init__(self, spans: Sequence[Span], window: int = 3600, grid: int = 180):
        self.spans = list(spans)
        self.window = window
        self._index = []  # per span: helpers to label any start in O(log beats)
        cand_span, cand_start, cand_y = [], [], []
        for k, sp in enumerate(self.spans):
            rec = sp.rec
            codes, names = rec.rhythm_per_sample()
            af = np.isin(codes, [names.index(r) for r in AF_RHYTHMS if r in names])
            helpers = {
                "v": rec.beat_sample[np.isin(rec.beat_symbol, AAMI_CLASSES["V"])],
                "s": rec.beat_sample[np.isin(rec.beat_symbol, AAMI_CLASSES["S"])],
                "not_n": rec.beat_sample[~np.isin(rec.beat_symbol, AAMI_CLASSES["N"])],
                "beat": rec.beat_sample,
                "flutter": rec.flutter_wave_sample,
                "af_cum": np.concatenate([[0], np.cumsum(af, dtype=np.int64)]),
            }
            self._index.append(helpers)
            starts = np.arange(sp.lo, sp.hi - window + 1, grid, dtype=np.int64)
            cand_span.append(np.full(len(starts), k))
            cand_start.append(starts)
            cand_y.append(self.labels(k, starts))
        self.cand_span = np.concatenate(cand_span)
        self.cand_start = np.concatenate(cand_start)
        self.cand_y = np.concatenate(cand_y)
        self.by_class = [np.flatnonzero(self.cand_y[:, c] > 0) for c in range(self.cand_y.shape[1])]

    def labels(self, k: int, starts: np.ndarray, n: int | None = None) -> np.ndarray:
        """float32 ``[len(starts), 4]`` targets of ``n``-sample windows (default: `window`) of span ``k``."""
        h, n = self._index[k], n or self.window

        def count(key: str) -> np.ndarray:
            return np.searchsorted(h[key], starts + n) - np.searchsorted(h[key], starts)

        af = (h["af_cum"][starts + n] - h["af_cum"][starts]) / n > 0.5
        normal = (count("beat") > 0) & (count("not_n") == 0) & ~af & (count("flutter") == 0)
        return np.stack([normal, count("v") > 0, count("s") > 0, af], axis=1).astype(np.float32)

    def draw(
        self,
        batch: int,
        rng: np.random.Generator,
        mix: Sequence[float] = CLASS_MIX,
        jitter: int = 180,
        stretch: float = 0.0,
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(X [batch, leads, window] float32 mV, Y [batch, 4])``, class-balanced by ``mix``.

        ``stretch`` > 0 time-scales each window by a factor in ``[1 - stretch, 1 + stretch]`` (heart rate and
        QRS width change together, as between patients); labels are those of the stretched span.
        """
        mix = np.asarray([m if len(self.by_class[c]) else 0.0 for c, m in enumerate(mix)], dtype=np.float64)
        classes = rng.choice(len(mix), size=batch, p=mix / mix.sum())
        X = np.empty((batch, self.spans[0].rec.signal.shape[0], self.window), dtype=np.float32)
        Y = np.empty((batch, len(mix)), dtype=np.float32)
        for i, c in enumerate(classes):
            j = self.by_class[c][rng.integers(len(self.by_class[c]))]
            k, sp = int(self.cand_span[j]), self.spans[int(self.cand_span[j])]
            n = min(sp.hi - sp.lo, int(round(self.window * (1 + stretch * rng.uniform(-1, 1)))))
            start = int(np.clip(self.cand_start[j] + rng.integers(-jitter, jitter + 1), sp.lo, sp.hi - n))
            piece = sp.rec.signal[:, start : start + n]
            if n != self.window:
                grid = np.linspace(0, n - 1, self.window)
                piece = np.stack([np.interp(grid, np.arange(n), lead) for lead in piece])
            X[i] = piece
            Y[i] = self.labels(k, np.asarray([start]), n)[0]
        return X, Y

    def grid_windows(self, hop: int) -> tuple[np.ndarray, np.ndarray]:
        """All windows every ``hop`` samples of every span (for validation)."""
        xs, ys = [], []
        for k, sp in enumerate(self.spans):
            starts = np.arange(sp.lo, sp.hi - self.window + 1, hop, dtype=np.int64)
            xs.append(np.stack([sp.rec.signal[:, a : a + self.window] for a in starts]))
            ys.append(self.labels(k, starts))
        return np.concatenate(xs).astype(np.float32), np.concatenate(ys)


def augment(x: torch.Tensor, fs: float, gen: torch.Generator, lead2_dropout: float = 0.25) -> torch.Tensor:
    """Realistic variation of a batch ``[n, leads, samples]`` in mV (see the module docstring, step 3)."""
    n, leads, t = x.shape

    def u(lo: float, hi: float, *shape: int) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(*shape, generator=gen)

    x = x * u(0.7, 1.4, n, 1, 1) * u(0.85, 1.15, n, leads, 1)
    time_s = torch.arange(t, dtype=torch.float32) / fs
    # baseline wander: one slow sinusoid per lead, half the batch
    wander = u(0.0, 0.3, n, leads, 1) * (torch.rand(n, 1, 1, generator=gen) < 0.5)
    x = x + wander * torch.sin(2 * np.pi * u(0.05, 0.5, n, leads, 1) * time_s + u(0, 2 * np.pi, n, leads, 1))
    # mains interference at 50 or 60 Hz, a third of the batch
    mains = torch.where(torch.rand(n, 1, 1, generator=gen) < 0.5, 50.0, 60.0)
    hum = u(0.0, 0.05, n, leads, 1) * (torch.rand(n, 1, 1, generator=gen) < 0.33)
    x = x + hum * torch.sin(2 * np.pi * mains * time_s + u(0, 2 * np.pi, n, leads, 1))
    x = x + u(0.0, 0.04, n, 1, 1) * torch.randn(x.shape, generator=gen)
    if leads > 1:  # the second lead differs between records: flip or drop it sometimes
        flip = torch.where(torch.rand(n, generator=gen) < 0.2, -1.0, 1.0)
        keep = (torch.rand(n, generator=gen) >= lead2_dropout).float()
        x = torch.cat([x[:, :1], x[:, 1:] * (flip * keep)[:, None, None]], dim=1)
    return x


def fit_platt(logits: np.ndarray, y: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-class Platt scaling ``(a, b)`` minimising log loss of ``sigmoid(a * logit + b)`` (L-BFGS)."""
    from scipy.optimize import minimize

    a_out, b_out = [], []
    for c in range(logits.shape[1]):
        z, t = logits[:, c].astype(np.float64), y[:, c].astype(np.float64)
        if t.min() == t.max():
            a_out.append(1.0)
            b_out.append(0.0)
            continue

        def loss(p: np.ndarray, z: np.ndarray = z, t: np.ndarray = t) -> tuple[float, np.ndarray]:
            s = p[0] * z + p[1]
            q = 1 / (1 + np.exp(-s))
            nll = np.mean(np.logaddexp(0, s) - t * s) + 1e-4 * p[0] ** 2
            g = q - t
            return nll, np.array([np.mean(g * z) + 2e-4 * p[0], np.mean(g)])

        res = minimize(loss, np.array([1.0, 0.0]), jac=True, method="L-BFGS-B")
        a_out.append(float(res.x[0]))
        b_out.append(float(res.x[1]))
    return a_out, b_out


def youden_thresholds(probs: np.ndarray, y: np.ndarray, class_names: Sequence[str]) -> dict[str, float]:
    """Per class, the probability threshold maximising sensitivity + specificity - 1 (0.5 when undefined)."""
    from sklearn.metrics import roc_curve

    out = {}
    for c, name in enumerate(class_names):
        t = y[:, c] > 0.5
        if t.all() or not t.any():
            out[name] = 0.5
            continue
        fpr, tpr, thr = roc_curve(t, probs[:, c])
        best = int(np.argmax(tpr - fpr))
        out[name] = float(np.clip(thr[best], 1e-4, 1 - 1e-4))
    return out


@dataclass
class TrainConfig:
    """Hyperparameters of `train_classifier`. Defaults are the built-in model's."""

    arch: str = "resnet1d"
    seed: int = 0
    epochs: int = 14
    steps_per_epoch: int = 100
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-2
    threads: int = 2
    ema: float = 0.995
    stretch: float = 0.12
    lead2_dropout: float = 0.5
    window_s: float = 10.0
    fs: float = 360.0
    leads: tuple[str, ...] = ("MLII", "V1")


@dataclass
class TrainResult:
    """A trained, calibrated model and what was learned about it on DS1 validation."""

    model: nn.Module
    thresholds: dict[str, float]
    val_metrics: dict[str, dict]
    history: list[dict[str, float]] = field(default_factory=list)
    train_seconds: float = 0.0
    config: TrainConfig = field(default_factory=TrainConfig)


def _ema_update(ema: nn.Module, net: nn.Module, decay: float) -> None:
    """``ema <- decay * ema + (1 - decay) * net`` for parameters; buffers (batch-norm statistics) copied."""
    with torch.no_grad():
        for e, p in zip(ema.parameters(), net.parameters()):
            e.mul_(decay).add_(p.detach(), alpha=1 - decay)
        for e, b in zip(ema.buffers(), net.buffers()):
            e.copy_(b)


def _logits(net: nn.Module, X: np.ndarray, batch: int = 256) -> np.ndarray:
    net.eval()
    with torch.inference_mode():
        out = [net(torch.from_numpy(X[a : a + batch])).numpy() for a in range(0, len(X), batch)]
    return np.concatenate(out)


def split_ds1(
    data_dir: str | Path | None = None, leads: Sequence[str] = ("MLII", "V1"), records: Sequence[str] = DS1
) -> tuple[list[Span], list[Span]]:
    """``(train_spans, val_spans)`` of DS1 per the module docstring, step 1."""
    train, val = [], []
    for name in records:
        rec = load_record(name, data_dir, leads=leads)
        if name in VAL_RECORDS:
            val.append(Span(rec, 0, rec.n_samples))
        elif name in AF_SPLIT_RECORDS:
            cut = int(rec.n_samples * AF_TRAIN_FRACTION)
            train.append(Span(rec, 0, cut))
            val.append(Span(rec, cut, rec.n_samples))
        else:
            train.append(Span(rec, 0, rec.n_samples))
    return train, val


def train_classifier(
    train_spans: Sequence[Span],
    val_spans: Sequence[Span],
    config: TrainConfig | None = None,
    log: Callable[[str], None] | None = print,
) -> TrainResult:
    """Train, select, calibrate and threshold a network (module docstring, steps 2-5).

    Deterministic for a given ``config.seed`` and thread count (seeded generators, deterministic algorithms).
    """
    config = config or TrainConfig()
    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    torch.use_deterministic_algorithms(True)
    rng = np.random.default_rng(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    window = int(round(config.window_s * config.fs))
    sampler = WindowSampler(train_spans, window)
    val_x, val_y = WindowSampler(val_spans, window).grid_windows(window // 2)
    net = build_network(config.arch, len(config.leads), len(CLASS_NAMES))
    opt = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    total = config.epochs * config.steps_per_epoch
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=total, pct_start=0.2)
    ema = copy.deepcopy(net).eval()
    best, best_score, history = None, -np.inf, []
    t0 = time.perf_counter()
    for epoch in range(config.epochs):
        net.train()
        losses = []
        for _ in range(config.steps_per_epoch):
            xb, yb = sampler.draw(config.batch_size, rng, stretch=config.stretch)
            x = augment(torch.from_numpy(xb), config.fs, gen, config.lead2_dropout)
            loss = nn.functional.binary_cross_entropy_with_logits(net(x), torch.from_numpy(yb))
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(net.parameters(), 5.0)
            opt.step()
            sched.step()
            losses.append(loss.item())
            _ema_update(ema, net, config.ema)
        probs = 1 / (1 + np.exp(-_logits(ema, val_x)))
        m = class_metrics(val_y, probs, CLASS_NAMES, {})
        aucs = [v["auc"] for v in m.values() if v["auc"] is not None]
        score = float(np.mean(aucs)) if aucs else -float(np.mean(losses))
        history.append(
            {
                "epoch": epoch + 1,
                "loss": float(np.mean(losses)),
                "val_mean_auc": score,
                **{f"val_auc/{k}": (v["auc"] or 0.0) for k, v in m.items()},
                "elapsed_s": time.perf_counter() - t0,
            }
        )
        if log:
            log(
                f"epoch {epoch + 1:3d}  loss {np.mean(losses):.4f}  val AUC "
                + " ".join(f"{(v['auc'] or 0):.4f}" for v in m.values())
                + f"  ({time.perf_counter() - t0:.0f} s)"
            )
        if score > best_score:
            best_score, best = score, {k: v.detach().clone() for k, v in ema.state_dict().items()}
    net.load_state_dict(best)
    val_logits = _logits(net, val_x)
    a, b = fit_platt(val_logits, val_y)
    model = Calibrated(net, a, b).eval()
    probs = _logits(model, val_x)
    thresholds = youden_thresholds(probs, val_y, CLASS_NAMES)
    return TrainResult(
        model,
        thresholds,
        class_metrics(val_y, probs, CLASS_NAMES, thresholds),
        history,
        time.perf_counter() - t0,
        config,
    )


def export_torchscript(model: nn.Module, path: str | Path) -> None:
    """Save ``model`` (eval mode) as TorchScript at ``path``."""
    model.eval()
    scripted = torch.jit.script(model)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    torch.jit.save(scripted, str(path))


def export_onnx(model: nn.Module, path: str | Path, example: torch.Tensor) -> None:
    """Save ``model`` as ONNX at ``path`` with a dynamic batch axis (input "ecg", output "probabilities")."""
    model.eval()
    torch.onnx.export(
        model,
        (example,),
        str(path),
        input_names=["ecg"],
        output_names=["probabilities"],
        dynamic_axes={"ecg": {0: "n"}, "probabilities": {0: "n"}},
        opset_version=17,
        dynamo=False,
    )


def build_card(
    name: str, result: TrainResult, test_metrics: dict[str, dict] | None, *, description: str = ""
) -> ModelCard:
    """The model card of a trained model (module docstring) with its DS2 figures."""
    cfg = result.config
    params = sum(p.numel() for p in result.model.parameters())
    return ModelCard(
        name=name,
        version="1",
        classes=list(CLASS_NAMES),
        sampling_rate=cfg.fs,
        leads=list(cfg.leads),
        window_s=cfg.window_s,
        input_units="mV",
        output="probabilities",
        multilabel=True,
        thresholds={k: round(v, 6) for k, v in result.thresholds.items()},
        input_scale=1.0,
        architecture=f"{cfg.arch}: {type(result.model.net).__name__}, {params} parameters",
        description=description
        or "Multi-label 10-s rhythm-strip classifier (MLII + V1, 360 Hz): normal, "
        "ventricular ectopy, supraventricular ectopy, atrial fibrillation/flutter. Outputs calibrated probabilities.",
        intended_use="Research and demonstration of ECG Lens (explanations and robustness of black-box ECG "
        "classifiers). Not a medical device; not for diagnosis. Trained on 22 Holter patients of one database "
        "(MIT-BIH, 1975-79, mostly MLII/V1): expect lower accuracy on 12-lead resting ECGs, other leads standing "
        "in for V1, paced rhythms (excluded from training) and rare rhythms (ventricular flutter, AV blocks).",
        data=dict(
            DATA_ATTRIBUTION,
            train_records=[r for r in DS1 if r not in VAL_RECORDS],
            validation=f"records {', '.join(VAL_RECORDS)} and the last {1 - AF_TRAIN_FRACTION:.0%} of "
            f"{', '.join(AF_SPLIT_RECORDS)}",
            test_records=list(DS2),
            second_lead="V1 where recorded; otherwise the record's other lead (V2: 103, 117; V4: 124; "
            "V5: 100, 114, 123)",
            labels="datasets.mitdb.load_windows: V = any V/E beat; S = any A/a/J/S beat; AF = (AFIB/(AFL "
            "over >50% of the window; normal = >=1 beat, all AAMI N, not AF, no flutter wave",
        ),
        metrics={
            "test_set": "MIT-BIH DS2, non-overlapping 10-s windows (hop 10 s)",
            "ds2": test_metrics or {},
            "ds1_validation": result.val_metrics,
            "params": params,
        },
        training={
            "recipe": "ecglens.classifiers.train (module docstring)",
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
            "lead2_dropout": cfg.lead2_dropout,
            "loss": "binary cross-entropy, class-balanced sampling " + str(CLASS_MIX),
            "calibration": "Platt scaling per class on DS1 validation",
            "thresholds": "Youden's J per class on DS1 validation",
            "threads": cfg.threads,
            "train_seconds": round(result.train_seconds, 1),
            "best_epoch": int(np.argmax([h["val_mean_auc"] for h in result.history]) + 1) if result.history else None,
        },
        extra={"known_issues": unset_threshold_warnings(result.val_metrics)},
    )


def save_model(
    result: TrainResult, out: str | Path, test_metrics: dict[str, dict] | None, name: str | None = None
) -> ModelCard:
    """Write ``out`` (TorchScript) and its card (``out`` with ``.json``); returns the card."""
    out = Path(out)
    export_torchscript(result.model, out)
    card = build_card(name or out.stem, result, test_metrics)
    card.save(card_path_for(out))
    return card


def ds2_metrics(
    classifier: Any, data_dir: str | Path | None = None, cache_dir: str | Path | None = None
) -> dict[str, dict]:
    """Per-class DS2 figures of ``classifier`` on non-overlapping 10-s windows (the card's ``metrics.ds2``)."""
    w = load_windows(DS2, data_dir, window_s=classifier.window_s, leads=classifier.lead_names, cache_dir=cache_dir)
    return evaluate(classifier, w.X, w.Y)
