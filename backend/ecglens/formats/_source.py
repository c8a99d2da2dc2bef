"""What a caller hands a reader, turned into named bytes.

A reader may get a path, bytes (with the upload's file name), a binary file object, several named files at once
(``{"100.hea": b"...", "100.dat": b"..."}``) or a .zip holding them. Everything becomes ``{basename: bytes}`` so
that every reader parses memory, never the caller's file system, and pairs are matched by record name.
"""

from __future__ import annotations

import bz2
import copy
import io
import mmap
import os
import struct
import tempfile
import unicodedata
import zipfile
import zlib
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import IO, Any

from ecglens.errors import RecordError
from ecglens.formats.mapped import map_file

# Limits on what one upload may hold; beyond them a record is refused instead of exhausting memory.
MAX_FILE_BYTES = 1 << 30  # 1 GiB for any one file
MAX_ZIP_MEMBERS = 512  # files inside one .zip
MAX_ZIP_BYTES = 1 << 30  # total uncompressed size of a .zip

ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")

# Compression methods zipfile decompresses; a member stored otherwise (e.g. Deflate64, method 9) is refused by
# name before it is opened.
ZIP_METHODS = {
    zipfile.ZIP_STORED: "stored",
    zipfile.ZIP_DEFLATED: "deflate",
    zipfile.ZIP_BZIP2: "bzip2",
    zipfile.ZIP_LZMA: "lzma",
}
# Decompressors raise their own types (zlib.error, lzma.LZMAError; bz2 raises OSError, a missing bz2/lzma module
# RuntimeError): the upload is refused as bad input.
ZIP_READ_ERRORS: tuple[type[BaseException], ...] = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    OSError,
    ValueError,
    EOFError,
    RuntimeError,
    zlib.error,
)
try:
    import lzma

    ZIP_READ_ERRORS += (lzma.LZMAError,)
except ImportError:  # pragma: no cover - Python built without lzma
    pass


def basename(name: str) -> str:
    """The last component of ``name`` whichever separator an uploading system used (``a\\b/c.hea`` -> ``c.hea``)."""
    return str(name).replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]


def display_name(source: Any, filename: str | None) -> str:
    """The name error messages use for ``source``: ``filename`` when given, else the path, else ``"<bytes>"``."""
    if filename:
        return str(filename)
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    name = getattr(source, "name", None)
    return str(name) if isinstance(name, str) else "<bytes>"


def record_stem(name: str) -> str:
    """A record name from a display name: ``"a/b/100.edf"`` -> ``"100"``; ``""`` for ``"<bytes>"``."""
    base = basename(name)
    if base.startswith("<") and base.endswith(">"):
        return ""
    return base.rsplit(".", 1)[0] if "." in base[1:] else base


def read_bytes(source: Any, filename: str | None = None, *, keep_map: bool = False) -> tuple[str, bytes, Path | None]:
    """One input as ``(name, data, path)``.

    Parameters
    ----------
    source : str, os.PathLike, bytes, bytearray, memoryview or binary file object
        Where the record is.
    filename : str, optional
        The upload's file name (used for the format's extension and in error messages). Default: the path's
        name, or ``"<bytes>"``.
    keep_map : bool
        A read-only ``mmap`` comes back as itself instead of a bytes copy (for the readers that take one:
        `ecglens.formats.mapped`). Default: False.

    Returns
    -------
    (name, data, path) : the display name, the file's bytes and, for a path, the `Path` (else None).
    """
    name = display_name(source, filename)
    if keep_map and isinstance(source, mmap.mmap):
        data = source
        path = None
    elif isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        path = None
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        data = _read_path(path, name)
    elif hasattr(source, "read"):
        path = None
        try:
            data = source.read(MAX_FILE_BYTES + 1)
        except (OSError, ValueError) as exc:
            raise RecordError(name, f"could not read the file object: {exc}") from None
        if isinstance(data, str):
            data = data.encode("utf-8")
        if not isinstance(data, (bytes, bytearray)):
            raise RecordError(name, "file object did not return bytes")
        data = bytes(data)
    else:
        raise RecordError(
            name,
            f"cannot read a {type(source).__name__}: expected a path, bytes, a binary file "
            "object, or a mapping of file names to bytes",
        )
    if len(data) > MAX_FILE_BYTES:
        raise RecordError(name, f"file is larger than {MAX_FILE_BYTES >> 20} MiB")
    return name, data, path


def _read_path(path: Path, name: str) -> bytes:
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise RecordError(name, f"file is larger than {MAX_FILE_BYTES >> 20} MiB")
        return path.read_bytes()
    except FileNotFoundError:
        raise RecordError(name, "no such file") from None
    except IsADirectoryError:
        raise RecordError(name, "is a directory, not a record file") from None
    except PermissionError:
        raise RecordError(name, "permission denied") from None
    except OSError as exc:
        raise RecordError(name, f"could not read: {exc.strerror or exc}") from None


