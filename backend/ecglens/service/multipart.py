"""Reading a ``multipart/form-data`` request body: the one parser of the routes that take a form (``POST
/records``, ``POST /models``), with their limits and their answers to a bad body."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import HTTPException, Request
from starlette.datastructures import UploadFile as StarletteUpload
from starlette.exceptions import HTTPException as StarletteHTTPException


@dataclass(frozen=True)
class FormFile:
    """A file field of a form: the name the client gave it (None when it gave none) and its bytes."""

    filename: str | None
    data: bytes


async def read_form(request: Request, *, max_files: int, max_fields: int) -> list[tuple[str, str | FormFile]]:
    """The fields of the request's form, in the order sent: ``(field name, text or FormFile)``, every file read.

    Parameters
    ----------
    request : Request
        The request with a multipart (or url-encoded) body.
    max_files, max_fields : int
        Most file fields and text fields the form may hold.

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
                fields.append((name, FormFile(value.filename, await value.read())))
            else:
                fields.append((name, value))
    finally:
        await form.close()
    return fields
