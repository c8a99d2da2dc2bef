"""Delimited text: a header row of lead names, then one row of samples per time step.

::

    time_s,I,II,V1 (uV)
    0.000,0.01,0.03,12
    0.002,0.02,0.05,15

- delimiter: comma, semicolon or tab (whichever the header row uses);
- sampling rate: the ``fs`` argument, else a time column (``time``, ``t``, ``time_s``, ``time_ms``,
  ``time (ms)``...), else a ``# fs: 500`` comment line before the header; a sample-index column (``sample``,
  ``index``) is ignored;
- units: mV unless the column says otherwise (``II (uV)``, ``II [V]``) or a ``# units: uV`` comment sets the
  default for all columns;
- empty cells and ``NaN`` / ``NA`` are missing samples (interpolated and counted in the metadata).

Errors name the file and the line (and column) at fault.
"""

from __future__ import annotations

import csv as _csv
import io
import re
from pathlib import Path
from typing import Any

import numpy as np

from ecglens.ecg import Ecg
from ecglens.errors import RecordError
from ecglens.formats._build import MAX_LEADS, build_ecg, check_fs, unit_to_mv
from ecglens.formats._guard import guarded
from ecglens.formats._source import basename, read_bytes, record_stem

_TIME_COLUMNS = {
    "time": 1.0,
    "t": 1.0,
    "time_s": 1.0,
    "times": 1.0,
    "seconds": 1.0,
    "sec": 1.0,
    "s": 1.0,
    "time_ms": 1e-3,
    "timems": 1e-3,
    "ms": 1e-3,
    "milliseconds": 1e-3,
    "timestamp": 1.0,
    "elapsed": 1.0,
    "elapsed_time": 1.0,
}
_TIME_UNITS = {"s": 1.0, "sec": 1.0, "seconds": 1.0, "ms": 1e-3, "msec": 1e-3, "milliseconds": 1e-3}
_INDEX_COLUMNS = {"sample", "samples", "index", "idx", "n", "sample_index", "sample_number", ""}
_MISSING = {"", "nan", "na", "n/a", "null", "none", "-"}
_UNIT_SUFFIX = re.compile(r"^(.*?)\s*[(\[]\s*([^()\[\]]*?)\s*[)\]]\s*$")
_COMMENT_FIELD = re.compile(r"^#\s*([A-Za-z_ ]+?)\s*[:=]\s*(.+?)\s*$")


def _split_unit(name: str) -> tuple[str, str | None]:
    """``"II (uV)"`` -> ``("II", "uV")``; ``"II"`` -> ``("II", None)``."""
    match = _UNIT_SUFFIX.match(name)
    return (match.group(1).strip(), match.group(2)) if match else (name.strip(), None)


