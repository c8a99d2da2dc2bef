"""Realistic image and video distortions at a calibrated PSNR, and the dropout fill that removes a region.

Inputs are float32 images ``[C, H, W]`` or videos ``[T, C, H, W]`` with values in [0, 1]. Image kinds
(`IMAGE_KINDS`) act on every frame of a video; `VIDEO_KINDS` adds two temporal ones:

``gaussian_noise``       sensor noise: ``x + sigma * N(0, 1)`` per value, clipped to [0, 1] (strength: sigma).
``blur``                 defocus: a Gaussian blur of every channel (strength: sigma in pixels).
``dead_pixels``          stuck pixels: a random set of pixels (all channels) stuck at 0 or 1 (strength: the
                         number of pixels per frame).
``jpeg``                 JPEG compression of every frame with Pillow (strength: 100 - quality, quality 1..95).
``brightness_contrast``  exposure: contrast shrunk towards the frame's mean by a factor ``1 - s`` and the mean
                         moved by ``s / 2`` towards the far end of the range (strength: ``s`` in [0, 1]).
``frame_drop``           (video) dropped frames, each replaced by the last frame kept before it; frame 0 is kept
                         (strength: the number of frames dropped, in a random order).
``motion_blur``          (video) each frame the average of the frames within ``r`` of it (fractional edge
                         weights, clamped at the ends; strength: ``r`` in frames).

PSNR: ``10 * log10(PEAK**2 / MSE)`` over every value of the input, with ``PEAK = 1.0``: the nominal value range
of the [0, 1] inputs (not the range the image happens to span, so a dark image is not judged by a smaller peak).

`calibrated` searches the strength at which a kind reaches a target PSNR (bisection on the strength, the PSNR
falling with it; integer strengths for dead pixels, JPEG and frame drop, so the nearest reachable value is taken).
A kind that cannot reach the target (JPEG of a flat image) answers its strongest setting; the PSNR it reached is
returned with it, and every figure the explainer reports is measured on the distortion actually laid.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence

import numpy as np

PEAK = 1.0
IMAGE_KINDS = ("gaussian_noise", "blur", "dead_pixels", "jpeg", "brightness_contrast")
VIDEO_KINDS = (*IMAGE_KINDS, "frame_drop", "motion_blur")
_RANDOM_KINDS = ("gaussian_noise", "dead_pixels", "frame_drop")  # a new generator state gives a new realisation
_SEARCH_STEPS = 12  # bisection steps on a continuous strength (1/4000 of the bracket)


def kinds_for(modality: str) -> tuple[str, ...]:
    """The distortion kinds of ``modality`` ("image" or "video")."""
    if modality == "image":
        return IMAGE_KINDS
    if modality == "video":
        return VIDEO_KINDS
    raise ValueError(f"no vision distortions for modality {modality!r}; expected 'image' or 'video'")


def parse_kinds(distortions: Sequence[str] | str | None, modality: str) -> tuple[str, ...]:
    """Kinds from a list or a comma-separated string (None: all of the modality's), checked, in the given order."""
    valid = kinds_for(modality)
    if distortions is None:
        return valid
    names = [s.strip() for s in distortions.split(",")] if isinstance(distortions, str) else list(distortions)
    names = [n for n in names if n]
    unknown = [n for n in names if n not in valid]
    if unknown or not names:
        raise ValueError(f"unknown {modality} distortion kinds {unknown}; valid: {', '.join(valid)}")
    return tuple(dict.fromkeys(names))


def is_random(kind: str) -> bool:
    """Whether another generator state draws another realisation of ``kind`` (else it is deterministic)."""
    return kind in _RANDOM_KINDS


def psnr(clean: np.ndarray, distorted: np.ndarray, peak: float = PEAK) -> float:
    """PSNR in dB of ``distorted`` against ``clean`` (any equal shapes); inf when they are equal."""
    mse = float(np.mean((np.asarray(distorted, np.float64) - np.asarray(clean, np.float64)) ** 2))
    return float("inf") if mse <= 0 else float(10 * np.log10(peak**2 / mse))


def psnr_of_energy(energy: float, n_values: int, peak: float = PEAK) -> float:
    """PSNR in dB of a distortion whose sum of squares over an input of ``n_values`` values is ``energy``."""
    return float("inf") if energy <= 0 else float(10 * np.log10(peak**2 * n_values / energy))


# ---------------------------------------------------------------------------------------------------- kinds
def _frames(x: np.ndarray) -> np.ndarray:
    """``[T, C, H, W]`` view of an image (T = 1) or a video."""
    if x.ndim == 3:
        return x[None]
    if x.ndim == 4:
        return x
    raise ValueError(f"expected an image [C, H, W] or a video [T, C, H, W], got shape {list(x.shape)}")


def _gaussian_noise(v: np.ndarray, s: float, rng: np.random.Generator) -> np.ndarray:
    return np.clip(v + np.float32(s) * rng.standard_normal(v.shape, dtype=np.float32), 0.0, 1.0)


def _blur(v: np.ndarray, s: float, rng: np.random.Generator) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    if s <= 0:
        return v.copy()
    return gaussian_filter(v, sigma=(0, 0, s, s), mode="reflect").astype(np.float32)


def _dead_pixels(v: np.ndarray, s: float, rng: np.random.Generator) -> np.ndarray:
    t, c, h, w = v.shape
    n = int(np.clip(round(s), 0, h * w))
    out = v.copy()
    for f in range(t):
        pixels = rng.permutation(h * w)[:n]
        stuck = rng.integers(0, 2, size=n).astype(np.float32)  # stuck dark or stuck bright
        out[f].reshape(c, h * w)[:, pixels] = stuck[None, :]
    return out


def _jpeg_frame(frame: np.ndarray, quality: int) -> np.ndarray:
    from PIL import Image

    c = frame.shape[0]
    planes = [frame] if c == 3 else [frame[i : i + 1] for i in range(c)]
    out = []
    for p in planes:
        u8 = np.round(np.clip(p, 0, 1) * 255).astype(np.uint8)
        img = Image.fromarray(np.moveaxis(u8, 0, -1) if p.shape[0] == 3 else u8[0], "RGB" if p.shape[0] == 3 else "L")
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=int(quality))
        dec = np.asarray(Image.open(io.BytesIO(buf.getvalue())), dtype=np.float32) / 255.0
        out.append(np.moveaxis(dec, -1, 0) if p.shape[0] == 3 else dec[None])
    return np.concatenate(out, axis=0)


