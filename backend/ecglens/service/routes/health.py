"""``/healthz`` (no key): the database answers and which executor runs jobs."""

from __future__ import annotations

from fastapi import APIRouter, Request
from sqlalchemy import text

import ecglens
from ecglens.service.deps import RuntimeDep
from ecglens.service.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
def read_health(request: Request, runtime: RuntimeDep) -> Health:
    try:
        with runtime.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        db_ok = True
    except Exception:  # noqa: BLE001 - health reports, never raises
        db_ok = False
    executor = type(request.app.state.executor).__name__
    return Health(status="ok" if db_ok else "degraded", database=db_ok, executor=executor, version=ecglens.__version__)
