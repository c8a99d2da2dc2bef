"""Clinical basics measured on the ECG itself: heart rate and the RR, PR, QRS, QT and QTc intervals, and the
beats of a strip with their waves (so an explanation can say which part of which beat a segment covers).

Delineation is neurokit2's (``ecg_clean``, ``ecg_peaks``, ``ecg_delineate`` with the discrete wavelet method)
on one lead: II when the record has it, else MLII, I, V5, else its first lead. Each interval is the median
over beats of the values in a physiological range (PR 60-400 ms, QRS 40-250 ms, QT 200-700 ms; a value outside
is a delineation miss, not a finding), reported when at least `MIN_BEATS` beats give one. QTc is Bazett's
(QT / sqrt(RR in s)) of the median QT and median RR. A long record is measured on its first `WINDOW_S` seconds.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

WINDOW_S = 30.0
MIN_BEATS = 3
PREFERRED_LEADS = ("II", "MLII", "I", "V5", "V2")
# Plausible ranges (ms): a delineated value outside one is dropped before the median.
RANGES_MS = {"PR": (60.0, 400.0), "QRS": (40.0, 250.0), "QT": (200.0, 700.0)}
# A beat is premature when its RR is below this share of the strip's median RR; its QRS is wide from 120 ms and
# 30 ms above the strip's median QRS.
PREMATURE_SHARE = 0.8
WIDE_QRS_MS = 120.0
WIDER_BY_MS = 30.0
METHOD = "neurokit2 ecg_peaks + ecg_delineate (dwt)"


@dataclass
class Beat:
    """One delineated beat; times in seconds from the record's start, None where the wave was not found."""

    r_s: float
    qrs_on_s: float | None
    qrs_off_s: float | None
    p_on_s: float | None
    p_off_s: float | None
    t_off_s: float | None
    rr_before_s: float | None
    premature: bool
    wide: bool

    def to_dict(self) -> dict[str, Any]:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def measuring_lead(leads: Sequence[str]) -> int:
    """Row of the lead the basics are measured on (see the module docstring)."""
    for name in PREFERRED_LEADS:
        if name in leads:
            return list(leads).index(name)
    return 0


def delineate(signal: np.ndarray, fs: float, offset_s: float = 0.0) -> list[Beat]:
    """The beats of a one-lead strip (mV), times shifted by ``offset_s``; empty when none can be found."""
    import neurokit2 as nk

    x = np.asarray(signal, dtype=np.float64)
    if x.ndim != 1 or len(x) < int(2 * fs) or not np.all(np.isfinite(x)) or np.ptp(x) <= 0:
        return []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            clean = nk.ecg_clean(x, sampling_rate=fs)
            _, info = nk.ecg_peaks(clean, sampling_rate=fs)
            peaks = np.asarray(info["ECG_R_Peaks"], dtype=np.int64)
            if len(peaks) < 2:
                return []
            _, waves = nk.ecg_delineate(clean, info, sampling_rate=fs, method="dwt")
    except Exception as exc:  # noqa: BLE001 - neurokit2 raises many kinds on odd strips; no basics then
        log.info("delineation failed: %s", type(exc).__name__)
        return []

    def wave(key: str) -> list[float | None]:
        values = list(waves.get(key) or [])
        values += [None] * (len(peaks) - len(values))
        return [None if v is None or not np.isfinite(v) else offset_s + float(v) / fs for v in values[: len(peaks)]]

    r = offset_s + peaks / fs
    rr = np.diff(r)
    median_rr = float(np.median(rr)) if len(rr) else None
    qrs_on, qrs_off = wave("ECG_R_Onsets"), wave("ECG_R_Offsets")
    p_on, p_off, t_off = wave("ECG_P_Onsets"), wave("ECG_P_Offsets"), wave("ECG_T_Offsets")
    widths = [(b - a) * 1000 if a is not None and b is not None else None for a, b in zip(qrs_on, qrs_off)]
    plausible = [w for w in widths if w is not None and RANGES_MS["QRS"][0] <= w <= RANGES_MS["QRS"][1]]
    typical = float(np.median(plausible)) if plausible else None
    beats = []
    for i, t in enumerate(r):
        before = float(rr[i - 1]) if i > 0 else None
        width = widths[i]
        # Wide: from 120 ms and clearly wider than the strip's typical beat (a wide beat among narrow ones; when
        # every beat is wide, the QRS interval says so, not the beat).
        wide = bool(
            width is not None
            and typical is not None
            and WIDE_QRS_MS <= width <= RANGES_MS["QRS"][1]
            and width >= typical + WIDER_BY_MS
        )
        beats.append(
            Beat(
                r_s=float(t),
                qrs_on_s=qrs_on[i],
                qrs_off_s=qrs_off[i],
                p_on_s=p_on[i],
                p_off_s=p_off[i],
                t_off_s=t_off[i],
                rr_before_s=before,
                premature=bool(before is not None and median_rr and before < PREMATURE_SHARE * median_rr),
                wide=wide,
            )
        )
    return beats


