"""The FastAPI app factory: ``create_app(settings=None)``.

Routes live under ``/api/v1`` (``/healthz`` and ``/metrics`` also at the root), OpenAPI at ``/docs``, plotly.js
from the Python plotly package at ``/static/vendor/plotly.min.js``, and the static frontend at ``/`` when
``frontend/index.html`` exists. Migrations run when the app is built.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import numpy as np
from fastapi import APIRouter, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

import ecglens
from ecglens.classifiers import BUILTIN, models_dir
from ecglens.reports.basics import delineate
from ecglens.service.config import Settings
from ecglens.service.db import Model, utcnow
from ecglens.service.jobs import LocalExecutor, make_executor, resume_unfinished
from ecglens.service.metrics import MetricsRegistry
from ecglens.service.middleware import (
    AdmissionMiddleware,
    AuditMiddleware,
    BodyLimitMiddleware,
    MetricsMiddleware,
    SecurityHeadersMiddleware,
)
from ecglens.service.progress import ProgressHub
from ecglens.service.routes import analyses, audit, distortions, exports, health, keys, metrics, models, records
from ecglens.service.runtime import Runtime
from ecglens.threads import configure_torch_threads

log = logging.getLogger("ecglens.service")
API_PREFIX = "/api/v1"
REPO_FRONTEND = Path(__file__).resolve().parents[3] / "frontend"
_TAGS = [
    {
        "name": "records",
        "description": "Upload ECG records (WFDB, EDF, CSV, JSON, DICOM, HL7 aECG, FHIR, zip) and "
        "read them back for display.",
    },
    {
        "name": "analyses",
        "description": "Explain + robustness jobs on a record with a registered classifier, and "
        "their exports (FHIR Observation, PDF report).",
    },
    {"name": "models", "description": "The classifier registry, and admin hardening jobs."},
    {"name": "audit", "description": "Who did what: the hash-chained audit log (auditor, admin)."},
    {"name": "keys", "description": "API keys (admin)."},
]


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the API for ``settings`` (default: from ``ECGLENS_*`` environment variables and ``.env``)."""
    settings = settings or Settings()
    configure_torch_threads(settings.torch_threads)
    runtime = Runtime(settings)
    runtime.engine  # noqa: B018 - migrate now, so a bad database URL fails at start, not on a request
    runtime.audit_key  # noqa: B018 - and an unusable audit key too, not as lost audit events
    _register_builtin(runtime)
    executor = make_executor(runtime)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Every request thread holds at most one pooled connection: the pool has one per thread (db_pool_size).
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.request_threads
        runtime.audit.checkpoint()  # anchor the chain's head as this process found it
        await anyio.to_thread.run_sync(warm_reads)
        if isinstance(executor, LocalExecutor):
            resumed = resume_unfinished(runtime, executor)
            if resumed:
                log.info("resumed %d unfinished analyses", resumed)
        yield
        # Shutdown (after the server stopped taking requests and the in-flight ones ended or were cancelled):
        # running jobs go back to the queue, then the audit head is anchored once more.
        runtime.stopping.set()
        left = await anyio.to_thread.run_sync(lambda: executor.shutdown(timeout_s=settings.shutdown_timeout_s))
        if left:
            log.warning(
                "shutdown: %d job(s) still running after %.0f s, put back in the queue: %s",
                len(left),
                settings.shutdown_timeout_s,
                ", ".join(left),
            )
        try:
            runtime.audit.checkpoint()
        except Exception:  # noqa: BLE001 - the database may be what failed; say so and exit anyway
            log.exception("shutdown: could not write the audit checkpoint")
        runtime.close()

    app = FastAPI(
        title="ECG Lens",
        version=ecglens.__version__,
        lifespan=lifespan,
        openapi_tags=_TAGS,
        description="Explain and stress-test black-box ECG classifiers. Authenticate with "
        "`Authorization: Bearer <API key>` (create one with `ecglens create-key`).",
    )
    app.state.runtime = runtime
    app.state.executor = executor
    app.state.metrics = MetricsRegistry()
    app.state.progress = ProgressHub(runtime, analyses.EVENT_POLL_S)

    api = APIRouter(prefix=API_PREFIX)
    for module in (records, analyses, distortions, exports, models, audit, keys, health, metrics):
        api.include_router(module.router)
    app.include_router(api)
    app.include_router(health.router)
    app.include_router(metrics.router)

    # Added innermost first: metrics see everything, the audit sees the final status, the limit wraps the body.
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["*"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_upload_bytes)
    app.add_middleware(AuditMiddleware, runtime=runtime)
    app.add_middleware(SecurityHeadersMiddleware)  # outside the audit: its 503 gets the headers too
    app.add_middleware(AdmissionMiddleware, limit=settings.request_threads)
    app.add_middleware(MetricsMiddleware, registry=app.state.metrics)

    plotly_js = _plotly_js()
    if plotly_js is not None:

        @app.get("/static/vendor/plotly.min.js", include_in_schema=False)
        def plotly_min_js() -> FileResponse:
            return FileResponse(plotly_js, media_type="text/javascript")

    frontend = settings.frontend_dir or REPO_FRONTEND
    if (Path(frontend) / "index.html").is_file():  # mounted last: API routes win
        app.mount("/", StaticFiles(directory=frontend, html=True), name="frontend")
    return app


def warm_reads() -> None:
    """Import what the first record read needs before the first request: the clinical basics' delineation
    (neurokit2, with scikit-learn and matplotlib: ~1,000 modules, 4 s on a quiet core) was imported by the first
    ``GET /records/{id}``, and 64 clients waited behind that import (read p95 13 s in benchmarks/service_load.py
    at 64 clients). Torch is not among them: it comes with the first analysis."""
    t = np.arange(5000) / 500.0
    strip = np.exp(-((((t * 1.2) % 1.0 - 0.3) / 0.012) ** 2))  # ten seconds of narrow beats
    try:
        delineate(strip, 500.0)
    except Exception:  # noqa: BLE001 - a warm-up only: the read itself reports what fails
        log.exception("warming the record reads failed")


def _plotly_js() -> Path | None:
    try:
        import plotly
    except ImportError:  # pragma: no cover
        return None
    path = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    return path if path.is_file() else None


def _register_builtin(runtime: Runtime) -> None:
    """Put the shipped classifier in the registry as "builtin" (its card from ``models/builtin.json``)."""
    card_file = models_dir() / f"{BUILTIN}.json"
    try:
        card = json.loads(card_file.read_text()) if card_file.is_file() else {}
    except (OSError, ValueError):
        card = {}
    with runtime.sessions() as session:
        row = session.get(Model, BUILTIN)
        if row is None:
            session.add(Model(name=BUILTIN, kind="builtin", spec=BUILTIN, card=card, created_at=utcnow()))
        elif card and row.card != card:
            row.card = card
        session.commit()
