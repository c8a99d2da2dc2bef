"""Celery worker for analysis and hardening jobs:
``celery -A ecglens.service.worker worker --pool solo --concurrency 1``.

Jobs are acknowledged late and rejected when the worker is lost, so a worker killed mid-job leaves the message
on the broker and another worker runs the job (after the broker's visibility timeout,
``ECGLENS_VISIBILITY_TIMEOUT_S``). Each worker process prefetches one job, loads each classifier once and keeps it
(on CUDA when a GPU is visible: ``ECGLENS_DEVICE``, default "auto"), and writes progress to the shared database.
A hardening job (``ecglens.run_hardening``) fine-tunes on the CPU for minutes, reads the MIT-BIH records from
``ECGLENS_MITDB_DIR`` and writes the new model to the shared data directory; it is acknowledged late too.
"""

from __future__ import annotations

import logging
import os

from celery import Celery
from celery.signals import worker_init, worker_shutting_down

from ecglens.service.broker import CELERY_TASK, HARDEN_CELERY_TASK, celery_app
from ecglens.service.config import Settings
from ecglens.service.jobs import run_analysis, run_hardening
from ecglens.service.runtime import Runtime

log = logging.getLogger("ecglens.worker")
_RETRY_BUSY_S = 5.0


def make_celery(settings: Settings | None = None) -> Celery:
    """The Celery app for ``settings.broker_url`` (`ecglens.service.broker.celery_app`) with the job tasks
    registered."""
    settings = settings or Settings()
    app = celery_app(settings)
    _register(app, settings)
    return app


@worker_init.connect(weak=False)
def _private_files(**_kwargs) -> None:
    os.umask(0o077)  # models and anything else a worker writes to the shared data directory: this user only


def _register(app: Celery, settings: Settings) -> None:
    state: dict[str, object] = {}

    def runtime():
        if "runtime" not in state:
            state["runtime"] = Runtime(settings)
        return state["runtime"]

    @worker_shutting_down.connect(weak=False)
    def _stop_jobs(**_kwargs) -> None:
        # Warm shutdown (SIGTERM): the running job stops at its next progress call and goes back to the queue
        # (its task re-sent below), instead of holding the worker until it ends or being killed mid-write.
        if "runtime" in state:
            state["runtime"].stopping.set()

    @app.task(name=CELERY_TASK, bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=None)
    def run_analysis_task(self, analysis_id: str) -> str:
        status = run_analysis(analysis_id, runtime())
        # "busy": another live worker holds it: look again later, in case that worker dies. "queued": this
        # worker is shutting down and put it back: send it again for the next worker.
        if status in ("busy", "queued"):
            raise self.retry(countdown=_RETRY_BUSY_S)
        return status

    @app.task(name=HARDEN_CELERY_TASK, bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=None)
    def run_hardening_task(self, job_id: str) -> str:
        status = run_hardening(job_id, runtime())
        if status in ("busy", "queued"):  # as for analyses
            raise self.retry(countdown=_RETRY_BUSY_S)
        return status


app = make_celery()