def _jpeg(v: np.ndarray, s: float, rng: np.random.Generator) -> np.ndarray:
    quality = int(np.clip(round(100 - s), 1, 95))
    return np.stack([_jpeg_frame(f, quality) for f in v]).astype(np.float32)


def _brightness_contrast(v: np.ndarray, s: float, rng: np.random.Generator) -> np.ndarray:
    s = float(np.clip(s, 0.0, 1.0))
    m = v.mean(axis=(1, 2, 3), keepdims=True)
    shift = np.where(m < 0.5, 0.5, -0.5) * s
    return np.clip(m + (v - m) * (1 - s) + shift, 0.0, 1.0).astype(np.float32)


def _frame_drop(v: np.ndarray, s: float, rng: np.random.Generator) -> np.ndarray:
    t = v.shape[0]
    n = int(np.clip(round(s), 0, t - 1))
    dropped = set((1 + rng.permutation(max(t - 1, 0)))[:n].tolist())
    out = v.copy()
    for f in range(1, t):
        if f in dropped:
            out[f] = out[f - 1]
    return out


def _motion_blur(v: np.ndarray, s: float, rng: np.random.Generator) -> np.ndarray:
    t = v.shape[0]
    r = float(max(0.0, s))
    if r <= 0 or t == 1:
        return v.copy()
    k = int(np.ceil(r))
    offsets = np.arange(-k, k + 1)
    weights = np.clip(r + 1 - np.abs(offsets), 0.0, 1.0)  # 1 inside r, the fractional part at the edges
    weights = weights / weights.sum()
    out = np.zeros_like(v)
    for o, wgt in zip(offsets, weights):
        idx = np.clip(np.arange(t) + o, 0, t - 1)
        out += np.float32(wgt) * v[idx]
    return out


_KINDS: dict[str, Callable[[np.ndarray, float, np.random.Generator], np.ndarray]] = {
    "gaussian_noise": _gaussian_noise,
    "blur": _blur,
    "dead_pixels": _dead_pixels,
    "jpeg": _jpeg,
    "brightness_contrast": _brightness_contrast,
    "frame_drop": _frame_drop,
    "motion_blur": _motion_blur,
}


