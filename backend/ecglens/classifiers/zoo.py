"""The development zoo: small, deliberately different black boxes trained on MIT-BIH DS1 (issue 16, item 3).

An explainer tuned against one classifier learns that classifier. The zoo gives the agent, its benchmark and every
design choice a spread of the things deployed ECG classifiers differ in: architecture (CNN, ResNet, GRU, LSTM, a
small transformer, a beat-feature model on RR intervals + beat morphology), sampling rate (125-500 Hz), input
normalisation inside the model (raw mV, median removed, z-scored), leads (MLII alone or MLII + V1), window length
and the output set (binary ventricular ectopy as a softmax pair, or the built-in's four findings as independent
sigmoids). Each member is exported as TorchScript answering logits with a model card beside it, so
``ecglens.load_classifier("models/zoo/<name>.pt")`` loads it like any user's model: a black box.

The split (`SPLIT`): the policy trains, and design choices are scored, on the ``train`` members only; the
``heldout`` members (one recurrent, one reading one lead among them) are the unseen-classifier test and are never
used for training or any choice. Data: DS1 records minus `VAL_RECORDS` train every member; `VAL_RECORDS` (whole
DS1 records) are the explainer's development cases; DS2 appears only in the figures on the cards.

``ecglens train-zoo`` retrains every member (or ``--only NAME``) deterministically: a fixed number of steps per
member (no time-based stopping), one torch thread, seeded draws.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ecglens.classifiers import load_classifier, models_dir
from ecglens.classifiers.card import ModelCard
from ecglens.datasets.mitdb import AAMI_CLASSES, AF_RHYTHMS, DS1, DS2, load_record, load_windows

VAL_RECORDS: tuple[str, ...] = ("116", "118", "124", "215", "220")
BINARY_CLASSES: tuple[str, ...] = ("other", "ventricular ectopy")
FINDINGS: tuple[str, ...] = ("normal", "ventricular ectopy", "supraventricular ectopy", "atrial fibrillation/flutter")
NORMS = {"raw": 0, "median": 1, "zscore": 2}
SOURCE_FS = 360.0


@dataclass(frozen=True)
class MemberSpec:
    """One zoo member: what it reads and how it is built."""

    name: str
    arch: str  # cnn | resnet | gru | lstm | transformer | rrmorph
    fs: float
    leads: tuple[str, ...]
    norm: str  # raw | median | zscore
    task: str  # binary | findings
    split: str  # train | heldout
    window_s: float = 10.0
    steps: int = 700
    width: int = 24


ZOO: tuple[MemberSpec, ...] = (
    # Steps: what one torch thread on the shared 2-core machine trains in under 2 min (seconds on each card).
    MemberSpec("cnn250_2l_z_find", "cnn", 250, ("MLII", "V1"), "zscore", "findings", "train", steps=700),
    MemberSpec("cnn500_1l_raw_bin", "cnn", 500, ("MLII",), "raw", "binary", "train", steps=330),
    MemberSpec("cnn125_2l_med_bin", "cnn", 125, ("MLII", "V1"), "median", "binary", "train", window_s=8.0, steps=600),
    MemberSpec("resnet360_2l_raw_find", "resnet", 360, ("MLII", "V1"), "raw", "findings", "train", steps=150, width=16),
    MemberSpec("resnet180_1l_z_bin", "resnet", 180, ("MLII",), "zscore", "binary", "train", steps=420),
    MemberSpec("gru360_2l_raw_find", "gru", 360, ("MLII", "V1"), "raw", "findings", "train", steps=300),
    MemberSpec("lstm250_1l_med_bin", "lstm", 250, ("MLII",), "median", "binary", "train", steps=380),
    MemberSpec(
        "transformer180_2l_med_find", "transformer", 180, ("MLII", "V1"), "median", "findings", "train", steps=280
    ),
    MemberSpec("rrmorph360_2l_raw_bin", "rrmorph", 360, ("MLII", "V1"), "raw", "binary", "train", steps=1200),
    # Held out: never used to train the policy or to choose anything.
    MemberSpec("cnn250_2l_raw_bin", "cnn", 250, ("MLII", "V1"), "raw", "binary", "heldout", steps=600, width=32),
    MemberSpec("gru125_1l_med_find", "gru", 125, ("MLII",), "median", "findings", "heldout", steps=450),
    MemberSpec("transformer250_1l_z_bin", "transformer", 250, ("MLII",), "zscore", "binary", "heldout", steps=200),
    MemberSpec(
        "resnet500_2l_med_find", "resnet", 500, ("MLII", "V1"), "median", "findings", "heldout", window_s=6.0, steps=250
    ),
    MemberSpec("rrmorph250_1l_z_find", "rrmorph", 250, ("MLII",), "zscore", "findings", "heldout", steps=1200),
)
SPLIT: dict[str, str] = {m.name: m.split for m in ZOO}


def zoo_dir() -> Path:
    """``models/zoo`` of the shipped models folder (`ecglens.classifiers.models_dir`)."""
    return models_dir() / "zoo"


def members(split: str | None = None) -> list[MemberSpec]:
    """The zoo's members, optionally only one split ("train" or "heldout")."""
    if split not in (None, "train", "heldout"):
        raise ValueError(f"split must be 'train' or 'heldout', got {split!r}")
    return [m for m in ZOO if split is None or m.split == split]


