"""What a caller hands a reader, turned into named bytes.

A reader may get a path, bytes (with the upload's file name), a binary file object, several named files at once
(``{"100.hea": b"...", "100.dat": b"..."}``) or a .zip holding them. Everything becomes ``{basename: bytes}`` so
that every reader parses memory, never the caller's file system, and pairs are matched by record name.
"""
from __future__ import annotations

import io
import os
import zipfile
import zlib
from pathlib import Path
from typing import Any, Iterable, Mapping

from ecglens.errors import RecordError

# Limits on what one upload may hold; beyond them a record is refused instead of exhausting memory.
MAX_FILE_BYTES = 1 << 30          # 1 GiB for any one file
MAX_ZIP_MEMBERS = 512             # files inside one .zip
MAX_ZIP_BYTES = 1 << 30           # total uncompressed size of a .zip

ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")

# Compression methods zipfile decompresses; a member stored otherwise (e.g. Deflate64, method 9) is refused by
# name before it is opened.
ZIP_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate", zipfile.ZIP_BZIP2: "bzip2",
               zipfile.ZIP_LZMA: "lzma"}
# Decompressors raise their own types (zlib.error, lzma.LZMAError; bz2 raises OSError, a missing bz2/lzma module
# RuntimeError): the upload is refused as bad input.
ZIP_READ_ERRORS: tuple[type[BaseException], ...] = (
    zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError, RuntimeError, zlib.error)
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


def read_bytes(source: Any, filename: str | None = None) -> tuple[str, bytes, Path | None]:
    """One input as ``(name, data, path)``.

    Parameters
    ----------
    source : str, os.PathLike, bytes, bytearray, memoryview or binary file object
        Where the record is.
    filename : str, optional
        The upload's file name (used for the format's extension and in error messages). Default: the path's
        name, or ``"<bytes>"``.

    Returns
    -------
    (name, data, path) : the display name, the file's bytes and, for a path, the `Path` (else None).
    """
    name = display_name(source, filename)
    if isinstance(source, (bytes, bytearray, memoryview)):
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
        raise RecordError(name, f"cannot read a {type(source).__name__}: expected a path, bytes, a binary file "
                                "object, or a mapping of file names to bytes")
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
    """Several named files as ``{basename: bytes}``; values may be bytes, paths or binary file objects.

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
        out[name] = read_bytes(value, name)[1]
    if not out:
        raise RecordError(None, "no files in the upload")
    return out


def is_zip(data: bytes) -> bool:
    return data[:4] in ZIP_MAGIC


def unzip(data: bytes, name: str) -> dict[str, bytes]:
    """The files inside a .zip as ``{basename: bytes}``; folders, ``__MACOSX`` and dot-files are skipped.

    Refuses encrypted members, nested zips, more than `MAX_ZIP_MEMBERS` files or more than `MAX_ZIP_BYTES`
    uncompressed (checked while reading, since the sizes in a zip's directory may lie).
    """
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = [i for i in archive.infolist() if not i.is_dir()]
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
        raise RecordError(name, f"not a readable zip archive: {exc}") from None
    infos = [i for i in infos if "__MACOSX" not in i.filename and not basename(i.filename).startswith(".")]
    if len(infos) > MAX_ZIP_MEMBERS:
        raise RecordError(name, f"zip holds {len(infos)} files (limit {MAX_ZIP_MEMBERS})")
    out: dict[str, bytes] = {}
    total = 0
    for info in infos:
        member = basename(info.filename)
        where = f"{name}:{info.filename}"
        if info.flag_bits & 0x1:
            raise RecordError(where, "is encrypted")
        if member in out:
            raise RecordError(where, f"two files named {member} in the zip")
        if info.compress_type not in ZIP_METHODS:
            raise RecordError(where, f"uses zip compression method {info.compress_type}, which cannot be read; "
                                     f"re-create the zip with one of: {', '.join(ZIP_METHODS.values())}")
        try:
            with archive.open(info) as handle:
                content = handle.read(MAX_ZIP_BYTES - total + 1)
        except ZIP_READ_ERRORS as exc:
            raise RecordError(where, f"could not extract: {exc}") from None
        total += len(content)
        if total > MAX_ZIP_BYTES:
            raise RecordError(name, f"zip expands to more than {MAX_ZIP_BYTES >> 20} MiB")
        if is_zip(content):
            raise RecordError(where, "nested zip archives are not supported")
        out[member] = content
    if not out:
        raise RecordError(name, "zip archive holds no files")
    return out
