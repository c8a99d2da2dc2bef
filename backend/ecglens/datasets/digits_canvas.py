"""Synthetic images and clips with known truth: scikit-learn's bundled 8 × 8 digits on a textured canvas (issue 20).

Each image is one handwritten digit (scikit-learn's ``load_digits``, 1,797 8 × 8 scans at 17 grey levels; bundled
with scikit-learn, nothing is downloaded), upscaled to 16-24 px and alpha-composited at a random position on a
64 × 64 canvas of seeded texture: a base colour, a linear gradient, smooth low-frequency blotches, pixel noise and
0-2 clutter strokes (short lines in random colours, so a classifier must tell a digit from other ink). The digit's
ink contrasts with the background under it by at least `MIN_CONTRAST` in mean brightness. What is known: the label
and the digit's ink box (the tight box of pixels whose ink opacity is at least `INK_ALPHA`), so a saliency map can
be scored (pointing game) without annotation.

Clips: `FRAMES` frames of one digit moving in a straight line across a static canvas (at least `MIN_TRAVEL` px
from first to last frame), with fresh pixel noise per frame and the ink box per frame.

Splits: scikit-learn's digits are split by index into contiguous blocks (`SPLITS`: 60% train, 20% validation, 20%
test), so the benchmark's digits are scans no classifier trained on. Everything is deterministic: sample ``i`` of
``(split, seed)`` is drawn from its own generator, so the first ``n`` samples of a larger draw are the ``n``
samples of a smaller one.

Arrays: images float32 ``[N, C, H, W]`` in [0, 1] (C = 3 colour, or 1: the mean of the colour channels), clips
``[N, T, C, H, W]``; boxes int ``(y0, x0, y1, x1)``, half-open (rows ``y0 <= y < y1``) in pixels of the returned
size. ``size`` other than 64 renders at 64 and resizes (area / bilinear), scaling the box outward.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

CANVAS = 64
FRAMES = 8
DIGIT_SIZES = (16, 24)  # inclusive range of the upscaled digit's side, px
INK_ALPHA = 0.25
MIN_CONTRAST = 0.35
MIN_TRAVEL = 16.0
N_DIGITS = 1797
SPLITS: dict[str, tuple[int, int]] = {"train": (0, 1079), "validation": (1079, 1438), "test": (1438, 1797)}
_SPLIT_CODE = {"train": 0, "validation": 1, "test": 2}


@dataclass
class DigitImages:
    """``x`` float32 [N, C, H, W] in [0, 1]; ``y`` int64 [N] (0-9); ``box`` int64 [N, 4] (y0, x0, y1, x1);
    ``digit_index`` the scikit-learn index of each digit."""

    x: np.ndarray
    y: np.ndarray
    box: np.ndarray
    digit_index: np.ndarray


@dataclass
class DigitClips:
    """``x`` float32 [N, T, C, H, W] in [0, 1]; ``y`` int64 [N]; ``box`` int64 [N, T, 4] per frame;
    ``digit_index`` the scikit-learn index of each digit."""

    x: np.ndarray
    y: np.ndarray
    box: np.ndarray
    digit_index: np.ndarray


@lru_cache(maxsize=1)
def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    return (d.images / 16.0).astype(np.float32), d.target.astype(np.int64)


def split_indices(split: str) -> np.ndarray:
    """scikit-learn digit indices of ``split`` ("train", "validation" or "test")."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    a, b = SPLITS[split]
    return np.arange(a, b)


def _upscale(img: np.ndarray, side: int) -> np.ndarray:
    """Bilinear upscaling of an 8 × 8 opacity map to ``side`` × ``side``, in [0, 1]."""
    import torch

    t = torch.from_numpy(img[None, None])
    out = torch.nn.functional.interpolate(t, size=(side, side), mode="bilinear", align_corners=False)
    return out[0, 0].clamp(0, 1).numpy()


def _smooth_noise(rng: np.random.Generator, cells: int, size: int) -> np.ndarray:
    """Low-frequency noise: a ``cells`` × ``cells`` random grid, bicubic to ``size``, per colour channel."""
    import torch

    g = torch.from_numpy(rng.normal(0, 1, (1, 3, cells, cells)).astype(np.float32))
    out = torch.nn.functional.interpolate(g, size=(size, size), mode="bicubic", align_corners=False)
    return out[0].numpy()


