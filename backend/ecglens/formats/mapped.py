"""Large files read through a read-only memory map, handed back to the kernel page by page as they are read.

A bytes copy of an uploaded 38 MB WFDB signal file sat beside its 76 MB float32 signal, so an upload cost 3x
its size. Mapped instead (the multipart parser has already spooled it to disk), the file's pages count in the
process's RSS only while a pass over them touches them: `release` drops what a pass is done with (they stay in
the page cache, and a later touch reads them back from there). Readers take ``bytes`` or such a map alike.
"""

from __future__ import annotations

import mmap
from collections.abc import Iterator
from typing import IO, Any

# Bytes of a mapped file a pass touches before handing them back.
CHUNK_BYTES = 4 << 20


def map_file(fh: IO[bytes]) -> mmap.mmap:
    """A read-only map of the whole of the (flushed, non-empty) file ``fh``; it stays valid after ``fh`` is
    closed."""
    fh.flush()
    return mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)


def release(data: Any, start: int, stop: int) -> None:
    """Drop the pages holding ``data[start:stop]`` from this process's memory when ``data`` is a map (no-op for
    bytes). Always safe: the map is read-only, so a page still wanted is only read back from the page cache."""
    if not isinstance(data, mmap.mmap) or not hasattr(mmap, "MADV_DONTNEED"):  # bytes; or no madvise (Windows)
        return
    first = start // mmap.PAGESIZE * mmap.PAGESIZE
    stop = min(stop, len(data))
    if stop > first:
        data.madvise(mmap.MADV_DONTNEED, first, stop - first)


def chunks(data: Any, start: int = 0, size: int = CHUNK_BYTES) -> Iterator[memoryview]:
    """``data[start:]`` in consecutive views of ``size`` bytes, each released (`release`) once the caller has it
    done."""
    view = memoryview(data)
    try:
        for at in range(start, len(view), size):
            piece = view[at : at + size]
            try:
                yield piece
            finally:
                piece.release()
            release(data, at, at + size)
    finally:
        view.release()
