"""The vision zoo: small image and video black boxes trained on synthetic digits with known truth (issue 20).

Members differ in what deployed vision classifiers differ in: architecture (a small CNN, a ResNet-ish, a MobileNet-ish
depthwise-separable CNN, a ViT-ish patch transformer; for clips a 3-D convolution, a (2+1)-D one, a per-frame CNN +
GRU and a per-frame CNN averaged over time), colour or grayscale input, input size (48, 64 or 96 px) and the scale
and normalisation inside the model (``input_scale`` 1 or 255; fixed mean / std, or per-image z-scoring). Each is
exported as TorchScript answering logits over the ten digits, with a card beside it (its keys: `train_member`), so
``ecglens.load_classifier("models/vision/<name>.pt")`` loads it as a black box: float32 ``[N, C, H, W]`` (images)
or ``[N, T, C, H, W]`` (clips), the model seeing ``x * input_scale`` for ``x`` in [0, 1].

Data (`ecglens.datasets.digits_canvas`): every member trains on images / clips of scikit-learn's ``train`` digits;
the card's accuracy is on the ``test`` digits (scans no member trained on), which the vision benchmark also uses.

The split (`SPLIT`): tuning of the explainer may use ``train`` members; ``heldout`` members are never used for a
choice. ``ecglens train-vision-zoo`` retrains every member (or ``--only NAME``) deterministically: a fixed number
of steps on a fixed, seeded pool of training samples, one torch thread.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ecglens.classifiers import models_dir
from ecglens.datasets import digits_canvas as dc

CLASSES: tuple[str, ...] = tuple(str(d) for d in range(10))
TRAIN_IMAGES = 4000
TRAIN_CLIPS = 1200
TEST_IMAGES = 1000
TEST_CLIPS = 300
DATA_SEED = 0


@dataclass(frozen=True)
class VisionSpec:
    """One vision-zoo member: what it reads and how it is built."""

    name: str
    modality: str  # image | video
    arch: str  # a key of `NETS`: cnn, resnet, vit, c3d, r2plus1d, cnn_gru, ...
    channels: int  # 1 (grayscale) or 3 (colour)
    size: int  # H = W
    input_scale: float  # the model sees x * input_scale
    norm: str  # unit (x / input_scale) | fixed ((unit - 0.45) / 0.25) | zscore (per sample)
    split: str  # train | heldout
    steps: int
    width: int = 16
    frames: int = dc.FRAMES
    batch: int = 64
    lr: float = 3e-3
    onnx: bool = False


ZOO: tuple[VisionSpec, ...] = (
    # Steps: what one torch thread on the shared 2-core machine trains in about 2 min (seconds on each card).
    VisionSpec("cnn64_rgb", "image", "cnn", 3, 64, 1.0, "unit", "train", steps=500),
    VisionSpec("dwsep48_gray", "image", "dwsep", 1, 48, 255.0, "fixed", "train", steps=1200, width=24),
    VisionSpec("vit64_gray", "image", "vit", 1, 64, 1.0, "zscore", "train", steps=900, lr=2e-3),
    VisionSpec("c3d64_gray", "video", "c3d", 1, 64, 1.0, "unit", "train", steps=1000, batch=24, width=12),
    # A 12 x 12-patch grid and a frame-by-frame video model to choose on (the held-out set has one of each)
    VisionSpec("cnn96_rgb", "image", "cnn", 3, 96, 1.0, "unit", "train", steps=500),
    VisionSpec("framemean64_gray", "video", "frame_mean", 1, 64, 1.0, "unit", "train", steps=400, batch=16, width=12),
    # A recurrent video model to choose on (the held-out set has one: another cell, colour, another input scale)
    VisionSpec("cnnlstm64_gray", "video", "cnn_lstm", 1, 64, 1.0, "unit", "train", steps=400, batch=24, width=12),
    # ... and one in colour on the 0-255 scale with a fixed normalisation, as deployed video models often are
    VisionSpec("cnnlstm64_rgb", "video", "cnn_lstm", 3, 64, 255.0, "fixed", "train", steps=600, batch=24, width=12),
    # Held out: never used for any choice.
    VisionSpec("resnet64_rgb", "image", "resnet", 3, 64, 255.0, "fixed", "heldout", steps=600, width=12, onnx=True),
    VisionSpec("cnn96_gray", "image", "cnn_strided", 1, 96, 1.0, "zscore", "heldout", steps=600, width=16),
    VisionSpec("cnngru64_rgb", "video", "cnn_gru", 3, 64, 255.0, "fixed", "heldout", steps=400, batch=24, width=12),
    # A second unseen video model: factorised space-then-time convolutions, colour on [0, 1], z-scored per clip
    VisionSpec("r21d64_rgb", "video", "r2plus1d", 3, 64, 1.0, "zscore", "heldout", steps=800, batch=24, width=12),
)
SPLIT: dict[str, str] = {m.name: m.split for m in ZOO}


def vision_dir() -> Path:
    """``models/vision`` of the shipped models folder (`ecglens.classifiers.models_dir`)."""
    return models_dir() / "vision"


def members(split: str | None = None, modality: str | None = None) -> list[VisionSpec]:
    """The vision zoo's members, optionally only one split ("train" / "heldout") and modality ("image" / "video")."""
    if split not in (None, "train", "heldout"):
        raise ValueError(f"split must be 'train' or 'heldout', got {split!r}")
    if modality not in (None, "image", "video"):
        raise ValueError(f"modality must be 'image' or 'video', got {modality!r}")
    return [m for m in ZOO if (split is None or m.split == split) and (modality is None or m.modality == modality)]


