"""Turning an upload (one or more files, or zips of them) into records: expand, group, read.

WFDB files are grouped by record name and by the names in their headers (``100.hea`` with ``100.dat``,
``100.atr``, ...; `ecglens.service.grouping`); every other file is a record of its own. Each group is read by
`ecglens.read_record`; a `RecordError` (unknown format, mismatched WFDB pair, corrupt data) becomes `UploadError`
with the reader's message, and the API answers 422.
"""

from __future__ import annotations

import json
import mmap
import posixpath
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ecglens.ecg import Ecg
from ecglens.errors import RecordError
from ecglens.formats import read_record
from ecglens.formats._source import MAX_ZIP_MEMBERS, ZipTooLarge, is_zip, iter_zip


class UploadError(ValueError):
    """An upload that cannot become records. ``status`` is the HTTP status to answer (422 or 413)."""

    def __init__(self, message: str, status: int = 422):
        super().__init__(message)
        self.status = status


@dataclass
class UploadFile:
    """One uploaded file: its (base) name and bytes (or a read-only map of a large WFDB signal file:
    `ecglens.formats.mapped`); ``container`` names the zip it came out of, if any."""

    filename: str
    data: bytes | mmap.mmap
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


def expand_zips(
    files: list[UploadFile],
    max_bytes: int,
    max_members: int = MAX_ZIP_MEMBERS,
    spool_if: Callable[[str, int], bool] | None = None,
) -> list[UploadFile]:
    """Replace every zip (by name or by content) by its members (folders, hidden files and ``__MACOSX`` skipped).

    All members of all zips together may hold at most ``max_members`` files and ``max_bytes`` uncompressed,
    counted while they decompress whatever the zip's headers claim. Raises `UploadError` for a corrupt zip, a
    nested zip or a bad member name (422), or one that would expand past ``max_bytes`` (413). Members for which
    ``spool_if(name, size)`` holds come as a map of a temporary file (`ecglens.formats._source.iter_zip`).
    """
    out: list[UploadFile] = []
    total, members = 0, 0
    for f in files:
        if not (f.filename.lower().endswith(".zip") or is_zip(f.data)):
            out.append(f)
            continue
        found = 0
        try:
            for member, data in iter_zip(
                f.data,
                f.filename,
                max_bytes=max_bytes - total,
                max_members=max_members - members,
                spool_if=spool_if,
            ):
                if is_zip(data):
                    raise UploadError(f"{f.filename}: {member}: nested zip archives are not supported")
                total += len(data)
                found += 1
                out.append(UploadFile(safe_name(member), data, container=f.filename))
        except ZipTooLarge:
            raise UploadError(
                f"{f.filename}: archive expands past the upload limit of {max_bytes / 2**20:g} MiB", 413
            ) from None
        except RecordError as exc:  # corrupt, encrypted, too many members, a bad name: bad input, 422
            raise UploadError(str(exc) if str(exc).startswith(f.filename) else f"{f.filename}: {exc}") from None
        members += found
        if not found:
            raise UploadError(f"{f.filename}: the archive holds no files")
    return out


def read_group(group: RecordGroup) -> Ecg:
    """Read one record group with `ecglens.read_record`; `RecordError` and reader crashes become `UploadError`."""
    files = {f.filename: f.data for f in group.files}
    try:
        return read_record(group.main.data, filename=group.main.filename, files=files)
    except RecordError as exc:
        raise UploadError(str(exc)) from None
    except (
        ValueError,
        KeyError,
        IndexError,
        TypeError,
        OverflowError,
        EOFError,
        OSError,
        UnicodeError,
        MemoryError,
        AttributeError,
        AssertionError,
        ZeroDivisionError,
    ) as exc:
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
