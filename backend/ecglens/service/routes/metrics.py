"""``/metrics``: Prometheus text. Needs an admin or service key unless ``ECGLENS_METRICS_PUBLIC`` is true
(the figures are aggregate counts, never record data)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import PlainTextResponse
from fastapi.security import HTTPAuthorizationCredentials
from starlette.concurrency import run_in_threadpool

from ecglens.service.auth import ADMIN, SERVICE
from ecglens.service.deps import Access, RuntimeDep, _bearer

router = APIRouter(tags=["metrics"])
_check = Access(None, None, (ADMIN, SERVICE)).dependency


@router.get(
    "/metrics", response_class=PlainTextResponse, responses={200: {"content": {"text/plain; version=0.0.4": {}}}}
)
async def read_metrics(
    request: Request,
    runtime: RuntimeDep,
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> PlainTextResponse:
    """Requests, latency, analyses by status, queue depth, job durations, classifier queries."""
    if not runtime.settings.metrics_public:
        await _check(request, creds)
    text = await run_in_threadpool(request.app.state.metrics.render, runtime)
    return PlainTextResponse(text, media_type="text/plain; version=0.0.4; charset=utf-8")
