"""EDF, EDF+ and BDF files (European Data Format), decoded by pyedflib.

Units come from each signal's physical dimension (``uV``, ``mV``, ``V``); channels in other units (``degC``,
``%``) are dropped and listed in the metadata; channels at lower rates are resampled to the highest one;
EDF+ annotations go to ``metadata["annotations"]``. Headers with bytes outside printable ASCII (the EDF spec
forbids them, yet ``µV`` written as Latin-1 is common) are repaired before pyedflib, which refuses them, sees
them; patient names and birth dates are not copied into the metadata.
"""

from __future__ import annotations

import tempfile
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
from scipy.signal import resample_poly

from ecglens.ecg import Ecg
from ecglens.errors import RecordError
from ecglens.formats._build import MAX_LEADS, LazyChannel, build_ecg, check_fs, check_size, unit_to_mv
from ecglens.formats._guard import guarded
from ecglens.formats._header import parse_sex
from ecglens.formats._source import read_bytes, record_stem
from ecglens.formats.mapped import chunks

EDF_MAGIC = b"0       "
BDF_MAGIC = b"\xffBIOSEMI"
MAX_ANNOTATIONS = 10_000


def is_edf(data: bytes) -> bool:
    """True for bytes that start like an EDF/EDF+ or BDF header."""
    return len(data) >= 256 and (data[:8] == EDF_MAGIC or data[:8] == BDF_MAGIC) and data[252:256].strip().isdigit()


def _repair_header(data: bytes, filename: str) -> tuple[bytes, bool]:
    """The file's header (its first ``256 * (signals + 1)`` bytes) made printable ASCII: in the units fields
    micro signs become ``u`` and degree signs ``deg``; any other byte outside printable ASCII becomes ``?``.
    Returns the header and whether it changed; the samples after it are left where they are (no copy)."""
    if len(data) < 256:
        raise RecordError(filename, f"EDF header needs 256 bytes, file has {len(data)}")
    field = data[252:256].strip()
    if not field.isdigit():
        raise RecordError(filename, f"EDF header: number of signals {field.decode('latin-1')!r} is not a number")
    n_signals = int(field)
    if n_signals > MAX_LEADS + 1:  # + the EDF+ annotation channel
        raise RecordError(filename, f"EDF header declares {n_signals} signals (limit {MAX_LEADS})")
    size = 256 * (n_signals + 1)
    if len(data) < size:
        raise RecordError(
            filename, f"EDF header is truncated: {n_signals} signals need {size} header bytes, file has {len(data)}"
        )
    header = bytearray(data[:size])
    start = 256 + n_signals * 96  # label (16) + transducer (80) come first
    for i in range(n_signals):
        a, b = start + 8 * i, start + 8 * (i + 1)
        raw = bytes(header[a:b])
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("latin-1")
        text = text.replace("\u00b5", "u").replace("\u03bc", "u").replace("\u00b0", "deg").strip()
        header[a:b] = text.encode("ascii", errors="replace").ljust(8)[:8]
    first = 8 if header[:8] == BDF_MAGIC else 0  # BDF's magic byte 0xFF is part of its format
    for i in range(first, size):
        if not 32 <= header[i] <= 126:
            header[i] = ord("?")
    repaired = bytes(header)
    return repaired, repaired != data[:size]


@guarded("EDF")
def read_edf(source: Any, filename: str | None = None) -> Ecg:
    """Read an EDF / EDF+ / BDF file into an `Ecg` (float32 ``[leads, samples]`` in mV).

    Parameters
    ----------
    source : path, bytes or binary file object
        The file.
    filename : str, optional
        Upload name when ``source`` is bytes. Default: the path, or ``"<bytes>"``.

    Returns
    -------
    Ecg
        ``fs`` is the highest rate among the voltage channels, in Hz. ``metadata``: ``format="EDF"``,
        ``date``, ``time``, ``sex`` (when the EDF+ patient field has it), ``equipment``, ``annotations``
        (list of ``{"onset_s", "duration_s", "text"}``), ``original_units``, ``dropped_channels``,
        ``resampled_channels``, ``header_repaired``.
    """
    import pyedflib

    display, data, _ = read_bytes(source, filename, keep_map=True)
    if not is_edf(data):
        raise RecordError(display, "not an EDF/BDF file (an EDF header starts with '0' and 7 spaces)")
    header, repaired = _repair_header(data, display)
    suffix = ".bdf" if header[:8] == BDF_MAGIC else ".edf"
    with tempfile.TemporaryDirectory(prefix="ecglens-edf-") as folder:
        path = Path(folder, "record" + suffix)
        # pyedflib reads a path: the repaired header, then the samples straight from the upload (a map is
        # written block by block, its pages released), never a repaired copy of the whole file in memory.
        with open(path, "wb") as fh:
            fh.write(header)
            for piece in chunks(data, start=len(header)):
                fh.write(piece)
        try:
            reader = pyedflib.EdfReader(str(path))
        except OSError as exc:
            reason = str(exc).replace(str(path), "").strip(" :")
            raise RecordError(display, f"not a readable EDF file: {reason}") from None
        try:
            return _read_open(reader, display, repaired)
        finally:
            reader.close()