def spec_of(name: str) -> VisionSpec:
    for m in ZOO:
        if m.name == name:
            return m
    raise KeyError(f"{name!r} is not a vision-zoo member; members: {', '.join(SPLIT)}")


def member_path(name: str, suffix: str = ".pt") -> Path:
    """The model file of member ``name`` (``.pt``, or ``.onnx`` for members exported to ONNX); card beside it."""
    spec_of(name)
    return vision_dir() / f"{name}{suffix}"


def input_shape(spec: VisionSpec) -> list[int]:
    """``[C, H, W]`` or ``[T, C, H, W]``."""
    chw = [spec.channels, spec.size, spec.size]
    return chw if spec.modality == "image" else [spec.frames, *chw]


# --------------------------------------------------------------------------------------------- networks
class Normalise(nn.Module):
    """The member's own input handling: undo ``input_scale``, then unit / fixed mean-std / per-sample z-score."""

    def __init__(self, scale: float, mode: int):
        super().__init__()
        self.scale = float(scale)
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x / self.scale
        if self.mode == 1:
            return (x - 0.45) / 0.25
        if self.mode == 2:
            flat = x.reshape(x.shape[0], -1)
            mean = flat.mean(dim=1).reshape([-1] + [1] * (x.dim() - 1))
            std = flat.std(dim=1).reshape([-1] + [1] * (x.dim() - 1))
            return (x - mean) / (std + 0.05)
        return x


NORMS = {"unit": 0, "fixed": 1, "zscore": 2}


def _conv(c_in: int, c_out: int, k: int = 3, s: int = 1, pad: int | None = None) -> nn.Sequential:
    pad = k // 2 if pad is None else pad
    return nn.Sequential(nn.Conv2d(c_in, c_out, k, s, pad, bias=False), nn.BatchNorm2d(c_out), nn.ReLU())