def _decode(data: bytes, display: str) -> str:
    if b"\x00" in data[:65536]:
        raise RecordError(display, "not a text file (contains NUL bytes)")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _delimiter(line: str) -> str:
    counts = {d: line.count(d) for d in (",", ";", "\t")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


@guarded("CSV")
def read_csv(source: Any, filename: str | None = None, *, fs: float | None = None) -> Ecg:
    """Read a CSV (or TSV) record into an `Ecg` (float32 ``[leads, samples]`` in mV).

    Parameters
    ----------
    source : path, bytes or binary file object
        The file.
    filename : str, optional
        Upload name when ``source`` is bytes. Default: the path, or ``"<bytes>"``.
    fs : float, optional
        Sampling rate in Hz; takes precedence over a time column. Default: None (from the time column or a
        ``# fs:`` comment).

    Returns
    -------
    Ecg
        One lead per column other than time / sample index; ``metadata``: ``format="CSV"``, ``source_files``,
        ``original_units``, ``time_column`` (when fs came from it), ``comments``, ``missing_samples``.
    """
    display, data, _ = read_bytes(source, filename)
    lines = _decode(data, display).splitlines()
    comments: list[str] = []
    settings: dict[str, str] = {}
    header_at = None
    for number, line in enumerate(lines, start=1):
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith("#"):
            comments.append(stripped.lstrip("#").strip())
            match = _COMMENT_FIELD.match(stripped)
            if match:
                settings[match.group(1).strip().lower().replace(" ", "_")] = match.group(2)
            continue
        header_at = number
        break
    if header_at is None:
        raise RecordError(display, "no header row and no samples (empty file)")

    delimiter = _delimiter(lines[header_at - 1])
    header = next(_csv.reader([lines[header_at - 1]], delimiter=delimiter))
    if header and not header[-1].strip() and len(header) > 1:
        header = header[:-1]  # a trailing delimiter
    if all(_is_number(cell) for cell in header):
        raise RecordError(
            display,
            f"line {header_at}: expected a header row of lead names, got numbers (add a first row such as 'I,II,V1')",
        )
    if len(header) > MAX_LEADS + 2:
        raise RecordError(display, f"line {header_at}: {len(header)} columns (limit {MAX_LEADS} leads)")

    default_unit = settings.get("units") or settings.get("unit") or "mV"
    time_col, time_scale, index_cols = None, 1.0, set()
    names, units = [], []
    for col, cell in enumerate(header):
        name, unit = _split_unit(cell)
        folded = name.lower().replace(" ", "_")
        if time_col is None and folded in _TIME_COLUMNS:
            time_col = col
            time_scale = _TIME_UNITS.get((unit or "").lower(), _TIME_COLUMNS[folded])
            continue
        if folded in _INDEX_COLUMNS and not (folded == "" and len(header) == 1):
            index_cols.add(col)
            continue
        names.append(name)
        units.append(unit or default_unit)
    lead_cols = [c for c in range(len(header)) if c != time_col and c not in index_cols]
    if not lead_cols:
        raise RecordError(display, f"line {header_at}: no lead columns (header: {', '.join(header)})")
    for name, unit in zip(names, units):
        if unit_to_mv(unit) is None:
            raise RecordError(
                display, f"line {header_at}: column {name!r} has unknown units {unit!r} (expected mV, uV or V)"
            )

    matrix, line_numbers = _fast_table(lines, header_at, len(header), delimiter)
    if matrix is None:  # the careful path, which names the line and column at fault
        values, line_numbers = _rows(lines, header_at, len(header), delimiter, display)
        matrix = _to_float(values, line_numbers, header, display)

    meta: dict[str, Any] = {"source_files": [basename(display)]}
    if comments:
        meta["comments"] = comments
    if fs is not None:
        rate = check_fs(fs, display)
    elif time_col is not None:
        rate = _rate_from_time(matrix[:, time_col] * time_scale, header[time_col], line_numbers, display)
        meta["time_column"] = header[time_col]
    elif "fs" in settings or "sampling_rate" in settings or "sampling_frequency" in settings:
        text = settings.get("fs") or settings.get("sampling_rate") or settings.get("sampling_frequency") or ""
        rate = check_fs(re.sub(r"\s*hz\s*$", "", text, flags=re.IGNORECASE), display)
    else:
        raise RecordError(
            display, "no sampling rate: pass fs (Hz) or add a time column named time, t, time_s or time_ms"
        )
    channels = [matrix[:, c] for c in lead_cols]
    return build_ecg(
        channels, rate, names, units, filename=display, fmt="CSV", name=record_stem(display), metadata=meta
    )


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _fast_table(lines: list[str], header_at: int, width: int, delimiter: str) -> tuple[np.ndarray | None, list[int]]:
    """The numeric table by pandas' C parser when every data row is plainly well formed, else ``(None, [])``.

    Only unquoted rows with exactly ``width`` fields and no comment or blank lines take this path (pandas
    would silently pad short rows); anything else goes through `_rows` / `_to_float`, which report the line.
    """
    body = lines[header_at:]
    while body and not body[-1].strip():
        body = body[:-1]
    if not body or any('"' in line or not line.strip() or line.lstrip().startswith("#") for line in body):
        return None, []
    if any(line.count(delimiter) != width - 1 for line in body):
        return None, []
    import pandas as pd

    try:
        frame = pd.read_csv(
            io.StringIO("\n".join(body)),
            sep=delimiter,
            header=None,
            dtype=np.float64,
            na_values=sorted(_MISSING - {""}),
            keep_default_na=True,
            engine="c",
        )
    except (ValueError, pd.errors.ParserError, OverflowError):
        return None, []
    if frame.shape != (len(body), width):
        return None, []
    return frame.to_numpy(dtype=np.float64), list(range(header_at + 1, header_at + 1 + len(body)))


def _rows(
    lines: list[str], header_at: int, width: int, delimiter: str, display: str
) -> tuple[list[list[str]], list[int]]:
    """Data rows as lists of cells with their 1-based line numbers; a wrong cell count names its line."""
    body = lines[header_at:]
    numbers, kept = [], []
    for offset, line in enumerate(body):
        if line.strip() and not line.lstrip().startswith("#"):
            numbers.append(header_at + offset + 1)
            kept.append(line)
    if not kept:
        raise RecordError(display, f"no samples after the header row (line {header_at})")
    rows = list(_csv.reader(kept, delimiter=delimiter))
    for number, row in zip(numbers, rows):
        if len(row) != width:
            if len(row) == width + 1 and not row[-1].strip():
                row.pop()  # a trailing delimiter
                continue
            raise RecordError(display, f"line {number}: expected {width} values, got {len(row)}")
    return rows, numbers


def _to_float(rows: list[list[str]], numbers: list[int], header: list[str], display: str) -> np.ndarray:
    """``[rows, columns]`` float64; missing cells become NaN; a non-number names its line and column."""
    cells = np.array(rows, dtype=object)
    flat = cells.reshape(-1)
    folded = np.char.lower(np.char.strip(flat.astype(str)))
    missing = np.isin(folded, list(_MISSING))
    flat = np.where(missing, "nan", folded)
    try:
        return flat.astype(np.float64).reshape(cells.shape)
    except ValueError:
        pass
    for number, row in zip(numbers, rows):
        for col, cell in enumerate(row):
            if cell.strip().lower() not in _MISSING and not _is_number(cell):
                raise RecordError(display, f"line {number}, column {header[col]!r}: {cell!r} is not a number")
    raise RecordError(display, "values are not numbers")  # pragma: no cover - the scan above finds the cell


def _rate_from_time(t: np.ndarray, column: str, numbers: list[int], display: str) -> float:
    """Sampling rate from a time column in seconds; it must rise evenly (rounding to half a sample allowed)."""
    if np.isnan(t).any():
        at = numbers[int(np.flatnonzero(np.isnan(t))[0])]
        raise RecordError(display, f"line {at}: time column {column!r} is empty")
    if t.size < 2:
        raise RecordError(display, f"one row is not enough to get a sampling rate from {column!r}; pass fs")
    step = np.diff(t)
    if (step <= 0).any():
        at = numbers[int(np.flatnonzero(step <= 0)[0]) + 1]
        raise RecordError(display, f"line {at}: time column {column!r} does not increase")
    period = (t[-1] - t[0]) / (t.size - 1)
    drift = np.abs(t - (t[0] + period * np.arange(t.size)))
    if drift.max() > 0.6 * period:
        at = numbers[int(np.argmax(drift))]
        raise RecordError(
            display,
            f"line {at}: time column {column!r} is not evenly spaced (off by "
            f"{drift.max():.4g} s at a {period:.4g} s step); pass fs to ignore it",
        )
    rate = 1.0 / period
    # Printed times carry rounding: 359.9999996 Hz is 360 Hz written with 9 digits.
    if abs(rate - round(rate)) < 1e-6 * rate:
        rate = float(round(rate))
    return check_fs(rate, display)


def write_csv(ecg: Ecg, path: str | Path | None = None, *, time_column: bool = True) -> bytes:
    """Write ``ecg`` as CSV (``time_s`` column then one mV column per lead) and return the bytes.

    Parameters
    ----------
    ecg : Ecg
        The record.
    path : path, optional
        Where to write the file as well. Default: None.
    time_column : bool
        Write a ``time_s`` column (so the file carries its sampling rate). Default: True.
    """
    import pandas as pd

    columns = {lead: row for lead, row in zip(ecg.leads, ecg.signal.astype(np.float64))}
    frame = pd.DataFrame(columns, columns=list(ecg.leads))
    if time_column:
        frame.insert(0, "time_s", np.arange(ecg.n_samples) / ecg.fs)
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False, float_format="%.9g", lineterminator="\n")
    data = buffer.getvalue().encode("utf-8")
    if path is not None:
        Path(path).write_bytes(data)
    return data
