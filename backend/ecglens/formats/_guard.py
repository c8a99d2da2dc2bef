"""The promise every reader keeps: a malformed input raises `RecordError` naming the file, nothing else, and
what it returns is plausibly an ECG.

Readers raise `RecordError` themselves for what they check; the libraries under them (wfdb, pyedflib,
pydicom, numpy, the XML and JSON parsers) raise whatever they like on inputs nobody checked for. `guarded`
turns those into a `RecordError` that still names the file and the format it was being read as, and refuses
a decoded record that cannot be an ECG (`check_plausible`): a rate outside `MIN_FS_HZ`-`MAX_FS_HZ`, samples
beyond `MAX_SWING_MV` around their baseline or `MAX_ABS_MV` in all, lead names like "None".
"""

from __future__ import annotations

import functools
import unicodedata
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import numpy as np

from ecglens.errors import RecordError
from ecglens.formats._source import display_name

F = TypeVar("F", bound=Callable[..., Any])

_MAX_DETAIL = 300

# Plausibility of a decoded ECG. Diagnostic ECGs are sampled at 100-1000 Hz, Holters at 128-250, research
# systems up to 10-20 kHz; below 25 Hz not even the QRS complex is resolved.
MIN_FS_HZ = 25.0
MAX_FS_HZ = 20_000.0
# Body-surface ECG amplitudes are a few mV (QRS up to ~5 mV, pacing spikes ~10-20 mV) around a baseline:
# samples that swing further are in other units than the file says (µV taken as mV) or corrupt. The baseline
# itself may sit further out (electrode offsets of DC-coupled amplifiers reach a few hundred mV).
MAX_SWING_MV = 50.0
MAX_ABS_MV = 1000.0
_PLACEHOLDER_LEADS = frozenset({"none", "null", "nan", "undefined", "nil"})
_MEDIAN_SAMPLES = 1 << 18


def describe(exc: BaseException) -> str:
    """A short one-line account of a library exception (its message, else its type)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, MemoryError):
        text = "not enough memory to decode it"
    return text if len(text) <= _MAX_DETAIL else text[:_MAX_DETAIL] + "..."


def guarded(fmt: str) -> Callable[[F], F]:
    """Decorate a reader ``read_x(source, filename=None, ...)`` so that only `RecordError` escapes it."""

    def decorate(reader: F) -> F:
        @functools.wraps(reader)
        def wrapper(source: Any = None, filename: str | None = None, *args: Any, **kwargs: Any) -> Any:
            try:
                ecg = reader(source, filename, *args, **kwargs)
                check_plausible(
                    ecg, display_name(source, filename) if not isinstance(source, Mapping) else (filename or "<upload>")
                )
                return ecg
            except RecordError:
                raise
            except Exception as exc:  # noqa: BLE001 - the boundary: library errors become RecordError
                name = "<upload>" if isinstance(source, Mapping) and not filename else display_name(source, filename)
                raise RecordError(name, f"not a readable {fmt} file: {describe(exc)}") from exc

        return wrapper  # type: ignore[return-value]

    return decorate


def check_plausible(ecg: Any, name: str) -> None:
    """Refuse a decoded record that cannot be an ECG: its rate, amplitudes and lead names.

    Raises
    ------
    RecordError
        ``fs`` outside [`MIN_FS_HZ`, `MAX_FS_HZ`]; a lead whose samples pass `MAX_ABS_MV` or swing more than
        `MAX_SWING_MV` around their median (the message says when the file gave no units); a lead
        named like a missing value ("None", "nan", ...) or holding control characters.
    """
    fs = float(ecg.fs)
    if not MIN_FS_HZ <= fs <= MAX_FS_HZ:
        raise RecordError(
            name, f"sampling rate {fs:g} Hz is implausible for an ECG (accepted: {MIN_FS_HZ:g}-{MAX_FS_HZ:g} Hz)"
        )
    for lead in ecg.leads:
        text = str(lead)
        if text.strip().lower() in _PLACEHOLDER_LEADS:
            raise RecordError(
                name,
                f"lead name {text!r} is a placeholder, not a lead: the file does not say which lead this channel is",
            )
        if any(unicodedata.category(ch) in ("Cc", "Cf") for ch in text):
            raise RecordError(name, f"lead name {text[:40]!r} holds control characters")
    signal = np.asarray(ecg.signal)
    assumed = (getattr(ecg, "metadata", None) or {}).get("assumed_units") or {}
    for i, lead in enumerate(ecg.leads):
        row = signal[i]
        if row.size == 0:
            continue
        step = -(-row.size // _MEDIAN_SAMPLES)  # median of at most _MEDIAN_SAMPLES (it sorts a copy)
        baseline = float(np.median(row[::step]))
        top, bottom = float(np.max(row)), float(np.min(row))  # no |row| copy of a long lead
        peak = max(top, -bottom)
        swing = max(top - baseline, baseline - bottom)
        units = (
            "no units given, taken as mV: if they are µV or another unit, say so in the file"
            if lead in assumed
            else "after conversion to mV"
        )
        if peak > MAX_ABS_MV:
            raise RecordError(
                name, f"lead {lead}: samples reach {peak:.3g} mV ({units}); an ECG stays within {MAX_ABS_MV:g} mV"
            )
        if swing > MAX_SWING_MV:
            raise RecordError(
                name,
                f"lead {lead}: samples swing {swing:.3g} mV around their baseline ({units}); "
                f"an ECG stays within {MAX_SWING_MV:g} mV",
            )
