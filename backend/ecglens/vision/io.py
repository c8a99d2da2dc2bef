"""Reading an image or a video for an image or video classifier: float32 in [0, 1] of the card's input shape.

- An image file (PNG, JPEG, BMP, GIF, TIFF, WebP; Pillow): converted to the card's channels (1: grey, 3: RGB,
  4: RGBA), resized to its ``H × W`` when it differs (bilinear; a note says so), scaled to [0, 1].
- A ``.npy`` array: ``[C, H, W]`` for an image, ``[T, C, H, W]`` for a video (channels-last ``[H, W, C]`` /
  ``[T, H, W, C]`` are moved, with a note); 8-bit integers are divided by 255, floats must lie in [0, 1]. An array
  is never resized.

Every error is a `RecordError` naming the file.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ecglens.errors import RecordError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
ARRAY_SUFFIXES = (".npy",)
_MODES = {1: "L", 3: "RGB", 4: "RGBA"}


def is_vision_file(path: str | Path) -> bool:
    """Whether ``path`` names an image file or a ``.npy`` array (by its suffix)."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES + ARRAY_SUFFIXES


def read_input(path: str | Path, shape: Sequence[int]) -> tuple[np.ndarray, list[str]]:
    """``(x, notes)``: the file as float32 of ``shape`` (``[C, H, W]`` or ``[T, C, H, W]``) in [0, 1], and what
    was changed to get there (a resize, channels moved, 8-bit values scaled)."""
    path = Path(path)
    shape = tuple(int(s) for s in shape)
    if not path.exists():
        raise RecordError(str(path), "no such file")
    if path.is_dir():
        raise RecordError(str(path), "is a folder, not an image or array file")
    suffix = path.suffix.lower()
    if suffix in ARRAY_SUFFIXES:
        return _read_array(path, shape)
    if suffix in IMAGE_SUFFIXES:
        if len(shape) != 3:
            raise RecordError(
                str(path), f"a video classifier takes a .npy array {list(shape)} [T, C, H, W], not an image file"
            )
        return _read_image(path, shape)
    raise RecordError(str(path), f"not an image ({', '.join(IMAGE_SUFFIXES)}) or a .npy array")


def _read_image(path: Path, shape: tuple[int, ...]) -> tuple[np.ndarray, list[str]]:
    from PIL import Image, UnidentifiedImageError

    c, h, w = shape
    if c not in _MODES:
        raise RecordError(str(path), f"the classifier takes {c} channels; an image file gives 1, 3 or 4")
    try:
        with Image.open(path) as img:
            img.load()
            size = img.size
            img = img.convert(_MODES[c])
            notes = []
            if size != (w, h):
                img = img.resize((w, h), Image.BILINEAR)
                notes.append(f"resized from {size[0]} × {size[1]} to {w} × {h} px (the card's input_shape)")
            arr = np.asarray(img, dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise RecordError(str(path), f"unreadable image ({exc})") from None
    arr = arr[None] if arr.ndim == 2 else np.moveaxis(arr, -1, 0)
    return np.ascontiguousarray(arr, dtype=np.float32), notes


def _read_array(path: Path, shape: tuple[int, ...]) -> tuple[np.ndarray, list[str]]:
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise RecordError(str(path), f"unreadable .npy array ({exc})") from None
    notes: list[str] = []
    if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "fiub":
        raise RecordError(str(path), f"expected a numeric array, got dtype {getattr(arr, 'dtype', '?')}")
    if tuple(arr.shape) != shape and arr.ndim == len(shape):
        last = np.moveaxis(arr, -1, -3)  # channels-last to channels-first
        if tuple(last.shape) == shape:
            arr = last
            notes.append("channels moved from last to first")
    if tuple(arr.shape) != shape:
        dims = "[C, H, W]" if len(shape) == 3 else "[T, C, H, W]"
        raise RecordError(str(path), f"expected an array of shape {list(shape)} {dims}, got {list(arr.shape)}")
    if arr.dtype == np.uint8:
        arr = arr.astype(np.float32) / 255.0
        notes.append("8-bit values divided by 255")
    elif arr.dtype.kind != "f":
        raise RecordError(str(path), f"expected float values in [0, 1] or uint8, got dtype {arr.dtype}")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.isfinite(arr).all():
        raise RecordError(str(path), "holds NaN or infinite values")
    if arr.min() < -1e-4 or arr.max() > 1 + 1e-4:
        raise RecordError(str(path), f"values must lie in [0, 1], got [{arr.min():.4g}, {arr.max():.4g}]")
    return np.clip(arr, 0.0, 1.0), notes


def write_saliency_png(saliency: np.ndarray, path: str | Path) -> None:
    """A saliency map ``[H, W]`` (or ``[T, H, W]``: frames side by side) in [0, 1] as a grey PNG."""
    from PIL import Image

    s = np.asarray(saliency, dtype=np.float32)
    if s.ndim == 3:
        s = np.concatenate(list(s), axis=1)
    top = float(s.max()) if s.size and s.max() > 0 else 1.0
    Image.fromarray(np.round(np.clip(s / top, 0, 1) * 255).astype(np.uint8), "L").save(str(path))
