"""ASGI middleware: the upload size limit (enforced while the body streams), the audit trail and request metrics."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import anyio
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

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
    status, before the response goes out. Only ids, names, roles and statuses are written: never bodies.

    An access that cannot be audited does not happen: when the append fails, the response is replaced, before
    any of it is sent, by a 503 saying so (and the failure is logged). The appends run on threads and database
    connections of their own, so requests that hold every request thread and connection cannot starve them.
    """

    def __init__(self, app: ASGIApp, runtime: Runtime):
        self.app, self.runtime = app, runtime
        self._limiter: anyio.CapacityLimiter | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = refused = False

        async def audited_send(message: Message) -> None:
            nonlocal started, refused
            if message["type"] == "http.response.start" and not started:
                started = True
                if not await self._write(scope, int(message["status"])):
                    refused = True
                    await _send_audit_failure(send)
                    raise _AuditRefused  # stops the app (a stream too) before any of its answer is sent
            await send(message)

        try:
            await self.app(scope, receive, audited_send)
        except _AuditRefused:
            return
        except Exception:
            if refused:
                return  # the app reacted to the refusal (a task group re-raising it wrapped): already answered
            if not started:
                started = True
                await self._write(scope, 500)
            raise

    async def _write(self, scope: Scope, status: int) -> bool:
        """Append the request's event; False when it could not be written (True when none is due)."""
        state: dict[str, Any] = scope.get("state") or {}
        spec = state.get("audit")
        if not spec:
            return True
        key = state.get("key")
        params = scope.get("path_params") or {}
        object_id = state.get("audit_object_id") or next((str(params[p]) for p in _OBJECT_PARAMS if p in params), None)
        record_id = state.get("audit_record_id") or (object_id if spec["object_type"] == "record" else None)
        if record_id is not None and (len(record_id) > 32 or "," in record_id):
            record_id = None  # several records ("id1,id2" in object_id), or not an id: no single record column
        client = scope.get("client")
        fields = dict(
            action=spec["action"],
            status=status,
            object_type=spec["object_type"],
            object_id=object_id,
            record_id=record_id,
            client=f"{client[0]}" if client else None,
            actor_key_id=getattr(key, "id", None),
            actor_name=getattr(key, "name", None),
            role=getattr(key, "role", None),
        )
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(AUDIT_THREADS)
        try:
            await anyio.to_thread.run_sync(lambda: self.runtime.audit.append(**fields), limiter=self._limiter)
            return True
        except Exception as exc:  # noqa: BLE001 - logged (no content) and the request refused
            log.error(
                "audit: could not append event %s (status %d): %s: %s; the request is refused with 503",
                spec["action"],
                status,
                type(exc).__name__,
                str(exc)[:200],
            )
            return False


class _AuditRefused(Exception):
    """Raised into the app when its request's audit event could not be written."""


# Threads for audit appends (they are serialised anyway; a few keep the queue short).
AUDIT_THREADS = 4
_AUDIT_FAILED = json.dumps(
    {"detail": "the audit log could not record this request, so it was refused; try again (the server log says why)"}
).encode()


async def _send_audit_failure(send: Send) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 503,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(_AUDIT_FAILED)).encode()),
                (b"cache-control", b"no-store"),
                (b"retry-after", b"5"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": _AUDIT_FAILED, "more_body": False})


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
            self.registry.observe_request(scope.get("method", "GET"), template, status, time.perf_counter() - started)


def _route_template(scope: Scope) -> str:
    """The matched route as a template (``/api/v1/records/{record_id}``); "static" for the frontend's files and
    "unmatched" otherwise, so arbitrary paths cannot blow up the label set."""
    if scope.get("route") is None:  # the static frontend, or nothing at all
        return "static" if scope.get("endpoint") is not None else "unmatched"
    path = scope.get("path", "")
    for name, value in (scope.get("path_params") or {}).items():
        path = path.replace(f"/{value}", "/{" + name + "}", 1)
    return path


# The frontend loads its own scripts and plotly.js from this origin and talks only to it; plotly and the
# templates set inline styles, hence 'unsafe-inline' for styles only (never for scripts).
FRONTEND_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
    "font-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
# FastAPI's /docs and /redoc pages load Swagger UI / ReDoc from jsdelivr and start them with an inline script.
DOCS_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; img-src 'self' data: https://fastapi.tiangolo.com "
    "https://cdn.redoc.ly; worker-src 'self' blob:; connect-src 'self'; object-src 'none'; "
    "base-uri 'none'; frame-ancestors 'none'"
)
_DOCS_PATHS = ("/docs", "/redoc")
# Health data (records, signals, results, the audit log): never kept by a browser or proxy cache.
_NO_STORE_PREFIXES = ("/api/", "/metrics", "/healthz")


class SecurityHeadersMiddleware:
    """Security headers on every response (CSP, nosniff, frame denial, no referrer) and ``Cache-Control:
    no-store`` on the API's, unless the endpoint set its own."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        csp = DOCS_CSP if path.startswith(_DOCS_PATHS) else FRONTEND_CSP
        extra = [
            (b"content-security-policy", csp.encode()),
            (b"x-content-type-options", b"nosniff"),
            (b"x-frame-options", b"DENY"),
            (b"referrer-policy", b"no-referrer"),
            (b"cross-origin-opener-policy", b"same-origin"),
        ]
        if path.startswith(_NO_STORE_PREFIXES):
            extra.append((b"cache-control", b"no-store"))

        async def secured_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or [])
                present = {name.lower() for name, _ in headers}
                headers += [(name, value) for name, value in extra if name not in present]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, secured_send)


class AdmissionMiddleware:
    """At most ``limit`` requests between arriving and starting their response; the rest wait here, holding no
    thread and no connection.

    Before its response starts a request may hold one pooled connection (its session is closed only after
    FastAPI has validated the response, which for a sync endpoint itself waits for a request thread), so with
    more requests in that stretch than connections, threads waiting for a connection and sessions waiting for a
    thread deadlock. ``limit`` = the request pool's connections for requests (`Settings.request_threads`), so
    that wait never happens. A progress stream leaves the count when its stream starts."""

    def __init__(self, app: ASGIApp, limit: int):
        self.app, self.limit = app, limit
        self._slots: anyio.Semaphore | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self._slots is None:
            self._slots = anyio.Semaphore(self.limit)
        slots = self._slots
        await slots.acquire()
        held = True

        async def admitted_send(message: Message) -> None:
            nonlocal held
            if message["type"] == "http.response.start" and held:
                held = False
                slots.release()
            await send(message)

        try:
            await self.app(scope, receive, admitted_send)
        finally:
            if held:
                slots.release()