def _background(rng: np.random.Generator) -> np.ndarray:
    """A [3, 64, 64] textured canvas in [0, 1] (without the per-frame pixel noise)."""
    yy, xx = np.mgrid[0:CANVAS, 0:CANVAS].astype(np.float32) / (CANVAS - 1) - 0.5
    base = rng.uniform(0.25, 0.75, (3, 1, 1))
    angle = rng.uniform(0, 2 * np.pi)
    gradient = (np.cos(angle) * xx + np.sin(angle) * yy)[None] * rng.uniform(0.0, 0.35, (3, 1, 1))
    blotches = _smooth_noise(rng, int(rng.integers(3, 7)), CANVAS) * rng.uniform(0.03, 0.10, (3, 1, 1))
    img = base + gradient + blotches
    for _ in range(int(rng.integers(0, 3))):  # clutter strokes
        p0, p1 = rng.uniform(0, CANVAS, 2), rng.uniform(0, CANVAS, 2)
        length = max(float(np.hypot(*(p1 - p0))), 1.0)
        if length > 28:  # short strokes only
            p1 = p0 + (p1 - p0) * 28 / length
        d = p1 - p0
        t = np.clip(((yy + 0.5) * (CANVAS - 1) - p0[0]) * d[0] + ((xx + 0.5) * (CANVAS - 1) - p0[1]) * d[1], 0, None)
        t = np.minimum(t / max(float(d @ d), 1e-6), 1.0)
        dist = np.hypot((yy + 0.5) * (CANVAS - 1) - (p0[0] + t * d[0]), (xx + 0.5) * (CANVAS - 1) - (p0[1] + t * d[1]))
        a = np.clip(1.5 - dist, 0, 1)[None] * rng.uniform(0.3, 0.7)
        img = img * (1 - a) + rng.uniform(0, 1, (3, 1, 1)) * a
    return np.clip(img, 0, 1).astype(np.float32)


def _ink(rng: np.random.Generator, background_mean: float) -> np.ndarray:
    """An ink colour whose mean brightness is at least `MIN_CONTRAST` + 0.05 away from ``background_mean``."""
    gap = rng.uniform(MIN_CONTRAST + 0.05, 0.6)
    options = [v for v in (background_mean - gap, background_mean + gap) if 0.0 <= v <= 1.0]
    if not options:  # a mid-grey background and a wide gap: take the far end
        options = [0.0 if background_mean > 0.5 else 1.0]
    level = options[int(rng.integers(len(options)))]
    tint = rng.normal(0, 0.12, 3)
    colour = np.clip(level + tint - tint.mean(), 0, 1)
    colour += level - colour.mean()  # keep the mean after clipping (within [0, 1] at the channel level)
    return np.clip(colour, 0, 1).astype(np.float32).reshape(3, 1, 1)


def _paste(canvas: np.ndarray, alpha: np.ndarray, ink: np.ndarray, top: int, left: int) -> np.ndarray:
    out = canvas.copy()
    s = alpha.shape[0]
    region = out[:, top : top + s, left : left + s]
    out[:, top : top + s, left : left + s] = region * (1 - alpha) + ink * alpha
    return out


def _ink_box(alpha: np.ndarray, top: int, left: int) -> np.ndarray:
    rows = np.flatnonzero((alpha >= INK_ALPHA).any(axis=1))
    cols = np.flatnonzero((alpha >= INK_ALPHA).any(axis=0))
    return np.array([top + rows[0], left + cols[0], top + rows[-1] + 1, left + cols[-1] + 1], dtype=np.int64)


def _digit_ink(rng: np.random.Generator, canvas: np.ndarray, top_left: list[tuple[int, int]], side: int) -> np.ndarray:
    """Choose the ink colour for a digit at positions ``top_left``: contrast with the mean of the canvas under it."""
    under = np.mean([canvas[:, t : t + side, left : left + side].mean() for t, left in top_left])
    return _ink(rng, float(under))


def _sample_rng(seed: int, split: str, i: int, kind: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), _SPLIT_CODE[split], int(i), kind])


