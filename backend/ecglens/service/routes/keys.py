"""``/keys``: API keys (admin): create (the token is shown once), list, revoke."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Request, status
from sqlalchemy import select

from ecglens.service.auth import create_key
from ecglens.service.db import ApiKey, utcnow
from ecglens.service.deps import ADMINS, EVERYONE, Access, RuntimeDep, SessionDep, audit_object, not_found
from ecglens.service.schemas import KeyCreate, KeyCreated, KeyPublic, ListOf, Problem

router = APIRouter(prefix="/keys", tags=["keys"])
_ERRORS = {401: {"model": Problem}, 403: {"model": Problem}, 404: {"model": Problem}}


@router.post("", status_code=status.HTTP_201_CREATED, response_model=KeyCreated, responses=_ERRORS)
def create_api_key(
    body: KeyCreate, request: Request, session: SessionDep, key: Annotated[ApiKey, Access("key.create", "key", ADMINS)]
) -> KeyCreated:
    """A new key; its ``token`` is in this answer only."""
    new = create_key(session, body.role, body.name, created_by=key.id)
    audit_object(request, object_id=new.id)
    row = session.get(ApiKey, new.id)
    return KeyCreated(**KeyPublic.model_validate(row).model_dump(), token=new.token)


@router.get("", response_model=ListOf[KeyPublic], responses=_ERRORS)
def read_api_keys(session: SessionDep, key: Annotated[ApiKey, Access("key.list", "key", ADMINS)]) -> ListOf[KeyPublic]:
    rows = session.scalars(select(ApiKey).order_by(ApiKey.created_at)).all()
    return ListOf[KeyPublic](data=[KeyPublic.model_validate(r) for r in rows], count=len(rows))


@router.get("/me", response_model=KeyPublic, responses=_ERRORS)
def read_own_key(key: Annotated[ApiKey, Access("key.whoami", "key", EVERYONE)]) -> KeyPublic:
    """The calling key's name and role (the browser shows what the signed-in key may do)."""
    return KeyPublic.model_validate(key)


@router.delete("/{key_id}", status_code=status.HTTP_204_NO_CONTENT, responses=_ERRORS)
def revoke_api_key(
    key_id: str,
    session: SessionDep,
    runtime: RuntimeDep,
    key: Annotated[ApiKey, Access("key.revoke", "key", ADMINS)],
) -> None:
    """Revoke a key (it stops working at once; the row stays for the audit trail)."""
    row = session.get(ApiKey, key_id)
    if row is None or row.revoked_at is not None:
        raise not_found("key", key_id)
    # Out of this process's key cache before the commit, so no request that read the row before it can put the
    # key back (other API processes drop it within auth.KEY_CACHE_S).
    runtime.key_cache.revoke(row.id)
    row.revoked_at = utcnow()
    session.commit()
