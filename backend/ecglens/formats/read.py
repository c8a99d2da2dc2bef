"""`read_record`: one entry point for every supported format, dispatching on content first, then extension.

Strong signatures decide first (zip, DICOM preamble, EDF/BDF header, an ``AnnotatedECG`` root, a JSON object with
a FHIR ``resourceType``), then the file extension, then weaker content hints (a JSON object, XML, a WFDB record
line, delimited text). Several files at once (a mapping, or a .zip) are one WFDB record matched by the names in
its header, or a single file of any other format.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path, PurePath
from typing import Any

from ecglens.ecg import Ecg
from ecglens.errors import RecordError
from ecglens.formats._guard import describe
from ecglens.formats._source import basename, is_zip, read_bytes, read_files, unzip
from ecglens.formats.aecg import is_aecg, read_aecg
from ecglens.formats.csv import read_csv
from ecglens.formats.dicom import is_dicom, read_dicom
from ecglens.formats.edf import is_edf, read_edf
from ecglens.formats.fhir import is_fhir, read_fhir
from ecglens.formats.json import read_json
from ecglens.formats.wfdb import read_wfdb

# name -> (reader, what users are told is supported)
FORMATS: dict[str, tuple[Callable[..., Ecg], str]] = {
    "wfdb": (read_wfdb, "WFDB (.hea header with its .dat/.mat signal files)"),
    "edf": (read_edf, "EDF/EDF+/BDF (.edf, .bdf)"),
    "csv": (read_csv, "CSV/TSV with a header row of lead names (.csv, .tsv, .txt)"),
    "json": (read_json, "JSON {fs, leads} (.json)"),
    "dicom": (read_dicom, "DICOM ECG waveform (.dcm)"),
    "aecg": (read_aecg, "HL7 aECG XML (.xml)"),
    "fhir": (read_fhir, "FHIR R4 Observation with valueSampledData (.json)"),
}
ALIASES = {
    "mit": "wfdb",
    "physionet": "wfdb",
    "hea": "wfdb",
    "edf+": "edf",
    "edfplus": "edf",
    "bdf": "edf",
    "tsv": "csv",
    "txt": "csv",
    "text": "csv",
    "dcm": "dicom",
    "hl7": "aecg",
    "xml": "aecg",
    "hl7aecg": "aecg",
    "hl7 aecg": "aecg",
    "fhir+json": "fhir",
    "fhir r4": "fhir",
}
EXTENSIONS = {
    ".hea": "wfdb",
    ".dat": "wfdb",
    ".mat": "wfdb",
    ".edf": "edf",
    ".bdf": "edf",
    ".rec": "edf",
    ".csv": "csv",
    ".tsv": "csv",
    ".txt": "csv",
    ".json": "json",
    ".dcm": "dicom",
    ".dicom": "dicom",
    ".xml": "aecg",
    ".zip": "zip",
}
_TAKES_FS = {"csv", "json"}
_WFDB_RECORD_LINE = re.compile(rb"^[\w\-.+]+(/\d+)?[ \t]+\d+([ \t]|$)")


def supported_formats() -> str:
    """One line naming every supported format, for error messages and help texts."""
    return "; ".join(text for _, text in FORMATS.values()) + "; or a .zip of one record"


def canonical_format(name: str, filename: str | None = None) -> str:
    """The registry key for a format name or alias (``"EDF+"`` -> ``"edf"``); unknown names list valid ones."""
    key = str(name).strip().lower()
    key = ALIASES.get(key, key)
    if key not in FORMATS:
        raise RecordError(
            filename, f"unknown format {name!r}; valid: {', '.join(FORMATS)} (aliases: {', '.join(sorted(ALIASES))})"
        )
    return key


def detect_format(data: bytes, filename: str | None = None) -> str | None:
    """``"zip"``, a key of `FORMATS`, or None when neither content nor extension says what ``data`` is."""
    if is_zip(data):
        return "zip"
    if is_dicom(data):
        return "dicom"
    if is_edf(data):
        return "edf"
    if is_aecg(data):
        return "aecg"
    if is_fhir(data):
        return "fhir"
    suffix = PurePath(basename(filename or "")).suffix.lower()
    if suffix in EXTENSIONS:
        return EXTENSIONS[suffix]
    head = data[:4096].lstrip(b"\xef\xbb\xbf \t\r\n")
    if head.startswith(b"{"):
        return "json"
    if head.startswith(b"<"):
        return "aecg"
    if b"\x00" in head:
        return None
    lines = [ln.strip() for ln in head.splitlines() if ln.strip() and not ln.strip().startswith(b"#")]
    if lines and _WFDB_RECORD_LINE.match(lines[0]) and len(lines) > 1 and not re.search(rb"[,;\t]", lines[0]):
        return "wfdb"
    if lines and re.search(rb"[,;\t]", lines[0]):
        return "csv"
    return None


def read_record(
    path_or_bytes: Any = None,
    filename: str | None = None,
    *,
    files: Mapping[str, Any] | Iterable[tuple[str, Any]] | None = None,
    fs: float | None = None,
    format: str | None = None,
    strict: bool = False,
) -> Ecg:
    """Read an ECG record of any supported format into an `Ecg` (float32 ``[leads, samples]`` in mV).

    Parameters
    ----------
    path_or_bytes : path, bytes, binary file object or mapping, optional
        A path (a WFDB header's signal files are read from beside it); the file's bytes (give ``filename``);
        or a mapping ``{file name: bytes}`` of several files (a WFDB header with its signal files).
    filename : str, optional
        The upload's file name when ``path_or_bytes`` is bytes: its extension helps detection and it is named
        in errors. Default: the path's name, or ``"<bytes>"``.
    files : mapping or iterable of (name, bytes), optional
        Further files uploaded together (WFDB signal files for a header given as ``path_or_bytes``).
    fs : float, optional
        Sampling rate in Hz for formats whose files may not carry one (CSV, JSON); takes precedence over the
        file's own. Default: None.
    format : str, optional
        Skip detection and read as this format (``"wfdb"``, ``"edf"``, ``"csv"``, ``"json"``, ``"dicom"``,
        ``"aecg"`` or an alias such as ``"hl7"``). Default: None (detect).
    strict : bool
        Refuse WFDB files that are readable but depart from the specification (a checksum mismatch, a base
        date no spelling matches, a signal line without its initial value) instead of reading them with a
        warning in ``metadata["warnings"]``. Default: False.

    Returns
    -------
    Ecg
        Signal in mV, ``fs`` in Hz, canonical lead names, header fields in ``metadata`` (``format``,
        ``record_name``, ``source_files``, ``original_units``, and ``date``, ``time``, ``age``, ``sex``,
        ``dx``, ``comments`` when the file has them; ``warnings`` when something was read despite a fault).

    Raises
    ------
    RecordError
        For every input that cannot be read, naming the file and what is wrong; no other exception escapes.

    Examples
    --------
    >>> ecg = read_record("../shared/data/mitdb/100.hea")          # doctest: +SKIP
    >>> ecg = read_record({"100.hea": hea, "100.dat": dat})        # doctest: +SKIP
    >>> ecg = read_record(upload_bytes, "ecg.csv", fs=500)          # doctest: +SKIP
    """
    try:
        return _read(path_or_bytes, filename, files, fs, format, strict)
    except RecordError:
        raise
    except Exception as exc:  # noqa: BLE001 - the promise: only RecordError leaves this function
        name = filename or (
            "<upload>"
            if isinstance(path_or_bytes, Mapping) or path_or_bytes is None
            else str(path_or_bytes)
            if isinstance(path_or_bytes, (str, PurePath))
            else "<bytes>"
        )
        raise RecordError(name, f"could not read: {describe(exc)}") from exc


read_any = read_record


def _read(
    source: Any, filename: str | None, files: Any, fs: float | None, format: str | None, strict: bool = False
) -> Ecg:
    chosen = canonical_format(format, filename) if format else None
    if isinstance(source, Mapping) or (source is None and files is not None):
        uploads = read_files(source if isinstance(source, Mapping) else files)
        if isinstance(source, Mapping) and files is not None:
            uploads.update(read_files(files))
        return _read_many(uploads, filename or "<upload>", fs, chosen, strict)
    if source is None:
        raise RecordError(filename, "nothing to read: give a path, bytes or files")
    if isinstance(source, (str, os.PathLike)) and files is None and chosen in (None, "wfdb"):
        path = Path(source)
        if not path.exists() and path.with_name(path.name + ".hea").is_file():
            return read_wfdb(path, strict=strict)  # a record name as wfdb takes it: "mitdb/100"
    name, data, path = read_bytes(source, filename, keep_map=True)
    if files is not None:
        uploads = read_files(files)
        uploads[basename(name)] = data
        return _read_many(uploads, name, fs, chosen, strict)
    kind = chosen or detect_format(data, name)
    data = _unless_mapped_reader(kind, data)
    if kind == "zip":
        return _read_many(unzip(data, name), name, fs, None, strict)
    if kind is None:
        raise RecordError(name, f"unrecognised file format; supported: {supported_formats()}")
    if kind == "wfdb":
        if path is not None:
            return read_wfdb(path, strict=strict)
        if not name.lower().endswith(".hea"):
            raise RecordError(name, "a WFDB signal file needs its .hea header: upload both, or a .zip of them")
        return read_wfdb(data, name, strict=strict)
    return _read_one(kind, data, name, fs)


# Readers that take a read-only map of a large file as it is (`ecglens.formats.mapped`); the others get bytes.
_MAPPED_READERS = ("edf",)


def _unless_mapped_reader(kind: str | None, data: Any) -> Any:
    """``data`` as bytes unless the ``kind`` of reader takes a map (bytes stay the same object, no copy)."""
    return data if kind in _MAPPED_READERS else bytes(data)


def _read_one(kind: str, data: bytes, name: str, fs: float | None) -> Ecg:
    reader = FORMATS[kind][0]
    if kind in _TAKES_FS:
        return reader(data, name, fs=fs)
    return reader(data, name)


def _read_many(
    uploads: dict[str, bytes], display: str, fs: float | None, chosen: str | None, strict: bool = False
) -> Ecg:
    """Several files: one WFDB record (header + the files it names), or exactly one file of another format."""
    if chosen in (None, "wfdb") and any(n.lower().endswith(".hea") for n in uploads):
        return read_wfdb(uploads, display if display != "<upload>" else None, strict=strict)
    if len(uploads) == 1:
        ((name, data),) = uploads.items()
        kind = chosen or detect_format(data, name)
        data = _unless_mapped_reader(kind, data)
        if kind is None or kind == "zip":
            raise RecordError(name, f"unrecognised file format; supported: {supported_formats()}")
        if kind == "wfdb":
            raise RecordError(name, "a WFDB signal file needs its .hea header: upload both, or a .zip of them")
        return _read_one(kind, data, name, fs)
    raise RecordError(
        display,
        f"{len(uploads)} files ({', '.join(sorted(uploads))}) but no WFDB header "
        "(.hea): upload one record file, or a WFDB header with its signal files",
    )
