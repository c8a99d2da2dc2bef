"""Shared last step of every reader: checked channels in physical units -> a validated `Ecg` in mV.

Each reader decodes its format into a list of 1-D channels, a sampling rate, channel labels and the units each
channel is in; `build_ecg` then applies the checks all formats share (size limits, equal lengths, finite values,
missing samples), converts to millivolts, canonicalises lead names and assembles the metadata, so that the rules
are enforced in one place.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from ecglens.ecg import STANDARD_12, Ecg, normalize_lead
from ecglens.errors import RecordError

MAX_FS_HZ = 20_000.0  # above this a "sampling rate" is a header error, not an ECG
MAX_LEADS = 64
MAX_DURATION_S = 48 * 3600.0  # two days of Holter
MAX_VALUES = 200_000_000  # leads x samples held in memory (800 MB as float32)
MAX_MISSING_FRACTION = 0.5  # more missing than this in one lead and the lead is not worth interpolating

_KNOWN_LEADS = frozenset(normalize_lead(n) for n in STANDARD_12 + ("MLI", "MLII", "MLIII", "V", "X", "Y", "Z"))

# Units -> factor to millivolts. Keys are lower-cased with micro signs folded to "u".
_TO_MV = {
    "mv": 1.0,
    "millivolt": 1.0,
    "millivolts": 1.0,
    "uv": 1e-3,
    "microvolt": 1e-3,
    "microvolts": 1e-3,
    "mcv": 1e-3,
    "v": 1e3,
    "volt": 1e3,
    "volts": 1e3,
    "nv": 1e-6,
    "nanovolt": 1e-6,
    "nanovolts": 1e-6,
}


def unit_to_mv(unit: str | None) -> float | None:
    """Factor that turns values in ``unit`` into mV (``"uV"`` -> 0.001), or None when ``unit`` is not a voltage.

    Micro signs (``µV``, ``μV``) and case are folded; an empty unit is not decided here (see `build_ecg`).
    """
    key = str(unit or "").strip().replace("\u00b5", "u").replace("\u03bc", "u").lower()
    key = key.strip("[]() ")
    return _TO_MV.get(key)


def lead_label(raw: str, index: int) -> str:
    """Canonical lead name for a channel label (``"ECG II"`` -> ``"II"``, ``"v1"`` -> ``"V1"``).

    EDF-style type prefixes (``ECG``, ``EKG``) are dropped only when what remains is a known lead named in
    letters (``"ECG 1"`` stays as it is: it numbers a channel); unknown
    labels are kept as written; an empty label becomes ``"ch<index + 1>"``.
    """
    text = str(raw).strip()
    if not text:
        return f"ch{index + 1}"
    name = normalize_lead(text)
    if name in _KNOWN_LEADS:
        return name
    bare = re.sub(r"^(ecg|ekg)[\s_\-:.]*", "", text, flags=re.IGNORECASE)
    # "ECG 1" is channel one, not lead I: only names survive the prefix, never bare numbers.
    if bare and not bare.isdigit() and normalize_lead(bare) in _KNOWN_LEADS:
        return normalize_lead(bare)
    return name


def _unique(names: Sequence[str]) -> list[str]:
    """Names made unique by suffixing ``#2``, ``#3``... so that `Ecg.lead_index` is never ambiguous."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name}#{seen[name]}")
    return out


class LazyChannel:
    """A channel decoded only when `build_ecg` converts it, straight into its row of the result: a reader that
    can decode one channel at a time (e.g. from a view into the uploaded bytes) hands these over, so that the
    channels are never held decoded beside the result. ``size`` is the channel's length; ``load(out)`` fills
    the float32 array ``out`` (``size`` samples, NaN where one is missing) and returns it."""

    def __init__(self, size: int, load: Callable[[np.ndarray], np.ndarray]):
        self.size, self._load = int(size), load

    def load(self, out: np.ndarray) -> np.ndarray:
        return np.asarray(self._load(out))


def _channel_size(channel: Any) -> int:
    return channel.size if isinstance(channel, LazyChannel) else int(np.asarray(channel).size)