def read_files(files: Mapping[str, Any] | Iterable[tuple[str, Any]]) -> dict[str, bytes]:
    """Several named files as ``{basename: bytes}``; values may be bytes, paths or binary file objects. A
    read-only ``mmap`` stays a map (not read into a copy): the WFDB reader takes its signal files that way and
    releases their pages as it reads (`ecglens.formats.mapped`).

    Two files with the same base name (``a/100.hea`` and ``b/100.hea``) are a `RecordError`: pairs are matched
    by name, so the upload would be ambiguous.
    """
    items = files.items() if isinstance(files, Mapping) else files
    out: dict[str, bytes] = {}
    try:
        pairs = [(str(k), v) for k, v in items]
    except (TypeError, ValueError):
        raise RecordError(None, "files must be a mapping of file names to bytes or (name, bytes) pairs") from None
    for key, value in pairs:
        name = basename(key)
        if not name:
            raise RecordError(key or None, "empty file name in upload")
        if name in out:
            raise RecordError(name, "appears twice in the upload")
        if isinstance(value, mmap.mmap):
            if len(value) > MAX_FILE_BYTES:
                raise RecordError(name, f"file is larger than {MAX_FILE_BYTES >> 20} MiB")
            out[name] = value  # type: ignore[assignment] - read like bytes
            continue
        out[name] = read_bytes(value, name)[1]
    if not out:
        raise RecordError(None, "no files in the upload")
    return out


def is_zip(data: bytes) -> bool:
    return data[:4] in ZIP_MAGIC


def unzip(
    data: bytes, name: str, *, max_bytes: int = MAX_ZIP_BYTES, max_members: int = MAX_ZIP_MEMBERS
) -> dict[str, bytes]:
    """The files inside a .zip as ``{basename: bytes}``; folders, ``__MACOSX`` and dot-files are skipped.

    Refuses encrypted members, nested zips, more than ``max_members`` files or more than ``max_bytes``
    uncompressed (counted while decompressing, since the sizes in a zip's directory may lie), and member names
    that are empty or hold control characters.
    """
    out: dict[str, bytes] = {}
    for member, content in iter_zip(data, name, max_bytes=max_bytes, max_members=max_members):
        if is_zip(content):
            raise RecordError(f"{name}:{member}", "nested zip archives are not supported")
        if member in out:
            raise RecordError(f"{name}:{member}", f"two files named {member} in the zip")
        out[member] = content
    if not out:
        raise RecordError(name, "zip archive holds no files")
    return out


# What zipfile raises on crafted directories and headers besides its own BadZipFile.
_ZIP_PARSE_ERRORS = ZIP_READ_ERRORS + (IndexError, KeyError, struct.error)


class ZipTooLarge(RecordError):
    """A zip that expands past its limit (the service answers 413, not 422)."""


def iter_zip(
    data: bytes,
    name: str,
    *,
    max_bytes: int,
    max_members: int,
    spool_if: Callable[[str, int], bool] | None = None,
):
    """Yield ``(basename, bytes)`` of each file in a zip, bounded whatever its directory claims.

    The member count is checked before anything is decompressed; every member is decompressed in chunks and
    counted as it streams, so a member whose header understates its size stops at ``max_bytes`` (or at its
    declared size, whichever is first) instead of being inflated in full. Names are validated: empty names,
    control characters (NUL included) and names over 255 characters are refused. A member for which
    ``spool_if(basename, declared size)`` holds is decompressed into a temporary file and yielded as a read-only
    map of it (`ecglens.formats.mapped`), not as bytes.
    """
    _check_directory(data, name, max_members)
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = archive.infolist()
    except _ZIP_PARSE_ERRORS as exc:  # a directory zipfile cannot parse, e.g. one that claims a later zip version
        raise RecordError(name, f"not a readable zip archive: {exc}") from None
    if len(infos) > max_members:
        raise RecordError(name, f"zip holds {len(infos)} entries (limit {max_members})")
    total = 0
    for info in infos:
        raw_name = getattr(info, "orig_filename", info.filename)
        check_member_name(raw_name, name)
        if raw_name.endswith(("/", "\\")):
            continue  # a folder
        parts = raw_name.replace("\\", "/").split("/")
        if any(p.startswith(".") or p == "__MACOSX" for p in parts if p):
            continue  # dot-files and macOS resource forks
        member = basename(raw_name)
        where = f"{name}:{raw_name}"
        if info.flag_bits & 0x1:
            raise RecordError(where, "is encrypted")
        if info.compress_type not in ZIP_METHODS:
            raise RecordError(
                where,
                f"uses zip compression method {info.compress_type}, which cannot be read; "
                f"re-create the zip with one of: {', '.join(ZIP_METHODS.values())}",
            )
        if total + info.file_size > max_bytes:
            raise ZipTooLarge(name, f"zip expands to more than {max_bytes / 2**20:g} MiB")
        if spool_if is not None and info.file_size and spool_if(member, info.file_size):
            with tempfile.TemporaryFile() as spool:  # the map outlives the file object
                content: bytes | mmap.mmap = extract_member(archive, info, max_bytes - total, where, into=spool)
        else:
            content = extract_member(archive, info, max_bytes - total, where)
        total += len(content)
        yield member, content


