"""Injected dependencies: the database session, the calling key, and per-endpoint access checks.

Every endpoint declares its access with `Access(action, object_type, roles)`: it names the audit action first
(so refused requests are audited too), then authenticates the bearer key (401, or 429 when throttled) and checks
its role (403). A key found valid is taken from `Runtime.key_cache` for a few seconds (`ecglens.service.auth.
KeyCache`; revoking drops it there).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from ecglens.service.auth import ADMIN, AUDITOR, CLINICIAN, SERVICE, authenticate, token_key_id
from ecglens.service.db import ApiKey
from ecglens.service.runtime import Runtime

# Who may do what (the role x endpoint matrix; tests/api/test_roles.py walks it).
EVERYONE = (CLINICIAN, AUDITOR, ADMIN, SERVICE)
UPLOADERS = (CLINICIAN, ADMIN, SERVICE)  # upload records, start analyses
SIGNAL_READERS = (CLINICIAN, ADMIN, SERVICE)  # samples and results (service: its own only)
AUDIT_READERS = (AUDITOR, ADMIN)
ADMINS = (ADMIN,)

_bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer ecgl_...`")


async def get_runtime(request: Request) -> Runtime:
    return request.app.state.runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def get_session(runtime: RuntimeDep) -> AsyncIterator[Session]:
    # Async, so that closing the session (giving its connection back) runs on the event loop: the exit of a
    # sync generator dependency waits for a request thread, and with every thread waiting for a connection
    # held by sessions waiting to close, the server deadlocked (seen at 64 clients with 8 threads).
    session = runtime.sessions()
    try:
        yield session
    finally:
        session.close()


# Closed when the endpoint returns, before the response is sent: a request never holds its connection while
# its audit event is written or its response streams.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]


async def _authenticate(request: Request, creds: HTTPAuthorizationCredentials | None) -> ApiKey:
    if creds is None or creds.scheme.lower() != "bearer" or not creds.credentials:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing API key (Authorization: Bearer <key>)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    runtime: Runtime = request.app.state.runtime
    token = creds.credentials
    key_id = token_key_id(token)
    client = request.client.host if request.client else None
    wait = runtime.auth_throttle.retry_after(key_id, client)
    if wait > 0:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            f"too many failed authentications for this key or address; retry in {wait:.0f} s",
            headers={"Retry-After": str(max(1, int(wait + 0.999)))},
        )
    key = runtime.key_cache.get(token)
    if key is None:
        key = await run_in_threadpool(_look_up_key, runtime, token)
        if key is None:
            runtime.auth_throttle.failed(key_id, client)
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED, "invalid or revoked API key", headers={"WWW-Authenticate": "Bearer"}
            )
        runtime.key_cache.put(token, key)
    request.state.key = key
    return key


def _look_up_key(runtime: Runtime, token: str) -> ApiKey | None:
    # A session of its own, closed before the endpoint's session opens a connection: a request still holds at
    # most one connection at a time. The key comes back detached with every column loaded.
    with runtime.sessions() as session:
        key = authenticate(session, token)
        if key is not None:
            session.expunge(key)
        return key


async def current_key(
    request: Request, creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> ApiKey:
    """The active key of the caller (401 when absent or invalid)."""
    return await _authenticate(request, creds)


CurrentKey = Annotated[ApiKey, Depends(current_key)]


def Access(action: str | None, object_type: str | None, roles: tuple[str, ...]) -> Any:  # noqa: N802
    """A dependency returning the caller's key when its role is in ``roles`` (401 no key, 403 wrong role).

    Parameters
    ----------
    action : str or None
        Audit action ("record.read"); None for endpoints that are not audited (health, model list, metrics).
    object_type : str or None
        Audited object type ("record", "analysis", "model", "key", "audit").
    roles : tuple of str
        Roles allowed.
    """

    # Async: a key found in the cache is checked on the event loop, without a trip through a request thread.
    async def check(
        request: Request, creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
    ) -> ApiKey:
        if action is not None:
            request.state.audit = {"action": action, "object_type": object_type}
        key = await _authenticate(request, creds)
        if key.role not in roles:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                f"role {key.role!r} may not {action or 'use this endpoint'} (allowed: {', '.join(roles)})",
            )
        return key

    return Depends(check)


def audit_object(request: Request, object_id: str | None = None, record_id: str | None = None) -> None:
    """Name the object (and its record) of this request's audit event when the path does not."""
    if object_id is not None:
        request.state.audit_object_id = object_id
    if record_id is not None:
        request.state.audit_record_id = record_id


def not_found(kind: str, object_id: str) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, f"{kind} {object_id[:64]!r} not found")


def owns(key: ApiKey, created_by: str | None) -> bool:
    """Whether ``key`` may see an object created by ``created_by``: a service key sees only its own."""
    return key.role != SERVICE or created_by == key.id
