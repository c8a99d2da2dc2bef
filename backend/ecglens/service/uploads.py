"""Turning an upload (one or more files, or zips of them) into records: expand, group, read.

WFDB files are grouped by record name and by the names in their headers (``100.hea`` with ``100.dat``,
``100.atr``, ...; `ecglens.service.grouping`); every other file is a record of its own. Each group is read by
`ecglens.read_record`; a `RecordError` (unknown format, mismatched WFDB pair, corrupt data) becomes `UploadError`
with the reader's message, and the API answers 422.
"""
from __future__ import annotations

import io
import json
import posixpath
import zipfile
from dataclasses import dataclass, field
from typing import Any

from ecglens.ecg import Ecg
from ecglens.errors import RecordError
from ecglens.formats._source import ZIP_READ_ERRORS

class UploadError(ValueError):
    """An upload that cannot become records. ``status`` is the HTTP status to answer (422 or 413)."""

    def __init__(self, message: str, status: int = 422):
        super().__init__(message)
        self.status = status


@dataclass
class UploadFile:
    """One uploaded file: its (base) name and bytes; ``container`` names the zip it came out of, if any."""

    filename: str
    data: bytes
    container: str | None = None


@dataclass
class RecordGroup:
    """The files of one record: ``main`` is what the reader is given, ``companions`` the rest (by name)."""

    main: UploadFile
    companions: list[UploadFile] = field(default_factory=list)

    @property
    def files(self) -> list[UploadFile]:
        return [self.main, *self.companions]


def safe_name(filename: str | None) -> str:
    """The base name of an uploaded file (no folders, no control characters), or "upload" when empty."""
    name = posixpath.basename((filename or "").replace("\\", "/")).strip()
    name = "".join(ch for ch in name if ch.isprintable())[:255]
    return name or "upload"


def expand_zips(files: list[UploadFile], max_bytes: int) -> list[UploadFile]:
    """Replace every ``.zip`` by its members (folders, hidden files and ``__MACOSX`` skipped).

    Raises `UploadError` for a corrupt zip (422) or one that would expand past ``max_bytes`` (413).
    """
    out: list[UploadFile] = []
    for f in files:
        if not f.filename.lower().endswith(".zip"):
            out.append(f)
            continue
        try:
            with zipfile.ZipFile(io.BytesIO(f.data)) as zf:
                members = [m for m in zf.infolist() if not m.is_dir() and not _hidden(m.filename)]
                if sum(m.file_size for m in members) > max_bytes:
                    raise UploadError(f"{f.filename}: archive expands past the upload limit", 413)
                for m in members:
                    data = zf.read(m)
                    if len(data) > max_bytes:  # the header may lie about the size
                        raise UploadError(f"{f.filename}: archive expands past the upload limit", 413)
                    out.append(UploadFile(safe_name(m.filename), data, container=f.filename))
        except UploadError:
            raise
        except ZIP_READ_ERRORS as exc:  # the readers' list: a corrupt or unsupported archive is bad input, 422
            raise UploadError(f"{f.filename}: not a readable zip archive ({exc})") from None
        if not members:
            raise UploadError(f"{f.filename}: the archive holds no files")
    return out


def _hidden(name: str) -> bool:
    parts = name.replace("\\", "/").split("/")
    return any(p.startswith(".") or p == "__MACOSX" for p in parts if p)


def group_records(files: list[UploadFile]) -> list[RecordGroup]:
    """Group files into records: a WFDB header takes the files it names and the WFDB files with its record
    name; every other file stands alone (`ecglens.service.grouping.group_files`).

    Raises `UploadError` for a WFDB data file without its header, or two files with the same name.
    """
    from ecglens.service.grouping import group_files

    return group_files(files)


def read_group(group: RecordGroup) -> Ecg:
    """Read one record group with `ecglens.read_record`; `RecordError` and reader crashes become `UploadError`."""
    from ecglens import read_record

    files = {f.filename: f.data for f in group.files}
    try:
        return read_record(group.main.data, filename=group.main.filename, files=files)
    except RecordError as exc:
        raise UploadError(str(exc)) from None
    except (ValueError, KeyError, IndexError, TypeError, OverflowError, EOFError, OSError, UnicodeError,
            MemoryError, AttributeError, AssertionError, ZeroDivisionError) as exc:
        # A reader should raise RecordError; anything else on bad bytes is still the upload's fault.
        raise UploadError(f"{group.main.filename}: could not be read ({type(exc).__name__}: {exc})") from None


def record_format(ecg: Ecg, filename: str) -> str:
    """The source format: what the reader put in the metadata, else the file extension."""
    fmt = ecg.metadata.get("format") or ecg.metadata.get("source_format")
    if fmt:
        return str(fmt)[:40]
    return (filename.rsplit(".", 1)[-1].lower() if "." in filename else "unknown")[:40]


def jsonable_header(metadata: Any) -> dict[str, Any]:
    """The reader's metadata as plain JSON (dates and arrays become text / lists); stored, never logged."""
    try:
        return json.loads(json.dumps(dict(metadata), default=_default))
    except (TypeError, ValueError):
        return {}


def _default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, bytes):
        return obj.hex()
    return str(obj)
