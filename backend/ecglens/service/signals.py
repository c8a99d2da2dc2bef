"""Signals for display and for jobs: the decoded-signal cache and min/max decimation.

A record's decoded float32 ``[leads, samples]`` signal is cached as ``cache/<record id>.npy`` at upload (derived
from the blobs, rebuilt from them when missing) and memory-mapped on read, so a window of a 30-minute record is
served without decoding the whole file again.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ecglens.ecg import Ecg
from ecglens.service.blobs import BlobStore
from ecglens.service.db import Record
from ecglens.service.uploads import RecordGroup, UploadFile, read_group


def load_ecg(record: Record, blobs: BlobStore) -> Ecg:
    """Read a stored record back from its blobs (the first file is the one the reader was given)."""
    files = [UploadFile(f["filename"], blobs.get(f["sha256"])) for f in record.files]
    return read_group(RecordGroup(files[0], files[1:]))


def cache_path(cache_dir: Path, record_id: str) -> Path:
    return Path(cache_dir) / f"{record_id}.npy"


def write_cache(cache_dir: Path, record_id: str, signal: np.ndarray) -> None:
    """Save the decoded signal as float32 ``.npy`` (written aside, then renamed into place)."""
    path = cache_path(cache_dir, record_id)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(".tmp.npy")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # decoded health data: this user only
    with os.fdopen(fd, "wb") as fh:
        np.save(fh, np.asarray(signal, dtype=np.float32))
    tmp.replace(path)


def cached_signal(record: Record, blobs: BlobStore, cache_dir: Path) -> np.ndarray:
    """The record's float32 ``[leads, samples]`` signal in mV, memory-mapped from the cache (rebuilt if absent)."""
    path = cache_path(cache_dir, record.id)
    if not path.exists():
        write_cache(cache_dir, record.id, load_ecg(record, blobs).signal)
    return np.load(path, mmap_mode="r")


def minmax_decimate(values: np.ndarray, max_points: int) -> tuple[np.ndarray, np.ndarray]:
    """Reduce rows of samples to at most ``max_points`` per row, keeping each bucket's min and max.

    Parameters
    ----------
    values : np.ndarray
        ``[leads, samples]``.
    max_points : int
        Most points per lead (at least 2). Each bucket of ``ceil(2 * samples / max_points)`` samples gives its
        minimum and maximum in time order, so spikes (QRS peaks, pacing) survive the reduction.

    Returns
    -------
    idx : np.ndarray
        int ``[leads, points]`` sample index of each kept point.
    out : np.ndarray
        float32 ``[leads, points]``, the kept values.
    """
    leads, n = values.shape
    if n <= max_points:
        idx = np.broadcast_to(np.arange(n), (leads, n))
        return np.array(idx), np.asarray(values, dtype=np.float32)
    buckets = max(1, max_points // 2)
    size = int(np.ceil(n / buckets))
    pad = buckets * size - n
    padded = np.asarray(values, dtype=np.float32)
    if pad:  # repeat the last sample so the last bucket's min/max are real values
        padded = np.concatenate([padded, np.repeat(padded[:, -1:], pad, axis=1)], axis=1)
    blocks = padded.reshape(leads, buckets, size)
    lo, hi = blocks.argmin(axis=2), blocks.argmax(axis=2)
    first, second = np.minimum(lo, hi), np.maximum(lo, hi)
    base = (np.arange(buckets) * size)[None, :]
    idx = np.stack([base + first, base + second], axis=2).reshape(leads, -1)
    idx = np.minimum(idx, n - 1)
    out = np.take_along_axis(padded, idx, axis=1)
    return idx, out.astype(np.float32)