def member_path(name: str) -> Path:
    """The TorchScript file of member ``name`` (its card is beside it)."""
    if name not in SPLIT:
        raise KeyError(f"{name!r} is not a zoo member; members: {', '.join(SPLIT)}")
    return zoo_dir() / f"{name}.pt"


def load_member(name: str, **kwargs: Any):
    """Member ``name`` as a black-box `Classifier` (``ecglens.load_classifier`` on its file)."""
    return load_classifier(member_path(name), **kwargs)


# --------------------------------------------------------------------------------------------- networks
class Normalise(nn.Module):
    """The member's own input normalisation, inside the exported model: raw mV, median removed, or z-scored."""

    def __init__(self, mode: int):
        super().__init__()
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == 1:
            return x - x.median(dim=2, keepdim=True).values
        if self.mode == 2:
            centred = x - x.mean(dim=2, keepdim=True)
            return centred / (centred.std(dim=2, keepdim=True) + 0.01)
        return x


def _conv(c_in: int, c_out: int, k: int, s: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv1d(c_in, c_out, k, stride=s, padding=k // 2, bias=False), nn.BatchNorm1d(c_out), nn.ReLU()
    )


def _stride_for(fs: float, target_hz: float) -> list[int]:
    """Strides of a conv front end taking ``fs`` down to about ``target_hz`` steps per second."""
    strides, rate = [], fs
    while rate / 2 >= target_hz * 0.99 and len(strides) < 6:
        strides.append(2)
        rate /= 2
    return strides or [1]


class CNN(nn.Module):
    def __init__(self, n_leads: int, n_out: int, fs: float, width: int):
        super().__init__()
        k = max(5, int(round(0.05 * fs)) | 1)  # 50-ms first kernel at any rate
        strides = _stride_for(fs, 16.0)
        layers: list[nn.Module] = [_conv(n_leads, width, k, strides[0])]
        for s in strides[1:]:
            layers.append(_conv(width, width, 7, s))
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(2 * width, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.body(x)
        return self.head(torch.cat([h.mean(dim=2), h.amax(dim=2)], dim=1))


class ResBlock(nn.Module):
    def __init__(self, c: int, k: int = 7):
        super().__init__()
        self.a = nn.Conv1d(c, c, k, padding=k // 2, bias=False)
        self.bn_a = nn.BatchNorm1d(c)
        self.b = nn.Conv1d(c, c, k, padding=k // 2, bias=False)
        self.bn_b = nn.BatchNorm1d(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn_a(self.a(x)))
        return torch.relu(x + self.bn_b(self.b(y)))


class ResNet(nn.Module):
    def __init__(self, n_leads: int, n_out: int, fs: float, width: int):
        super().__init__()
        strides = _stride_for(fs, 22.0)
        layers: list[nn.Module] = [_conv(n_leads, width, 15, 2)]
        for s in strides[1:]:
            layers += [ResBlock(width), nn.MaxPool1d(s)]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x).mean(dim=2))


class ConvRNN(nn.Module):
    """Conv front end to ~22 steps/s, then a GRU or LSTM; the last step's state and the mean feed the head."""

    def __init__(self, n_leads: int, n_out: int, fs: float, width: int, kind: str):
        super().__init__()
        strides = _stride_for(fs, 22.0)
        layers: list[nn.Module] = [_conv(n_leads, width, 9, strides[0])]
        for s in strides[1:]:
            layers.append(_conv(width, width, 5, s))
        self.front = nn.Sequential(*layers)
        self.rnn = nn.GRU(width, 32, batch_first=True) if kind == "gru" else nn.LSTM(width, 32, batch_first=True)
        self.head = nn.Linear(64, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.front(x).transpose(1, 2)
        out, _ = self.rnn(h)
        return self.head(torch.cat([out[:, -1], out.mean(dim=1)], dim=1))


class TinyTransformer(nn.Module):
    """0.1-s patches embedded by a strided convolution, learned positions, two encoder layers, mean pooling."""

    def __init__(self, n_leads: int, n_out: int, fs: float, window_s: float, d: int = 32):
        super().__init__()
        patch = int(round(0.1 * fs))
        self.embed = nn.Sequential(_conv(n_leads, d, 9, 1), nn.Conv1d(d, d, patch, stride=patch))
        n_tokens = int(round(window_s * fs)) // patch
        self.pos = nn.Parameter(torch.zeros(1, n_tokens, d))
        layer = nn.TransformerEncoderLayer(d, 4, 2 * d, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = nn.Linear(d, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x).transpose(1, 2) + self.pos
        return self.head(self.encoder(h).mean(dim=1))


class RRMorph(nn.Module):
    """A beat-feature model: detects beats on the first lead, then per beat its RR intervals (before, after, both
    relative to the strip's mean) and a 16-point sketch of each lead around it; a small MLP per beat, max-pooled
    over beats. What a classical "RR + morphology" arrhythmia classifier reads, learned end to end."""

    def __init__(self, n_leads: int, n_out: int, fs: float, window_s: float, max_beats: int = 32):
        super().__init__()
        self.fs = float(fs)
        self.max_beats = max_beats
        self.smooth = max(3, int(round(0.08 * fs)) | 1)
        self.refractory = int(round(0.25 * fs)) | 1
        half = int(round(0.25 * fs))
        self.register_buffer("offsets", torch.linspace(-half, half, 16).round().long())
        self.mlp = nn.Sequential(nn.Linear(4 + 16 * n_leads, 48), nn.ReLU(), nn.Linear(48, 48), nn.ReLU())
        self.head = nn.Linear(96, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, leads, t = x.shape
        d = x[:, 0, 1:] - x[:, 0, :-1]
        e = nn.functional.avg_pool1d(
            (d * d).unsqueeze(1), self.smooth, 1, self.smooth // 2, count_include_pad=False
        ).squeeze(1)
        peak = nn.functional.max_pool1d(e.unsqueeze(1), self.refractory, 1, self.refractory // 2).squeeze(1)
        is_peak = (e >= peak) & (e > 0.15 * e.amax(dim=1, keepdim=True))
        score = torch.where(is_peak, e, torch.zeros_like(e))
        k = min(self.max_beats, int(score.shape[1]))
        top, idx = torch.topk(score, k, dim=1)
        valid = top > 0
        pos = torch.where(valid, idx, torch.full_like(idx, t + 10 * t)).float()
        pos, order = torch.sort(pos, dim=1)
        valid = torch.gather(valid, 1, order)
        big = float(t)
        prev = torch.cat([pos[:, :1] - big, pos[:, :-1]], dim=1)
        nxt = torch.cat([pos[:, 1:], pos[:, -1:] + big], dim=1)
        pre = torch.where(valid & (prev >= 0), (pos - prev) / self.fs, torch.zeros_like(pos))
        post = torch.where(valid & (nxt < big) & (nxt >= 0), (nxt - pos) / self.fs, torch.zeros_like(pos))
        counts = valid.float().sum(dim=1, keepdim=True).clamp(min=1.0)
        mean_rr = (pre.sum(dim=1, keepdim=True) / counts).clamp(min=0.2)
        sample = (pos.long().clamp(0, t - 1).unsqueeze(2) + self.offsets.view(1, 1, -1)).clamp(0, t - 1)
        sketches = []
        for lead in range(leads):
            sig = x[:, lead].unsqueeze(1).expand(n, k, t)
            sketches.append(torch.gather(sig, 2, sample))
        feats = torch.cat(
            [pre.unsqueeze(2), post.unsqueeze(2), (pre / mean_rr).unsqueeze(2), (post / mean_rr).unsqueeze(2)]
            + sketches,
            dim=2,
        )
        h = self.mlp(feats)
        mask = valid.unsqueeze(2)
        pooled_max = torch.where(mask, h, torch.full_like(h, -1e4)).amax(dim=1)
        pooled_max = torch.where(pooled_max < -1e3, torch.zeros_like(pooled_max), pooled_max)
        pooled_mean = (h * mask.float()).sum(dim=1) / counts
        return self.head(torch.cat([pooled_max, pooled_mean], dim=1))


class Member(nn.Module):
    """What gets exported: normalisation then the network; input ``[n, leads, samples]`` in mV, output logits."""

    def __init__(self, spec: MemberSpec):
        super().__init__()
        n_leads, n_out = len(spec.leads), (2 if spec.task == "binary" else 4)
        self.norm = Normalise(NORMS[spec.norm])
        if spec.arch == "cnn":
            self.net: nn.Module = CNN(n_leads, n_out, spec.fs, spec.width)
        elif spec.arch == "resnet":
            self.net = ResNet(n_leads, n_out, spec.fs, spec.width)
        elif spec.arch in ("gru", "lstm"):
            self.net = ConvRNN(n_leads, n_out, spec.fs, spec.width, spec.arch)
        elif spec.arch == "transformer":
            self.net = TinyTransformer(n_leads, n_out, spec.fs, spec.window_s)
        elif spec.arch == "rrmorph":
            self.net = RRMorph(n_leads, n_out, spec.fs, spec.window_s)
        else:
            raise ValueError(f"unknown zoo architecture {spec.arch!r}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.norm(x))


# --------------------------------------------------------------------------------------------- data
class Sampler:
    """Class-balanced windows at any start of DS1 records, resampled to one member's rate.

    Labels follow `ecglens.datasets.mitdb.load_windows` (ventricular = a V or E beat inside the window, etc.),
    computed for each start on a 0.25-s grid at 360 Hz; a batch is half windows with ventricular ectopy.
    """

    def __init__(self, records: Sequence[str], fs: float, leads: Sequence[str], window_s: float):
        from math import gcd

        from scipy.signal import resample_poly

        self.fs, self.n = float(fs), int(round(window_s * fs))
        up, down = int(round(fs)), int(SOURCE_FS)
        g = gcd(up, down)
        n360 = int(round(window_s * SOURCE_FS))
        self.signals, cand = [], []
        for r, name in enumerate(records):
            rec = load_record(name, leads=leads)
            sig = rec.signal if up == down else resample_poly(rec.signal, up // g, down // g, axis=1)
            self.signals.append(np.ascontiguousarray(sig, dtype=np.float32))
            starts = np.arange(0, rec.n_samples - n360 - 1, int(0.25 * SOURCE_FS), dtype=np.int64)
            codes, names = rec.rhythm_per_sample()
            af_cum = np.concatenate(
                [[0], np.cumsum(np.isin(codes, [names.index(a) for a in AF_RHYTHMS if a in names]))]
            )

            def count(samples: np.ndarray, starts: np.ndarray = starts) -> np.ndarray:
                return np.searchsorted(samples, starts + n360) - np.searchsorted(samples, starts)

            sym = rec.beat_symbol
            v = count(rec.beat_sample[np.isin(sym, AAMI_CLASSES["V"])]) > 0
            s = count(rec.beat_sample[np.isin(sym, AAMI_CLASSES["S"])]) > 0
            af = (af_cum[starts + n360] - af_cum[starts]) / n360 > 0.5
            normal = (
                (count(rec.beat_sample) > 0)
                & (count(rec.beat_sample[~np.isin(sym, AAMI_CLASSES["N"])]) == 0)
                & ~af
                & (count(rec.flutter_wave_sample) == 0)
            )
            y = np.stack([normal, v, s, af], axis=1).astype(np.float32)
            first = np.minimum(np.round(starts * fs / SOURCE_FS).astype(np.int64), sig.shape[1] - self.n)
            cand.append((np.full(len(starts), r), first, y))
        self.rec = np.concatenate([c[0] for c in cand])
        self.start = np.concatenate([c[1] for c in cand])
        self.y = np.concatenate([c[2] for c in cand])
        self.pos = np.flatnonzero(self.y[:, 1] > 0)
        self.neg = np.flatnonzero(self.y[:, 1] == 0)

    def windows(self, index: np.ndarray) -> np.ndarray:
        return np.stack([self.signals[self.rec[i]][:, self.start[i] : self.start[i] + self.n] for i in index])

    def draw(self, batch: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        half = batch // 2
        index = np.concatenate([rng.choice(self.pos, half), rng.choice(self.neg, batch - half)])
        x = self.windows(index)
        # Light augmentation in mV: gain per lead, white noise, a slow baseline drift.
        x = x * rng.uniform(0.7, 1.3, size=(batch, x.shape[1], 1)).astype(np.float32)
        x = x + rng.normal(0, 1, x.shape).astype(np.float32) * rng.uniform(0, 0.04, (batch, 1, 1)).astype(np.float32)
        t = np.arange(self.n, dtype=np.float32) / self.fs
        drift = np.sin(2 * np.pi * rng.uniform(0.05, 0.4, (batch, 1, 1)) * t + rng.uniform(0, 6.3, (batch, 1, 1)))
        x = x + (drift * rng.uniform(0, 0.3, (batch, 1, 1))).astype(np.float32)
        return x.astype(np.float32), self.y[index]


def _targets(y: np.ndarray, task: str) -> torch.Tensor:
    if task == "binary":
        return torch.from_numpy(y[:, 1].astype(np.int64))
    return torch.from_numpy(y.astype(np.float32))


def _loss(logits: torch.Tensor, target: torch.Tensor, task: str) -> torch.Tensor:
    if task == "binary":
        return nn.functional.cross_entropy(logits, target)
    return nn.functional.binary_cross_entropy_with_logits(logits, target)


def _probabilities(model: nn.Module, x: np.ndarray, task: str) -> np.ndarray:
    with torch.inference_mode():
        out = torch.cat([model(torch.from_numpy(x[a : a + 256])) for a in range(0, len(x), 256)])
    return (torch.softmax(out, 1) if task == "binary" else torch.sigmoid(out)).numpy()


def _auc(y: np.ndarray, p: np.ndarray) -> float | None:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, p)) if 0 < y.sum() < len(y) else None


def _fixed_windows(records: Sequence[str], spec: MemberSpec) -> tuple[np.ndarray, np.ndarray]:
    """Non-overlapping windows of ``records`` on the member's grid, with the 4 finding labels."""
    w = load_windows(records, window_s=spec.window_s, leads=spec.leads)
    x = w.X
    if spec.fs != SOURCE_FS:
        from math import gcd

        from scipy.signal import resample_poly

        g = gcd(int(spec.fs), int(SOURCE_FS))
        x = resample_poly(x, int(spec.fs) // g, int(SOURCE_FS) // g, axis=2)[..., : int(round(spec.window_s * spec.fs))]
    return np.ascontiguousarray(x, dtype=np.float32), w.Y


def train_member(
    spec: MemberSpec,
    out_dir: Path,
    *,
    seed: int = 0,
    batch: int = 48,
    log: Any = print,
    records: Sequence[str] | None = None,
    evaluate: bool = True,
) -> dict[str, Any]:
    """Train one member on DS1 minus `VAL_RECORDS`, export TorchScript + card into ``out_dir``; the card's figures.

    ``records`` replaces the training records and ``evaluate=False`` skips the card's DS1-validation / DS2
    figures (smoke tests).
    """
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    train_records = list(records) if records is not None else [r for r in DS1 if r not in VAL_RECORDS]
    sampler = Sampler(train_records, spec.fs, spec.leads, spec.window_s)
    model = Member(spec)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=spec.steps, pct_start=0.2)
    t_load = time.perf_counter() - t0
    # CPU time of this one-thread process: what the steps cost on a core of their own, however loaded the
    # shared machine is (wall time is recorded beside it).
    cpu0 = time.process_time()
    model.train()
    for step in range(spec.steps):
        x, y = sampler.draw(batch, rng)
        loss = _loss(model(torch.from_numpy(x)), _targets(y, spec.task), spec.task)
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 2.0)
        opt.step()
        sched.step()
        if step % 100 == 0:
            log(f"  {spec.name} step {step}/{spec.steps}: loss {loss.item():.3f}")
    train_s = time.perf_counter() - t0 - t_load
    train_cpu_s = time.process_time() - cpu0
    model.eval()
    # Operating threshold (findings): Youden's J on 4,000 training-record windows drawn at their natural mix.
    calib = rng.choice(len(sampler.y), min(4000, len(sampler.y)), replace=False)
    p_cal = _probabilities(model, sampler.windows(calib), spec.task)
    thresholds = {}
    if spec.task == "findings":
        from sklearn.metrics import roc_curve

        for c, name in enumerate(FINDINGS):
            yc = sampler.y[calib, c]
            if 0 < yc.sum() < len(yc):
                fpr, tpr, thr = roc_curve(yc, p_cal[:, c])
                thresholds[name] = float(np.clip(thr[int(np.argmax(tpr - fpr))], 0.05, 0.95))
            else:
                thresholds[name] = 0.5
    metrics: dict[str, Any] = {}
    for label, eval_records in (("ds1_validation", VAL_RECORDS), ("ds2", DS2)) if evaluate else ():
        x, y = _fixed_windows(eval_records, spec)
        p = _probabilities(model, x, spec.task)
        pv = p[:, 1]
        thr_v = thresholds.get("ventricular ectopy", 0.5)
        flagged = pv >= thr_v
        metrics[label] = {
            "windows": int(len(y)),
            "ventricular_auc": _auc(y[:, 1], pv),
            "ventricular_sensitivity": float(flagged[y[:, 1] > 0].mean()) if y[:, 1].any() else None,
            "ventricular_specificity": float((~flagged)[y[:, 1] == 0].mean()),
        }
    scripted = torch.jit.script(model)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{spec.name}.pt"
    torch.jit.save(scripted, str(path))
    n_params = int(sum(p.numel() for p in model.parameters()))
    card = ModelCard(
        name=spec.name,
        classes=list(BINARY_CLASSES if spec.task == "binary" else FINDINGS),
        sampling_rate=float(spec.fs),
        leads=list(spec.leads),
        window_s=float(spec.window_s),
        output="logits",
        multilabel=spec.task == "findings",
        thresholds=thresholds,
        architecture=f"{spec.arch} ({n_params} parameters)",
        description=f"ECG Lens development-zoo member ({spec.split}): {spec.arch}, {spec.fs:g} Hz, "
        f"{'+'.join(spec.leads)}, {spec.norm} input, {spec.task}. A test black box, not a clinical model.",
        intended_use="Developing and benchmarking explainers only (ecglens issue 16); not for diagnosis.",
        data={
            "train_records": train_records,
            "validation_records": list(VAL_RECORDS),
            "source": "MIT-BIH "
            "Arrhythmia Database DS1 (de Chazal et al. 2004), ODC-By 1.0; DS2 only for the figures below",
        },
        metrics=metrics,
        training={
            "steps": spec.steps,
            "batch": batch,
            "seed": seed,
            "optimizer": "AdamW one-cycle 3e-3",
            "balanced": "half of each batch holds a V/E beat",
            "cpu_seconds": round(train_cpu_s, 1),
            "wall_seconds": round(train_s, 1),
            "load_average": round(os.getloadavg()[0], 1),
            "torch_threads": torch.get_num_threads(),
        },
        extra={"zoo": asdict(spec)},
    )
    card.save(path.with_suffix(".json"))
    log(
        f"{spec.name}: {n_params} params, {train_cpu_s:.0f} s CPU ({train_s:.0f} s wall) training; "
        + "; ".join(f"{k} V AUC {v['ventricular_auc']}" for k, v in metrics.items())
    )
    return {
        "name": spec.name,
        "split": spec.split,
        "params": n_params,
        "train_cpu_s": round(train_cpu_s, 1),
        "metrics": metrics,
    }


def write_zoo_card(out_dir: Path) -> Path:
    """``zoo.json`` + ``README.md`` in ``out_dir``: the members (from their cards) and the split."""
    rows = []
    for spec in ZOO:
        card_file = out_dir / f"{spec.name}.json"
        card = json.loads(card_file.read_text()) if card_file.exists() else {}
        rows.append(
            {
                **asdict(spec),
                "architecture": card.get("architecture"),
                "metrics": card.get("metrics", {}),
                "train_s": card.get("training", {}).get("cpu_seconds"),
            }
        )
    (out_dir / "zoo.json").write_text(
        json.dumps(
            {
                "split": {"train": [m.name for m in members("train")], "heldout": [m.name for m in members("heldout")]},
                "train_records": [
                    r for r in __import__("ecglens.datasets.mitdb", fromlist=["DS1"]).DS1 if r not in VAL_RECORDS
                ],
                "validation_records": list(VAL_RECORDS),
                "members": rows,
            },
            indent=1,
        )
        + "\n"
    )

    def fmt(v: Any) -> str:
        return "–" if v is None else f"{v:.3f}"

    lines = [
        "# ECG Lens development zoo",
        "",
        "Small black boxes for developing and testing the explainer (issue 16). Not clinical models.",
        "Rebuild: `ecglens train-zoo` (deterministic; one torch thread). Code: `backend/ecglens/classifiers/zoo.py`.",
        "",
        "Split: the agent's policy is trained, and every design choice is scored, on `train` members only; "
        "`heldout` members are never used for training or any choice. Every member trains on MIT-BIH DS1 "
        f"minus the validation records {', '.join(VAL_RECORDS)}; those are the explainers' development "
        "cases; DS2 figures below are for the report only.",
        "",
        "| member | split | architecture | rate (Hz) | leads | input | output | window (s) | train (CPU s) | "
        "V AUC DS1-val | V AUC DS2 |",
        "|" + "---|" * 11,
    ]
    for r in rows:
        m = r["metrics"]
        lines.append(
            f"| {r['name']} | {r['split']} | {r['architecture']} | {r['fs']:g} | {'+'.join(r['leads'])} | "
            f"{r['norm']} | {r['task']} | {r['window_s']:g} | {r['train_s']} | "
            f"{fmt(m.get('ds1_validation', {}).get('ventricular_auc'))} | "
            f"{fmt(m.get('ds2', {}).get('ventricular_auc'))} |"
        )
    path = out_dir / "README.md"
    path.write_text("\n".join(lines) + "\n")
    return path


# --------------------------------------------------------------------------------------------- cli
def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train-zoo", help="retrain the development zoo of small black boxes (models/zoo)")
    p.add_argument("--only", action="append", default=None, help="train only this member (repeatable)")
    p.add_argument("--out", default=None, help="output folder (default: models/zoo)")
    p.add_argument("--steps-scale", type=float, default=1.0, help="scale every member's steps (smoke tests)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cli)


def _cli(args: argparse.Namespace) -> int:
    from dataclasses import replace

    torch.set_num_threads(1)  # deterministic and the 2-min-per-member budget is set for one thread
    out = Path(args.out) if args.out else zoo_dir()
    chosen = [m for m in ZOO if not args.only or m.name in args.only]
    unknown = set(args.only or []) - set(SPLIT)
    if unknown:
        raise ValueError(f"unknown zoo members: {', '.join(sorted(unknown))}; members: {', '.join(SPLIT)}")
    for spec in chosen:
        if args.steps_scale != 1.0:
            spec = replace(spec, steps=max(1, int(round(spec.steps * args.steps_scale))))
        train_member(spec, out, seed=args.seed)
    print(f"zoo card: {write_zoo_card(out)}")
    return 0
