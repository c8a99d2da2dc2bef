"""JSON records::

    {"fs": 500, "leads": {"I": [0.01, 0.02], "II": [0.03, 0.05]}, "units": "mV", "metadata": {"age": 61}}

``fs`` (also ``sampling_rate``) in Hz; ``leads`` maps lead names to equally long lists of numbers (``null``
marks a missing sample) or is a list of ``{"name": ..., "samples": [...]}``; ``units`` is optional (``mV``
default, ``uV``, ``V``), one string or one per lead; ``metadata`` and ``name`` are optional.
"""

from __future__ import annotations

import json as _json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ecglens.ecg import Ecg
from ecglens.errors import RecordError
from ecglens.formats._build import MAX_LEADS, build_ecg, check_fs
from ecglens.formats._guard import guarded
from ecglens.formats._source import basename, read_bytes, record_stem

_RESERVED = ("format", "source_files", "original_units", "missing_samples", "missing_filled_by")


def parse_json(data: bytes, display: str) -> Any:
    """The JSON document in ``data`` (UTF-8, BOM allowed); RecordError naming ``display`` and the line if not."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise RecordError(display, f"not UTF-8 text (byte {exc.start})") from None
    try:
        return _json.loads(text)
    except _json.JSONDecodeError as exc:
        raise RecordError(display, f"line {exc.lineno}, column {exc.colno}: invalid JSON: {exc.msg}") from None
    except RecursionError:
        raise RecordError(display, "JSON is nested too deeply") from None


def _samples(values: Any, lead: str, display: str) -> np.ndarray:
    if not isinstance(values, list):
        raise RecordError(display, f"lead {lead!r}: samples must be a list of numbers, got {type(values).__name__}")
    bad = next((v for v in values if v is not None and type(v) not in (int, float)), _NOTHING)
    if bad is not _NOTHING:
        raise RecordError(display, f"lead {lead!r}: {bad!r} is not a number")
    try:
        return np.array(values, dtype=np.float64)  # None -> NaN: a missing sample
    except OverflowError:
        raise RecordError(display, f"lead {lead!r}: a value is too large") from None


_NOTHING = object()


def _leads(doc: Mapping[str, Any], display: str) -> list[tuple[str, Any]]:
    leads = doc.get("leads", doc.get("signals"))
    if isinstance(leads, Mapping):
        pairs = [(str(k), v) for k, v in leads.items()]
    elif isinstance(leads, list):
        pairs = []
        for i, item in enumerate(leads):
            if not isinstance(item, Mapping) or "name" not in item:
                raise RecordError(display, f"leads[{i}] must be an object with 'name' and 'samples'")
            pairs.append((str(item["name"]), item.get("samples", item.get("data"))))
    else:
        raise RecordError(display, "missing 'leads': expected an object mapping lead names to lists of samples")
    if not pairs:
        raise RecordError(display, "'leads' is empty")
    if len(pairs) > MAX_LEADS:
        raise RecordError(display, f"{len(pairs)} leads (limit {MAX_LEADS})")
    return pairs


@guarded("JSON")
def read_json(source: Any, filename: str | None = None, *, fs: float | None = None) -> Ecg:
    """Read a JSON record into an `Ecg` (float32 ``[leads, samples]`` in mV).

    Parameters
    ----------
    source : path, bytes or binary file object
        The file.
    filename : str, optional
        Upload name when ``source`` is bytes. Default: the path, or ``"<bytes>"``.
    fs : float, optional
        Sampling rate in Hz; takes precedence over the document's ``fs``. Default: None.

    Returns
    -------
    Ecg
        ``metadata`` is the document's ``metadata`` object plus ``format="JSON"``, ``source_files``,
        ``original_units`` and ``missing_samples`` when nulls were filled.
    """
    display, data, _ = read_bytes(source, filename)
    doc = parse_json(data, display)
    if not isinstance(doc, dict):
        raise RecordError(display, f"expected a JSON object with 'fs' and 'leads', got a {type(doc).__name__}")
    rate = fs if fs is not None else doc.get("fs", doc.get("sampling_rate", doc.get("sampling_frequency")))
    if rate is None:
        raise RecordError(display, "missing 'fs' (sampling rate in Hz)")
    rate = check_fs(rate, display)
    pairs = _leads(doc, display)
    units_field = doc.get("units", "mV")
    if isinstance(units_field, str):
        units = [units_field] * len(pairs)
    elif isinstance(units_field, Mapping):
        units = [str(units_field.get(name, "mV")) for name, _ in pairs]
    else:
        raise RecordError(display, "'units' must be a string such as 'mV' or an object mapping leads to units")
    metadata = doc.get("metadata", {})
    if not isinstance(metadata, dict):
        raise RecordError(display, "'metadata' must be an object")
    meta = {k: v for k, v in metadata.items() if k not in _RESERVED}
    meta["source_files"] = [basename(display)]
    channels = [_samples(values, name, display) for name, values in pairs]
    name = doc.get("name") or meta.get("record_name") or record_stem(display)
    return build_ecg(
        channels, rate, [n for n, _ in pairs], units, filename=display, fmt="JSON", name=str(name), metadata=meta
    )


def write_json(ecg: Ecg, path: str | Path | None = None, *, decimals: int = 6) -> bytes:
    """Write ``ecg`` as a JSON record (the layout `read_json` reads) and return the UTF-8 bytes.

    Parameters
    ----------
    ecg : Ecg
        The record.
    path : path, optional
        Where to write the file as well. Default: None.
    decimals : int
        Decimal places kept per sample in mV (6 = 1 nV). Default: 6.
    """
    signal = np.round(ecg.signal.astype(np.float64), decimals)
    doc = {
        "name": ecg.name,
        "fs": ecg.fs,
        "units": "mV",
        "leads": {lead: row.tolist() for lead, row in zip(ecg.leads, signal)},
        "metadata": _json.loads(_json.dumps(dict(ecg.metadata), default=str)),
    }
    data = _json.dumps(doc, separators=(",", ":")).encode("utf-8")
    if path is not None:
        Path(path).write_bytes(data)
    return data
