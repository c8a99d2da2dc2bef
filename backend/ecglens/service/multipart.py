"""Reading a ``multipart/form-data`` request body: the one parser of the routes that take a form (``POST
/records``, ``POST /models``), with their limits and their answers to a bad body."""

from __future__ import annotations

import mmap
from collections.abc import Callable
from dataclasses import dataclass

from fastapi import HTTPException, Request
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile as StarletteUpload
from starlette.exceptions import HTTPException as StarletteHTTPException

from ecglens.formats.mapped import map_file


@dataclass(frozen=True)
class FormFile:
    """A file field of a form: the name the client gave it (None when it gave none) and its bytes (or a
    read-only map of the file the parser spooled them to: ``map_if``)."""

    filename: str | None
    data: bytes | mmap.mmap


async def read_form(
    request: Request,
    *,
    max_files: int,
    max_fields: int,
    map_if: Callable[[str | None, int], bool] | None = None,
) -> list[tuple[str, str | FormFile]]:
    """The fields of the request's form, in the order sent: ``(field name, text or FormFile)``, every file read.

    Parameters
    ----------
    request : Request
        The request with a multipart (or url-encoded) body.
    max_files, max_fields : int
        Most file fields and text fields the form may hold.
    map_if : callable, optional
        ``(filename, size) -> bool``: which files come as a map of their spooled file (`ecglens.formats.mapped`)
        instead of bytes; only files already spooled to disk are mapped. Default: none.

    Raises
    ------
    HTTPException
        413 when the body passes the upload limit while it streams (as raised); 422 "malformed multipart body"
        for anything else the parser refuses (too many parts included).
    """
    try:
        form = await request.form(max_files=max_files, max_fields=max_fields)
    except StarletteHTTPException as exc:
        if exc.status_code == 413:  # the upload limit, raised while the body streams
            raise
        raise HTTPException(422, f"malformed multipart body: {exc.detail}") from None
    except Exception as exc:  # noqa: BLE001 - a malformed body, whatever the parser raised
        raise HTTPException(422, f"malformed multipart body ({type(exc).__name__})") from None
    fields: list[tuple[str, str | FormFile]] = []
    try:
        for name, value in form.multi_items():
            if isinstance(value, StarletteUpload):
                size = value.size or 0
                if (
                    map_if is not None
                    and size
                    and getattr(value.file, "_rolled", False)
                    and map_if(value.filename, size)
                ):
                    data: bytes | mmap.mmap = await run_in_threadpool(map_file, value.file)
                else:
                    data = await value.read()
                fields.append((name, FormFile(value.filename, data)))
            else:
                fields.append((name, value))
    finally:
        await form.close()
    return fields