class CNN(nn.Module):
    """A stride-2 stem, two conv + max-pool stages (to 8 × 8 at 64 px), then mean and max pooling over space."""

    def __init__(self, c: int, width: int):
        super().__init__()
        w = width
        self.body = nn.Sequential(
            _conv(c, w, 3, 2), _conv(w, 2 * w), nn.MaxPool2d(2), _conv(2 * w, 2 * w), nn.MaxPool2d(2)
        )
        self.head = nn.Linear(4 * w, 10)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        h = self.body(x)
        return torch.cat([h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class StridedCNN(nn.Module):
    """Strided convolutions only (no pooling layers), to a 6 × 6 map at 96 px, then mean pooling."""

    def __init__(self, c: int, width: int):
        super().__init__()
        w = width
        self.body = nn.Sequential(
            _conv(c, w, 5, 2), _conv(w, w, 3, 2), _conv(w, 2 * w, 3, 2), _conv(2 * w, 2 * w, 3, 2), _conv(2 * w, 2 * w)
        )
        self.head = nn.Linear(2 * w, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x).mean(dim=(2, 3)))


class ResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.a = _conv(c_in, c_out, 3, stride)
        self.b = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn = nn.BatchNorm2d(c_out)
        self.skip = (
            nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
            if stride != 1 or c_in != c_out
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.skip(x) + self.bn(self.b(self.a(x))))


class ResNet(nn.Module):
    """A stride-2 stem and three residual blocks (64 -> 32 -> 16 -> 8 px), global mean pooling."""

    def __init__(self, c: int, width: int):
        super().__init__()
        w = width
        self.body = nn.Sequential(
            _conv(c, w, 3, 2), ResBlock(w, w, 1), ResBlock(w, 2 * w, 2), ResBlock(2 * w, 2 * w, 2)
        )
        self.head = nn.Linear(4 * w, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.body(x)
        return self.head(torch.cat([h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], dim=1))


def _dwsep(c_in: int, c_out: int, s: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_in, 3, s, 1, groups=c_in, bias=False),
        nn.BatchNorm2d(c_in),
        nn.ReLU6(),
        nn.Conv2d(c_in, c_out, 1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU6(),
    )


class DWSep(nn.Module):
    """MobileNet-style depthwise-separable convolutions (ReLU6), then global max pooling and a two-layer head."""

    def __init__(self, c: int, width: int):
        super().__init__()
        w = width
        self.body = nn.Sequential(
            _conv(c, w, 3, 2), _dwsep(w, w, 1), _dwsep(w, 2 * w, 2), _dwsep(2 * w, 2 * w, 1), _dwsep(2 * w, 2 * w, 2)
        )
        self.head = nn.Sequential(nn.Linear(2 * w, 48), nn.ReLU(), nn.Linear(48, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x).amax(dim=(2, 3)))


class ViT(nn.Module):
    """A stride-2 convolutional stem, then 4 × 4 patches of it (8 × 8 pixels) embedded linearly, learned positions,
    two encoder layers, mean pooling over tokens."""

    def __init__(self, c: int, size: int, d: int = 48, patch: int = 8):
        super().__init__()
        self.embed = nn.Sequential(_conv(c, 16, 3, 2), nn.Conv2d(16, d, patch // 2, patch // 2))
        self.pos = nn.Parameter(torch.zeros(1, (size // patch) ** 2, d))
        layer = nn.TransformerEncoderLayer(d, 4, 2 * d, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = nn.Linear(d, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x).flatten(2).transpose(1, 2) + self.pos
        return self.head(self.encoder(h).mean(dim=1))


def _conv3d(c_in: int, c_out: int, k: tuple[int, int, int], s: tuple[int, int, int]) -> nn.Sequential:
    pad = tuple(v // 2 for v in k)
    return nn.Sequential(nn.Conv3d(c_in, c_out, k, s, pad, bias=False), nn.BatchNorm3d(c_out), nn.ReLU())


def _patches3d(c_in: int, c_out: int) -> tuple[nn.Module, ...]:
    """4 × 4-pixel patches of every frame (no mixing over time), the first layers of a 3-D `body`."""
    return nn.Conv3d(c_in, c_out, (1, 4, 4), (1, 4, 4), bias=False), nn.BatchNorm3d(c_out), nn.ReLU()


class _Clip3D(nn.Module):
    """A 3-D convolutional ``self.body`` over (time, height, width), its mean and max to ``self.head``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.body(x.transpose(1, 2))  # [N, T, C, H, W] -> [N, C, T, H, W]
        return self.head(torch.cat([h.mean(dim=(2, 3, 4)), h.amax(dim=(2, 3, 4))], dim=1))


class C3D(_Clip3D):
    """4 × 4 spatial patches per frame, then 3-D convolutions over (time, height, width), mean and max pooling."""

    def __init__(self, c: int, width: int):
        super().__init__()
        w = width
        self.body = nn.Sequential(
            *_patches3d(c, w),
            _conv3d(w, 2 * w, (3, 3, 3), (1, 2, 2)),
            _conv3d(2 * w, 2 * w, (3, 3, 3), (2, 1, 1)),
            _conv3d(2 * w, 3 * w, (3, 3, 3), (1, 1, 1)),
        )
        self.head = nn.Linear(6 * w, 10)


class R2Plus1D(_Clip3D):
    """(2+1)-D blocks (Tran et al., CVPR 2018): each a spatial (1 × 3 × 3) convolution then a temporal (3 × 1 × 1)
    one, after 4 × 4 patches per frame; the clip's mean and max over time and space to the head."""

    def __init__(self, c: int, width: int):
        super().__init__()
        w = width
        self.body = nn.Sequential(
            *_patches3d(c, w),
            _conv3d(w, 2 * w, (1, 3, 3), (1, 2, 2)),
            _conv3d(2 * w, 2 * w, (3, 1, 1), (1, 1, 1)),
            _conv3d(2 * w, 3 * w, (1, 3, 3), (1, 1, 1)),
            _conv3d(3 * w, 3 * w, (3, 1, 1), (2, 1, 1)),
        )
        self.head = nn.Linear(6 * w, 10)


class CNNGRU(nn.Module):
    """A per-frame CNN (shared weights) to a feature vector per frame, a GRU over frames, last state + mean."""

    def __init__(self, c: int, width: int):
        super().__init__()
        w = width
        self.frame = nn.Sequential(
            _conv(c, w, 4, 4, pad=0), _conv(w, 2 * w, 3, 1), nn.MaxPool2d(2), _conv(2 * w, 2 * w, 3, 1), nn.MaxPool2d(2)
        )
        self.gru = nn.GRU(4 * w, 32, batch_first=True)
        self.head = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t = x.shape[0], x.shape[1]
        h = self.frame(x.reshape(n * t, x.shape[2], x.shape[3], x.shape[4]))
        f = torch.cat([h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], dim=1).reshape(n, t, -1)
        out, _ = self.gru(f)
        return self.head(torch.cat([out[:, -1], out.mean(dim=1)], dim=1))


class _PerFrame(nn.Module):
    """A video model built on `CNN` run on each frame (shared weights, ``self.frame``)."""

    def per_frame(self, x: torch.Tensor) -> torch.Tensor:
        """`CNN`'s pooled features of every frame of ``x`` ``[n, t, c, h, w]``, in one batch: ``[n, t, features]``
        (a method, not a function taking the module: TorchScript compiles it with the model)."""
        return self.frame.features(x.flatten(0, 1)).reshape(x.shape[0], x.shape[1], -1)


class CNNLSTM(_PerFrame):
    """`CNN`'s pooled features on each frame (shared weights), an LSTM over frames, its last state to `CNN`'s head
    (the decision reads the frames in order, the last ones most directly)."""

    def __init__(self, c: int, width: int):
        super().__init__()
        self.frame = CNN(c, width)
        self.lstm = nn.LSTM(4 * width, 4 * width, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.per_frame(x)
        out, _ = self.lstm(f)
        return self.frame.head(out[:, -1])


class FrameMean(_PerFrame):
    """`CNN` on each frame (shared weights), its pooled features averaged over time, then its head (TSN-style: no
    recurrence, no 3-D convolution; a model that reads frames one by one)."""

    def __init__(self, c: int, width: int):
        super().__init__()
        self.frame = CNN(c, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.per_frame(x)
        return self.frame.head(f.mean(dim=1))


# Each architecture's network from its spec (`VisionSpec.arch` names one).
NETS: dict[str, Callable[[VisionSpec], nn.Module]] = {
    "cnn": lambda s: CNN(s.channels, s.width),
    "cnn_strided": lambda s: StridedCNN(s.channels, s.width),
    "resnet": lambda s: ResNet(s.channels, s.width),
    "dwsep": lambda s: DWSep(s.channels, s.width),
    "vit": lambda s: ViT(s.channels, s.size),
    "c3d": lambda s: C3D(s.channels, s.width),
    "r2plus1d": lambda s: R2Plus1D(s.channels, s.width),
    "cnn_gru": lambda s: CNNGRU(s.channels, s.width),
    "cnn_lstm": lambda s: CNNLSTM(s.channels, s.width),
    "frame_mean": lambda s: FrameMean(s.channels, s.width),
}


class Member(nn.Module):
    """What gets exported: the member's input handling, then the network; logits over the ten digits."""

    def __init__(self, spec: VisionSpec):
        super().__init__()
        self.norm = Normalise(spec.input_scale, NORMS[spec.norm])
        if spec.arch not in NETS:
            raise ValueError(f"unknown vision-zoo architecture {spec.arch!r}")
        self.net: nn.Module = NETS[spec.arch](spec)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.norm(x))


# --------------------------------------------------------------------------------------------- data
@lru_cache(maxsize=4)
def _colour_pool(modality: str, split: str, n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Colour 64-px renders as uint8 (memory), labels, boxes: the pool every member of ``modality`` draws from."""
    data = (
        dc.make_images(n, split=split, seed=seed) if modality == "image" else dc.make_clips(n, split=split, seed=seed)
    )
    return np.round(data.x * 255).astype(np.uint8), data.y, data.box


def dataset(spec: VisionSpec, split: str, n: int, seed: int = DATA_SEED) -> tuple[np.ndarray, np.ndarray]:
    """``n`` samples of ``split``'s digits for ``spec`` (its channels and size): float32 x in [0, 1], labels."""
    x8, y, box = _colour_pool(spec.modality, split, n, seed)
    x, _ = dc.convert(x8.astype(np.float32) / 255.0, box, spec.channels, spec.size)
    return x, y


def accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray, scale: float, batch: int = 128) -> float:
    """Share of ``x`` (in [0, 1]) that ``model`` (seeing ``x * scale``) labels ``y``."""
    with torch.inference_mode():
        pred = torch.cat([model(torch.from_numpy(x[a : a + batch] * scale)).argmax(1) for a in range(0, len(x), batch)])
    return float((pred.numpy() == y).mean())


def train_member(
    spec: VisionSpec,
    out_dir: Path,
    *,
    seed: int = 0,
    n_train: int | None = None,
    n_test: int | None = None,
    log: Any = print,
) -> dict[str, Any]:
    """Train one member, export TorchScript (+ ONNX when ``spec.onnx``) and its card into ``out_dir``."""
    video = spec.modality == "video"
    n_train = n_train or (TRAIN_CLIPS if video else TRAIN_IMAGES)
    n_test = n_test or (TEST_CLIPS if video else TEST_IMAGES)
    t0 = time.perf_counter()
    x_train, y_train = dataset(spec, "train", n_train, DATA_SEED + seed)
    x_val, y_val = dataset(spec, "validation", max(n_test // 2, 1), DATA_SEED)
    t_data = time.perf_counter() - t0
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = Member(spec)
    opt = torch.optim.AdamW(model.parameters(), lr=spec.lr, weight_decay=1e-2)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=spec.lr, total_steps=spec.steps, pct_start=0.2)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    model.train()
    for step in range(spec.steps):
        idx = rng.integers(0, len(x_train), spec.batch)
        xb = torch.from_numpy(x_train[idx] * spec.input_scale)
        loss = nn.functional.cross_entropy(model(xb), torch.from_numpy(y_train[idx]), label_smoothing=0.05)
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 2.0)
        opt.step()
        sched.step()
        if step % 100 == 0:
            log(f"  {spec.name} step {step}/{spec.steps}: loss {loss.item():.3f}")
    train_cpu_s = time.process_time() - cpu0
    train_s = time.perf_counter() - wall0
    model.eval()
    x_test, y_test = dataset(spec, "test", n_test, DATA_SEED)
    metrics = {
        "test_accuracy": round(accuracy(model, x_test, y_test, spec.input_scale), 4),
        "test_samples": int(n_test),
        "validation_accuracy": round(accuracy(model, x_val, y_val, spec.input_scale), 4),
        "validation_samples": int(len(y_val)),
        "train_accuracy_sample": round(accuracy(model, x_train[:500], y_train[:500], spec.input_scale), 4),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{spec.name}.pt"
    scripted = torch.jit.script(model)
    torch.jit.save(scripted, str(path))
    if spec.onnx:
        example = torch.zeros(1, *input_shape(spec))
        torch.onnx.export(
            model,
            (example,),
            str(path.with_suffix(".onnx")),
            input_names=["x"],
            output_names=["logits"],
            dynamic_axes={"x": {0: "n"}, "logits": {0: "n"}},
            opset_version=17,
            dynamo=False,
        )
    n_params = int(sum(p.numel() for p in model.parameters()))
    card = {
        "name": spec.name,
        "modality": spec.modality,
        "input_shape": input_shape(spec),
        "classes": list(CLASSES),
        "output": "logits",
        "input_scale": float(spec.input_scale),
        "architecture": f"{spec.arch} ({n_params} parameters)",
        "description": f"ECG Lens vision-zoo member ({spec.split}): {spec.arch}, "
        f"{'colour' if spec.channels == 3 else 'grayscale'} {spec.size} × {spec.size}"
        + (f" × {spec.frames} frames" if video else "")
        + f", input x * {spec.input_scale:g} ({spec.norm} normalisation inside). Reads one digit on a textured "
        "canvas. A test black box, not a production model.",
        "intended_use": "Developing and benchmarking explainers on images and clips only (ecglens issue 20).",
        "data": {
            "generator": "ecglens.datasets.digits_canvas." + ("make_clips" if video else "make_images"),
            "source": "scikit-learn load_digits (bundled; UCI optdigits test part, Alpaydin & Kaynak 1998)",
            "train": {
                "split": "train",
                "digit_indices": list(dc.SPLITS["train"]),
                "samples": int(n_train),
                "seed": DATA_SEED + seed,
            },
            "validation": {
                "split": "validation",
                "digit_indices": list(dc.SPLITS["validation"]),
                "samples": int(len(y_val)),
                "seed": DATA_SEED,
            },
            "test": {
                "split": "test",
                "digit_indices": list(dc.SPLITS["test"]),
                "samples": int(n_test),
                "seed": DATA_SEED,
            },
        },
        "metrics": metrics,
        "training": {
            "seed": seed,
            "steps": spec.steps,
            "batch": spec.batch,
            "optimizer": f"AdamW one-cycle {spec.lr:g}, label smoothing 0.05",
            "seconds": round(train_s, 1),
            "cpu_seconds": round(train_cpu_s, 1),
            "data_seconds": round(t_data, 1),
            "load_average": round(os.getloadavg()[0], 1),
            "torch_threads": torch.get_num_threads(),
        },
        "extra": {"split": spec.split, "vision_zoo": asdict(spec)},
    }
    path.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n")
    log(
        f"{spec.name}: {n_params} params, {train_cpu_s:.0f} s CPU ({train_s:.0f} s wall) training, "
        f"test accuracy {metrics['test_accuracy']:.3f}"
    )
    return card


def write_readme(out_dir: Path) -> Path:
    """``README.md`` in ``out_dir``: the members (from their cards) and the split."""
    lines = [
        "# ECG Lens vision zoo",
        "",
        "Small image and video black boxes for developing and benchmarking the explainer on images and clips "
        "(issue 20). Not production models. Rebuild: `ecglens train-vision-zoo` (deterministic; one torch thread). "
        "Code: `backend/ecglens/classifiers/vision_zoo.py`; data: `backend/ecglens/datasets/digits_canvas.py` "
        "(scikit-learn's bundled 8 × 8 digits, upscaled to 16-24 px at a random position on a 64 × 64 textured "
        "canvas; clips: 8 frames of the digit moving).",
        "",
        "Split: tuning may use `train` members; `heldout` members are never used for any choice. Every member "
        f"trains on scikit-learn digits {dc.SPLITS['train'][0]}-{dc.SPLITS['train'][1] - 1}; accuracy is on "
        f"digits {dc.SPLITS['test'][0]}-{dc.SPLITS['test'][1] - 1} (never trained on), which the vision "
        "benchmark also draws from.",
        "",
        "| member | split | modality | architecture | input shape | input_scale | normalisation | files | "
        "test accuracy | train (s wall / CPU) |",
        "|" + "---|" * 10,
    ]
    for spec in ZOO:
        card_file = out_dir / f"{spec.name}.json"
        card = json.loads(card_file.read_text()) if card_file.exists() else {}
        files = ", ".join(f"`{spec.name}{s}`" for s in (".pt", ".onnx") if (out_dir / f"{spec.name}{s}").exists())
        acc = card.get("metrics", {}).get("test_accuracy")
        tr = card.get("training", {})
        lines.append(
            f"| {spec.name} | {spec.split} | {spec.modality} | {card.get('architecture', spec.arch)} | "
            f"{input_shape(spec)} | {spec.input_scale:g} | {spec.norm} | {files} | "
            f"{'–' if acc is None else f'{acc:.3f}'} | {tr.get('seconds', '–')} / {tr.get('cpu_seconds', '–')} |"
        )
    path = out_dir / "README.md"
    path.write_text("\n".join(lines) + "\n")
    return path


# --------------------------------------------------------------------------------------------- cli
def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train-vision-zoo", help="retrain the vision zoo of small image / video black boxes")
    p.add_argument("--only", action="append", default=None, help="train only this member (repeatable)")
    p.add_argument("--out", default=None, help="output folder (default: models/vision)")
    p.add_argument("--steps-scale", type=float, default=1.0, help="scale every member's steps (smoke tests)")
    p.add_argument("--samples-scale", type=float, default=1.0, help="scale the training / test pools (smoke tests)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cli)


def _cli(args: argparse.Namespace) -> int:
    from dataclasses import replace

    torch.set_num_threads(1)  # deterministic, and the 2-min-per-member budget is set for one thread
    out = Path(args.out) if args.out else vision_dir()
    unknown = set(args.only or []) - set(SPLIT)
    if unknown:
        raise ValueError(f"unknown vision-zoo members: {', '.join(sorted(unknown))}; members: {', '.join(SPLIT)}")
    for spec in (m for m in ZOO if not args.only or m.name in args.only):
        if args.steps_scale != 1.0:
            spec = replace(spec, steps=max(1, int(round(spec.steps * args.steps_scale))))
        video = spec.modality == "video"
        n_train = max(8, int(round((TRAIN_CLIPS if video else TRAIN_IMAGES) * args.samples_scale)))
        n_test = max(8, int(round((TEST_CLIPS if video else TEST_IMAGES) * args.samples_scale)))
        train_member(spec, out, seed=args.seed, n_train=n_train, n_test=n_test)
    print(f"vision zoo: {write_readme(out)}")
    return 0