def check_fs(fs: Any, filename: str) -> float:
    """``fs`` as a float in (0, `MAX_FS_HZ`] Hz, else a `RecordError`."""
    try:
        value = float(fs)
    except (TypeError, ValueError, OverflowError):
        raise RecordError(filename, f"sampling rate {fs!r} is not a number") from None
    if isinstance(fs, bool) or not np.isfinite(value) or value <= 0:
        raise RecordError(filename, f"sampling rate must be a positive number of Hz, got {fs!r}")
    if value > MAX_FS_HZ:
        raise RecordError(filename, f"sampling rate {value:g} Hz is implausible (limit {MAX_FS_HZ:g} Hz)")
    return value


def check_size(filename: str, n_leads: int, n_samples: int, fs: float) -> None:
    """Refuse a record by its declared size before its samples are decoded.

    Raises `RecordError` for no channels, more than `MAX_LEADS`, no samples, more than `MAX_DURATION_S`
    seconds, or more than `MAX_VALUES` values in all.
    """
    if n_leads < 1:
        raise RecordError(filename, "no signal channels")
    if n_leads > MAX_LEADS:
        raise RecordError(filename, f"{n_leads} channels (limit {MAX_LEADS})")
    if n_samples < 1:
        raise RecordError(filename, "no samples (empty signal)")
    duration = n_samples / fs
    if duration > MAX_DURATION_S:
        raise RecordError(
            filename, f"duration {duration / 3600:.1f} h is implausible (limit {MAX_DURATION_S / 3600:g} h)"
        )
    if n_leads * n_samples > MAX_VALUES:
        raise RecordError(filename, f"record too large: {n_leads} x {n_samples} samples (limit {MAX_VALUES:,} values)")


def fill_missing(x: np.ndarray, label: str, filename: str) -> tuple[np.ndarray, int]:
    """Linearly interpolate NaN samples of one channel; infinities are a `RecordError`.

    Parameters
    ----------
    x : np.ndarray
        1-D channel, float.
    label, filename : str
        For error messages.

    Returns
    -------
    (filled, n_missing) : the channel with NaNs replaced (edges held at the nearest valid value) and how many
    samples were filled. More than `MAX_MISSING_FRACTION` missing, or none valid, is a `RecordError`.
    """
    x = np.asarray(x)
    if x.dtype not in (np.float32, np.float64):  # integers and others: float64; float32 stays (half the memory)
        x = x.astype(np.float64)
    if np.isfinite(x).all():  # the common case: one pass, one mask
        return x, 0
    if np.isinf(x).any():
        at = int(np.flatnonzero(np.isinf(x))[0])
        raise RecordError(filename, f"lead {label}: sample {at} is infinite")
    missing = np.isnan(x)
    n_missing = int(missing.sum())
    if n_missing == 0:
        return x, 0
    if n_missing == x.size:
        raise RecordError(filename, f"lead {label}: every sample is missing")
    if n_missing > MAX_MISSING_FRACTION * x.size:
        raise RecordError(
            filename,
            f"lead {label}: {n_missing} of {x.size} samples are missing (more than {MAX_MISSING_FRACTION:.0%})",
        )
    good = np.flatnonzero(~missing)
    filled = x.copy()
    filled[missing] = np.interp(np.flatnonzero(missing), good, x[good])
    return filled, n_missing