def _check_directory(data: bytes, name: str, max_members: int) -> None:
    """Refuse a zip whose end-of-directory record names more entries than ``max_members``, or a central
    directory too large to hold only that many, before zipfile parses every entry."""
    at = data.rfind(b"PK\x05\x06", max(0, len(data) - (1 << 16) - 22))
    if at < 0 or len(data) < at + 22:
        return  # no classic end record (or zip64 only): zipfile decides, the count is checked after parsing
    entries = int.from_bytes(data[at + 10 : at + 12], "little")
    cd_size = int.from_bytes(data[at + 12 : at + 16], "little")
    if entries != 0xFFFF and entries > max_members:
        raise RecordError(name, f"zip holds {entries} entries (limit {max_members})")
    # 46 bytes of fixed header per entry plus a name, extra field and comment of up to ~1 KiB in practice.
    if cd_size != 0xFFFFFFFF and cd_size > max_members * 1024:
        raise RecordError(name, f"zip directory is {cd_size} bytes: more entries than the limit of {max_members}")


def check_member_name(raw: str, container: str) -> None:
    """Refuse a zip member name that is empty, too long or holds control characters (NUL, newlines, ...)."""
    if not raw or not raw.strip("/\\"):
        raise RecordError(container, "zip holds a member with an empty name")
    if len(raw) > 255:
        raise RecordError(container, f"zip member name is longer than 255 characters ({raw[:40]!r}...)")
    bad = next((ch for ch in raw if unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn")), None)
    if bad is not None:
        raise RecordError(container, f"zip member name {raw[:80]!r} holds the control character {bad!r}")


_CHUNK = 1 << 16


def extract_member(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int, where: str, into: IO[bytes] | None = None
) -> Any:
    """One member's bytes, decompressed ``_CHUNK`` bytes at a time and refused once past ``limit`` or past the
    size its header declares, then checked against its CRC-32. With ``into`` (an empty binary file) the bytes
    are written there and a read-only map of the file is returned instead (`ecglens.formats.mapped.map_file`).

    zipfile's own reader inflates a whole compressed block at once (all of a deflate member on ``read()``, and
    every bzip2 / lzma chunk unbounded), so the raw compressed bytes are read through zipfile (as a stored
    member) and decompressed here with ``max_length``.
    """
    raw = copy.copy(info)
    raw.compress_type, raw.file_size, raw.CRC = zipfile.ZIP_STORED, info.compress_size, None
    method = info.compress_type
    try:
        with archive.open(raw) as stream:
            if method == zipfile.ZIP_STORED:
                decompress = None
            elif method == zipfile.ZIP_DEFLATED:
                decompress = zlib.decompressobj(-15)
            elif method == zipfile.ZIP_BZIP2:
                decompress = bz2.BZ2Decompressor()
            else:  # LZMA in zip: 2-byte version, 2-byte properties size, properties, then a raw LZMA1 stream
                import lzma

                head = stream.read(4)
                if len(head) < 4:
                    raise RecordError(where, "truncated lzma header")
                props = stream.read(int.from_bytes(head[2:4], "little"))
                decompress = lzma.LZMADecompressor(
                    lzma.FORMAT_RAW, filters=[lzma._decode_filter_properties(lzma.FILTER_LZMA1, props)]
                )  # noqa: SLF001 - as zipfile does
            parts: list[bytes] = []
            size, crc = 0, 0
            pending = b""
            while True:
                if decompress is None:
                    piece = stream.read(_CHUNK)
                    if not piece:
                        break
                elif method == zipfile.ZIP_DEFLATED:
                    if decompress.eof:
                        break
                    if not pending:
                        pending = stream.read(_CHUNK)
                        if not pending:
                            break  # truncated: the size check below says so
                    piece = decompress.decompress(pending, _CHUNK)
                    pending = decompress.unconsumed_tail
                else:
                    if decompress.eof:
                        break
                    if decompress.needs_input:
                        chunk = stream.read(_CHUNK)
                        if not chunk:
                            break
                        piece = decompress.decompress(chunk, _CHUNK)
                    else:
                        piece = decompress.decompress(b"", _CHUNK)
                size += len(piece)
                if size > limit:
                    raise ZipTooLarge(where, f"expands past the limit of {limit / 2**20:g} MiB left for the zip")
                if size > info.file_size:
                    raise RecordError(where, f"expands past the {info.file_size} bytes its zip header declares")
                crc = zlib.crc32(piece, crc)
                if into is None:
                    parts.append(piece)
                else:
                    into.write(piece)
    except RecordError:
        raise
    except _ZIP_PARSE_ERRORS as exc:
        raise RecordError(where, f"could not extract: {exc}") from None
    if size != info.file_size:
        raise RecordError(where, f"holds {size} bytes, its zip header declares {info.file_size}")
    if crc != info.CRC:
        raise RecordError(where, "CRC-32 does not match: the archive is corrupt")
    if into is not None:
        return map_file(into) if size else b""
    return b"".join(parts)