def convert(x: np.ndarray, box: np.ndarray, channels: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Colour 64 × 64 renders -> ``channels`` and ``size``: x [..., 3, 64, 64] -> [..., channels, size, size], box
    [..., 4] scaled outward (what `make_images` / `make_clips` return for those arguments)."""
    if channels == 1:
        x = x.mean(axis=-3, keepdims=True)
    elif channels != 3:
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    if size != CANVAS:
        import torch

        lead = x.shape[:-3]
        t = torch.from_numpy(np.ascontiguousarray(x.reshape(-1, *x.shape[-3:])))
        if size < CANVAS:
            t = torch.nn.functional.interpolate(t, size=(size, size), mode="area")
        else:
            t = torch.nn.functional.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)
        x = t.clamp(0, 1).numpy().reshape(*lead, x.shape[-3], size, size)
        f = size / CANVAS
        box = np.concatenate([np.floor(box[..., :2] * f), np.ceil(box[..., 2:] * f)], axis=-1).astype(np.int64)
    return np.ascontiguousarray(x, dtype=np.float32), box


def make_images(n: int, *, split: str = "train", seed: int = 0, channels: int = 3, size: int = CANVAS) -> DigitImages:
    """``n`` digit images of ``split``'s digits (see the module docstring); deterministic in (split, seed, i)."""
    pool = split_indices(split)
    images, labels = _digits()
    xs, boxes, idx = [], [], []
    for i in range(int(n)):
        rng = _sample_rng(seed, split, i, 0)
        k = int(pool[rng.integers(len(pool))])
        side = int(rng.integers(DIGIT_SIZES[0], DIGIT_SIZES[1] + 1))
        alpha = _upscale(images[k], side)
        top, left = (int(v) for v in rng.integers(0, CANVAS - side + 1, 2))
        canvas = _background(rng)
        ink = _digit_ink(rng, canvas, [(top, left)], side)
        img = _paste(canvas, alpha, ink, top, left)
        img = np.clip(img + rng.normal(0, 0.02, img.shape).astype(np.float32), 0, 1)
        xs.append(img)
        boxes.append(_ink_box(alpha, top, left))
        idx.append(k)
    x = np.stack(xs) if xs else np.zeros((0, 3, CANVAS, CANVAS), np.float32)
    box = np.stack(boxes) if boxes else np.zeros((0, 4), np.int64)
    x, box = convert(x, box, channels, size)
    k = np.asarray(idx, dtype=np.int64)
    return DigitImages(x=x, y=labels[k] if len(k) else k, box=box, digit_index=k)


def make_clips(
    n: int, *, split: str = "train", seed: int = 0, channels: int = 3, size: int = CANVAS, frames: int = FRAMES
) -> DigitClips:
    """``n`` clips of ``frames`` frames: one digit moving in a straight line across a static textured canvas."""
    pool = split_indices(split)
    images, labels = _digits()
    xs, boxes, idx = [], [], []
    for i in range(int(n)):
        rng = _sample_rng(seed, split, i, 1)
        k = int(pool[rng.integers(len(pool))])
        side = int(rng.integers(DIGIT_SIZES[0], DIGIT_SIZES[1] + 1))
        alpha = _upscale(images[k], side)
        hi = CANVAS - side
        while True:
            p0, p1 = rng.uniform(0, hi, 2), rng.uniform(0, hi, 2)
            if np.hypot(*(p1 - p0)) >= MIN_TRAVEL:
                break
        path = [
            tuple(int(round(v)) for v in p0 + (p1 - p0) * t / max(frames - 1, 1)) for t in range(frames)
        ]  # (top, left) per frame
        canvas = _background(rng)
        ink = _digit_ink(rng, canvas, path, side)
        clip = np.stack([_paste(canvas, alpha, ink, top, left) for top, left in path])
        clip = np.clip(clip + rng.normal(0, 0.02, clip.shape).astype(np.float32), 0, 1)
        xs.append(clip)
        boxes.append(np.stack([_ink_box(alpha, top, left) for top, left in path]))
        idx.append(k)
    x = np.stack(xs) if xs else np.zeros((0, frames, 3, CANVAS, CANVAS), np.float32)
    box = np.stack(boxes) if boxes else np.zeros((0, frames, 4), np.int64)
    x, box = convert(x, box, channels, size)
    k = np.asarray(idx, dtype=np.int64)
    return DigitClips(x=x, y=labels[k] if len(k) else k, box=box, digit_index=k)