def _read_open(reader: Any, display: str, repaired: bool) -> Ecg:
    n = int(reader.signals_in_file)
    annotations = _annotations(reader)
    if n == 0:
        raise RecordError(display, f"no signal channels (the file holds only {len(annotations)} annotations)")
    labels = [str(x) for x in reader.getSignalLabels()]
    units = [str(reader.getPhysicalDimension(i)).strip() for i in range(n)]
    rates = [float(reader.getSampleFrequency(i)) for i in range(n)]
    keep = [i for i in range(n) if not units[i] or unit_to_mv(units[i]) is not None]
    dropped = [f"{labels[i]} ({units[i]})" for i in range(n) if i not in keep]
    if not keep:
        raise RecordError(display, f"no voltage channels (units: {', '.join(units)})")
    for i in keep:
        check_fs(rates[i], display)
    top = max(rates[i] for i in keep)
    n_out = max(int(round(reader.getNSamples()[i] * top / rates[i])) for i in keep)
    check_size(display, len(keep), n_out, top)

    channels: list[Any] = []
    resampled: dict[str, str] = {}
    lengths = {int(reader.getNSamples()[i]) for i in keep}
    if len(lengths) == 1 and all(rates[i] == top for i in keep):
        # One rate, one length: each channel is read when build_ecg fills its row (one float64 channel at a time
        # beside the float32 result, not every channel in float64 first).
        length = lengths.pop()
        channels = [LazyChannel(length, lambda out, i=i: _read_into(reader, i, out)) for i in keep]
    for i in keep if not channels else ():
        x = np.asarray(reader.readSignal(i), dtype=np.float64)
        if rates[i] != top:
            ratio = Fraction(top / rates[i]).limit_denominator(1000)
            x = resample_poly(x, ratio.numerator, ratio.denominator)
            resampled[labels[i]] = f"{rates[i]:g} Hz -> {top:g} Hz"
        channels.append(x)
    # Rounding in the rate ratio may leave a sample more or less: trim to the shortest.
    shortest = min(x.size if isinstance(x, LazyChannel) else len(x) for x in channels)
    channels = [x if isinstance(x, LazyChannel) else x[:shortest] for x in channels]

    meta: dict[str, Any] = {"source_files": [display.replace("\\", "/").rsplit("/", 1)[-1]]}
    try:
        start = reader.getStartdatetime()
        meta["date"], meta["time"] = start.date().isoformat(), start.time().isoformat()
    except (ValueError, OSError, AttributeError):
        pass
    header = _safe_header(reader)
    sex = parse_sex(header.get("sex") or header.get("gender") or "")
    if sex:
        meta["sex"] = sex
    if header.get("equipment"):
        meta["equipment"] = str(header["equipment"]).strip()
    if annotations:
        meta["annotations"] = annotations
    if dropped:
        meta["dropped_channels"] = dropped
    if resampled:
        meta["resampled_channels"] = resampled
    if repaired:
        meta["header_repaired"] = True
    return build_ecg(
        channels,
        top,
        [labels[i] for i in keep],
        [units[i] for i in keep],
        filename=display,
        fmt="EDF",
        name=record_stem(display),
        metadata=meta,
    )


def _read_into(reader: Any, i: int, out: np.ndarray) -> np.ndarray:
    x = np.asarray(reader.readSignal(i))
    if x.size != out.size:
        return x  # build_ecg names the mismatch
    out[:] = x
    return out


def _safe_header(reader: Any) -> dict[str, Any]:
    try:
        return dict(reader.getHeader())
    except (ValueError, OSError, UnicodeDecodeError):
        return {}


def _annotations(reader: Any) -> list[dict[str, Any]]:
    try:
        onsets, durations, texts = reader.readAnnotations()
    except (ValueError, OSError, UnicodeDecodeError):
        return []
    out = []
    for onset, duration, text in list(zip(onsets, durations, texts))[:MAX_ANNOTATIONS]:
        out.append(
            {"onset_s": float(onset), "duration_s": float(duration) if duration >= 0 else None, "text": str(text)}
        )
    return out


def write_edf(ecg: Ecg, path: str | Path | None = None) -> bytes:
    """Write ``ecg`` as an EDF+ file (physical dimension ``uV``, 16-bit samples) and return its bytes.

    EDF stores whole data records (1 s here): a record that does not last a whole number of seconds is padded
    to the next second with each lead's last value.

    Parameters
    ----------
    ecg : Ecg
        The record; each lead's physical range is its own min/max (a flat lead gets +-1 uV).
    path : path, optional
        Where to write the file as well. Default: None (only return the bytes).
    """
    import pyedflib

    signal_uv = ecg.signal.astype(np.float64) * 1000.0
    per_record = int(round(ecg.fs))
    if abs(ecg.fs - per_record) < 1e-9 and signal_uv.shape[1] % per_record:
        # EDF holds whole 1-s data records: pad the last one with each lead's last value, not zeros.
        pad = per_record - signal_uv.shape[1] % per_record
        signal_uv = np.pad(signal_uv, ((0, 0), (0, pad)), mode="edge")
    with tempfile.TemporaryDirectory(prefix="ecglens-edf-") as folder:
        target = Path(folder, "record.edf")
        writer = pyedflib.EdfWriter(str(target), ecg.n_leads, file_type=pyedflib.FILETYPE_EDFPLUS)
        try:
            headers = []
            for lead, row in zip(ecg.leads, signal_uv):
                low, high = float(np.floor(row.min())) - 1.0, float(np.ceil(row.max())) + 1.0
                headers.append(
                    {
                        "label": f"ECG {lead}"[:16],
                        "dimension": "uV",
                        "sample_frequency": ecg.fs,
                        "physical_min": low,
                        "physical_max": high,
                        "digital_min": -32768,
                        "digital_max": 32767,
                        "transducer": "",
                        "prefilter": "",
                    }
                )
            writer.setSignalHeaders(headers)
            writer.writeSamples([row for row in signal_uv])
        finally:
            writer.close()
        data = target.read_bytes()
    if path is not None:
        Path(path).write_bytes(data)
    return data