def _median_ms(values: list[float], name: str) -> float | None:
    lo, hi = RANGES_MS[name]
    kept = [v for v in values if lo <= v <= hi]
    return round(float(np.median(kept)), 1) if len(kept) >= MIN_BEATS else None


def intervals(beats: Sequence[Beat]) -> tuple[float | None, dict[str, float | None]]:
    """``(heart rate in bpm, {"RR", "PR", "QRS", "QT", "QTc"} in ms)`` of delineated beats (None: not measured)."""
    rr = [b.rr_before_s for b in beats if b.rr_before_s is not None]
    out: dict[str, float | None] = {"RR": None, "PR": None, "QRS": None, "QT": None, "QTc": None}
    if len(rr) < MIN_BEATS - 1:
        return None, out
    out["RR"] = round(1000 * float(np.median(rr)), 1)
    rate = round(60.0 / float(np.mean(rr)), 1)
    out["PR"] = _median_ms(
        [1000 * (b.qrs_on_s - b.p_on_s) for b in beats if b.p_on_s is not None and b.qrs_on_s is not None], "PR"
    )
    out["QRS"] = _median_ms(
        [1000 * (b.qrs_off_s - b.qrs_on_s) for b in beats if b.qrs_on_s is not None and b.qrs_off_s is not None], "QRS"
    )
    out["QT"] = _median_ms(
        [1000 * (b.t_off_s - b.qrs_on_s) for b in beats if b.t_off_s is not None and b.qrs_on_s is not None], "QT"
    )
    if out["QT"] is not None:
        out["QTc"] = round(out["QT"] / math.sqrt(out["RR"] / 1000.0), 1)
    return rate, out


def clinical_basics(
    signal: np.ndarray, fs: float, leads: Sequence[str], *, start_s: float = 0.0, window_s: float = WINDOW_S
) -> dict[str, Any]:
    """Heart rate and intervals of a record (``[leads, samples]`` in mV) over ``window_s`` from ``start_s``.

    Returns ``{"heart_rate_bpm", "intervals_ms": {"RR", "PR", "QRS", "QT", "QTc"}, "lead", "start_s", "end_s",
    "beats", "qtc_formula", "method"}``; values that could not be measured are None.
    """
    x = np.asarray(signal)
    row = measuring_lead(leads)
    a = max(0, int(round(start_s * fs)))
    b = min(x.shape[1], a + int(round(window_s * fs)))
    beats = delineate(np.asarray(x[row, a:b], dtype=np.float64), fs, offset_s=a / fs)
    rate, values = intervals(beats)
    return {
        "heart_rate_bpm": rate,
        "intervals_ms": values,
        "lead": str(leads[row]) if len(leads) else None,
        "start_s": round(a / fs, 3),
        "end_s": round(b / fs, 3),
        "beats": len(beats),
        "qtc_formula": "Bazett",
        "method": METHOD,
    }


def cached_basics(
    cache_dir: Path, record_id: str, signal: np.ndarray, fs: float, leads: Sequence[str]
) -> dict[str, Any]:
    """`clinical_basics` of a stored record, kept beside its signal cache (``<id>.basics.json``) after the
    first call: delineating a minute of ECG takes about a second. Concurrent first calls for one record in a
    process compute it once, the others wait for it (64 clients opening a fresh record each delineated it:
    the reads' p95 was 13 s in benchmarks/service_load.py)."""
    path = Path(cache_dir) / f"{record_id}.basics.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        pass
    with _computing_lock:
        lock, waiters = _computing.get(record_id, (threading.Lock(), 0))
        _computing[record_id] = (lock, waiters + 1)
    try:
        with lock:
            try:
                return json.loads(path.read_text())  # computed while this call waited
            except (OSError, ValueError):
                pass
            return _compute_and_store(path, record_id, signal, fs, leads)
    finally:
        with _computing_lock:
            lock, waiters = _computing[record_id]
            if waiters <= 1:
                del _computing[record_id]
            else:
                _computing[record_id] = (lock, waiters - 1)


_computing: dict[str, tuple[threading.Lock, int]] = {}
_computing_lock = threading.Lock()


def _compute_and_store(
    path: Path, record_id: str, signal: np.ndarray, fs: float, leads: Sequence[str]
) -> dict[str, Any]:
    basics = clinical_basics(signal, fs, leads)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")  # another process may write too
        tmp.write_text(json.dumps(basics))
        tmp.replace(path)
    except OSError:
        log.warning("record %s: clinical basics not cached", record_id)
    return basics
