"""ASGI middleware: the upload size limit (enforced while the body streams), the audit trail and request metrics."""
from __future__ import annotations

import logging
import time
from typing import Any

import anyio
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ecglens.service import audit
from ecglens.service.metrics import MetricsRegistry
from ecglens.service.runtime import Runtime

log = logging.getLogger("ecglens.service")
# Path parameters that name the audited object.
_OBJECT_PARAMS = ("record_id", "analysis_id", "key_id", "job_id", "name")


class BodyLimitMiddleware:
    """Refuse request bodies over ``max_bytes`` with 413: at once when Content-Length says so, else as soon as
    the streamed bytes pass the limit (so an oversized upload is never read whole)."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes
        declared = dict(scope.get("headers") or []).get(b"content-length")
        seen = 0
        too_big = f"request body over the upload limit of {limit / 2**20:g} MiB"

        async def limited_receive() -> Message:
            nonlocal seen
            if declared is not None and declared.isdigit() and int(declared) > limit:
                raise HTTPException(413, too_big)
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise HTTPException(413, too_big)
            return message

        await self.app(scope, limited_receive, send)


class AuditMiddleware:
    """Append one audit event per audited request (those whose `Access` named an action), with the outcome
    status, before the response goes out. Only ids, names, roles and statuses are written: never bodies."""

    def __init__(self, app: ASGIApp, runtime: Runtime):
        self.app, self.runtime = app, runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        done = False

        async def audited_send(message: Message) -> None:
            nonlocal done
            if message["type"] == "http.response.start" and not done:
                done = True
                await self._write(scope, int(message["status"]))
            await send(message)

        try:
            await self.app(scope, receive, audited_send)
        except Exception:
            if not done:
                done = True
                await self._write(scope, 500)
            raise

    async def _write(self, scope: Scope, status: int) -> None:
        state: dict[str, Any] = scope.get("state") or {}
        spec = state.get("audit")
        if not spec:
            return
        key = state.get("key")
        params = scope.get("path_params") or {}
        object_id = state.get("audit_object_id") or next((str(params[p]) for p in _OBJECT_PARAMS if p in params),
                                                          None)
        record_id = state.get("audit_record_id") or (object_id if spec["object_type"] == "record" else None)
        client = scope.get("client")
        fields = dict(action=spec["action"], status=status, object_type=spec["object_type"], object_id=object_id,
                      record_id=record_id, client=f"{client[0]}" if client else None,
                      actor_key_id=getattr(key, "id", None), actor_name=getattr(key, "name", None),
                      role=getattr(key, "role", None))
        try:
            await anyio.to_thread.run_sync(
                lambda: audit.append(self.runtime.sessions, self.runtime.audit_key, **fields))
        except Exception:  # noqa: BLE001 - log the failure (no content), keep serving
            log.exception("audit: could not append event for %s", spec["action"])


class MetricsMiddleware:
    """Count requests and their latency per method, route template and status."""

    def __init__(self, app: ASGIApp, registry: MetricsRegistry):
        self.app, self.registry = app, registry

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def timed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, timed_send)
        finally:
            template = _route_template(scope)
            self.registry.observe_request(scope.get("method", "GET"), template, status,
                                          time.perf_counter() - started)


def _route_template(scope: Scope) -> str:
    """The matched route as a template (``/api/v1/records/{record_id}``); "static" for the frontend's files and
    "unmatched" otherwise, so arbitrary paths cannot blow up the label set."""
    if scope.get("route") is None:  # the static frontend, or nothing at all
        return "static" if scope.get("endpoint") is not None else "unmatched"
    path = scope.get("path", "")
    for name, value in (scope.get("path_params") or {}).items():
        path = path.replace(f"/{value}", "/{" + name + "}", 1)
    return path