def _strength_range(kind: str, v: np.ndarray) -> tuple[float, float, bool]:
    """``(weakest, strongest, integer)`` strength of ``kind`` on frames ``v`` ``[T, C, H, W]``."""
    t, _, h, w = v.shape
    return {
        "gaussian_noise": (0.0, 1.0, False),
        "blur": (0.0, float(max(h, w)) / 4, False),
        "dead_pixels": (0.0, float(h * w), True),
        "jpeg": (5.0, 99.0, True),
        "brightness_contrast": (0.0, 1.0, False),
        "frame_drop": (0.0, float(t - 1), True),
        "motion_blur": (0.0, float(t), False),
    }[kind]


def apply(kind: str, x: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """``x`` (``[C, H, W]`` or ``[T, C, H, W]``, float32 in [0, 1]) distorted by ``kind`` at ``strength``; same shape.

    The random kinds draw from ``rng`` (the same state gives the same realisation); video kinds need a video.
    """
    if kind not in _KINDS:
        raise ValueError(f"unknown vision distortion {kind!r}; valid: {', '.join(VIDEO_KINDS)}")
    x = np.asarray(x, dtype=np.float32)
    v = _frames(x)
    if kind in ("frame_drop", "motion_blur") and x.ndim != 4:
        raise ValueError(f"{kind} needs a video [T, C, H, W], got shape {list(x.shape)}")
    out = _KINDS[kind](v, float(strength), rng)
    return out.reshape(x.shape).astype(np.float32, copy=False)


def calibrated(kind: str, x: np.ndarray, psnr_db: float, rng: np.random.Generator) -> tuple[np.ndarray, float, float]:
    """``(distorted, strength, reached PSNR)``: ``kind`` laid over all of ``x`` at the strength whose PSNR is
    nearest ``psnr_db``. A random kind draws one realisation (its seed from ``rng``) that every trial shares, so
    the search is over the strength alone."""
    return calibrated_levels(kind, x, [psnr_db], rng)[0]


def calibrated_levels(
    kind: str, x: np.ndarray, levels_db: Sequence[float], rng: np.random.Generator
) -> list[tuple[np.ndarray, float, float]]:
    """`calibrated` at several PSNRs at once: the trials are shared, and each level's bisection starts from the
    tightest bracket the earlier ones measured."""
    x = np.asarray(x, dtype=np.float32)
    lo, hi, integer = _strength_range(kind, _frames(x))
    seed = int(rng.integers(2**62)) if is_random(kind) else 0  # one realisation for every trial
    tried: dict[float, tuple[np.ndarray, float]] = {}

    def trial(s: float) -> float:
        if s not in tried:
            out = apply(kind, x, s, np.random.default_rng(seed))
            tried[s] = (out, psnr(x, out))
        return tried[s][1]

    steps = int(np.ceil(np.log2(max(2.0, hi - lo)))) + 1 if integer else _SEARCH_STEPS
    results = []
    for target in levels_db:
        target = float(target)
        if trial(hi) <= target:  # reachable: bisect inside the tightest known bracket
            a = max([s for s, (_, p) in tried.items() if p > target], default=lo)
            b = min([s for s, (_, p) in tried.items() if p <= target and s > a], default=hi)
            for _ in range(steps):
                mid = 0.5 * (a + b)
                if integer:
                    mid = float(round(mid))
                    if mid in (a, b):
                        break
                if b - a <= 1e-6 * (hi - lo):
                    break
                if trial(mid) > target:
                    a = mid  # still too quiet: stronger
                else:
                    b = mid
        # the nearest of every trial so far (an earlier level's trial may be the nearest for this one)
        s_best = min(tried, key=lambda s: abs(tried[s][1] - target) if np.isfinite(tried[s][1]) else np.inf)
        out, p = tried[s_best]
        results.append((out, float(s_best), float(p)))
    return results


def removal(x: np.ndarray, patch: tuple[int, int]) -> np.ndarray:
    """The dropout fill: ``x`` Gaussian-blurred with sigma of one patch side (``patch`` = (height, width) px) on
    every frame and channel, so a removed patch keeps the colour of its surroundings but none of its detail."""
    from scipy.ndimage import gaussian_filter

    x = np.asarray(x, dtype=np.float32)
    v = _frames(x)
    out = gaussian_filter(v, sigma=(0, 0, float(patch[0]), float(patch[1])), mode="reflect")
    return out.reshape(x.shape).astype(np.float32)