def build_ecg(
    channels: Sequence[np.ndarray],
    fs: Any,
    labels: Sequence[str],
    units: Sequence[str | None],
    *,
    filename: str,
    fmt: str,
    name: str = "",
    metadata: Mapping[str, Any] | None = None,
    drop_non_voltage: bool = False,
) -> Ecg:
    """Validate decoded channels and return an `Ecg` in mV.

    Parameters
    ----------
    channels : sequence of np.ndarray or LazyChannel
        One 1-D array per channel (or a `LazyChannel` decoding it on demand), in the channel's own units, all
        sampled at ``fs``. NaN marks a missing
        sample (interpolated, counted in ``metadata["missing_samples"]``); infinities are refused.
    fs : float
        Sampling rate in Hz, in (0, 20000].
    labels : sequence of str
        Channel labels as the file spells them; canonicalised by `lead_label` and made unique.
    units : sequence of str or None
        Units per channel (``"mV"``, ``"uV"``, ``"V"``...). An empty unit is taken as mV and listed in
        ``metadata["assumed_units"]``.
    filename : str
        Named in every error.
    fmt : str
        Format name for ``metadata["format"]``.
    name : str
        Record name. Default: "".
    metadata : mapping, optional
        Header fields the reader found; ``format``, ``record_name`` and ``original_units`` are added.
    drop_non_voltage : bool
        Drop channels whose units are not a voltage (blood pressure, respiration...) and list them in
        ``metadata["dropped_channels"]`` instead of refusing the record. Default: False (refuse).

    Returns
    -------
    Ecg with ``signal`` float32 ``[leads, samples]`` in mV.
    """
    meta: dict[str, Any] = dict(metadata or {})
    fs = check_fs(fs, filename)
    if len(labels) != len(channels) or len(units) != len(channels):
        raise RecordError(filename, f"{len(channels)} channels but {len(labels)} labels and {len(units)} units")
    lengths = [_channel_size(c) for c in channels]
    check_size(filename, len(channels), max(lengths, default=0), fs)
    if len(set(lengths)) > 1:
        detail = ", ".join(f"{lab or i + 1}: {n}" for i, (lab, n) in enumerate(zip(labels, lengths)))
        raise RecordError(filename, f"channels have different lengths ({detail})")

    names = [lead_label(lab, i) for i, lab in enumerate(labels)]
    keep, scales, dropped, assumed = [], [], [], []
    for i, (label, unit) in enumerate(zip(names, units)):
        unit_text = str(unit or "").strip()
        if not unit_text:
            keep.append(i)
            scales.append(1.0)
            assumed.append(i)
            continue
        scale = unit_to_mv(unit_text)
        if scale is None:
            if not drop_non_voltage:
                raise RecordError(filename, f"lead {label}: unknown units {unit_text!r} (expected mV, uV or V)")
            dropped.append(f"{labels[i]} ({unit_text})")
            continue
        keep.append(i)
        scales.append(scale)
    if not keep:
        raise RecordError(filename, f"no voltage channels (units: {', '.join(map(str, units))})")

    # The result is filled lead by lead: no list of converted rows beside it, no stacked copy.
    signal = np.empty((len(keep), lengths[0]), dtype=np.float32)
    missing: dict[str, int] = {}
    kept_names = _unique([names[i] for i in keep])
    for row, (i, lead, scale) in enumerate(zip(keep, kept_names, scales)):
        channel = channels[i]
        x = channel.load(signal[row]) if isinstance(channel, LazyChannel) else np.asarray(channel)
        if x.ndim != 1:
            x = x.reshape(-1)
        if x.size != lengths[0]:
            raise RecordError(filename, f"lead {lead}: {x.size} samples decoded, {lengths[0]} declared")
        if not np.issubdtype(x.dtype, np.number):
            raise RecordError(filename, f"lead {lead}: samples are not numbers")
        x, n_missing = fill_missing(x, lead, filename)
        if n_missing:
            missing[lead] = n_missing
        with np.errstate(over="ignore", invalid="ignore"):  # overflow is reported below, as a RecordError
            if scale == 1.0:
                if not np.shares_memory(x, signal[row]):  # a lazy channel decoded in place is there already
                    signal[row] = x
            else:
                np.multiply(x, scale, out=signal[row], casting="unsafe")
        del x
        if not np.isfinite(signal[row]).all():
            raise RecordError(filename, f"lead {lead}: values too large for float32 after conversion to mV")

    meta["format"] = fmt
    meta.setdefault("record_name", name)
    meta["original_units"] = {lead: str(units[i] or "mV") for i, lead in zip(keep, kept_names)}
    if missing:
        meta["missing_samples"] = missing
        meta["missing_filled_by"] = "linear interpolation"
    if dropped:
        meta["dropped_channels"] = dropped
    if assumed:
        meta["assumed_units"] = {kept_names[keep.index(i)]: "mV" for i in assumed}
    return Ecg(signal=signal, fs=fs, leads=tuple(kept_names), metadata=meta, name=name, units="mV")
