"""The Celery side both ends share: the task names and the configured Celery app for ``Settings.broker_url``.

`ecglens.service.jobs.CeleryExecutor` sends tasks by name on this app; `ecglens.service.worker` registers the
tasks on it and runs them. Neither imports the other.
"""

from __future__ import annotations

from celery import Celery

from ecglens.service.config import Settings
from ecglens.threads import configure_torch_threads

CELERY_TASK = "ecglens.run_analysis"
HARDEN_CELERY_TASK = "ecglens.run_hardening"


def celery_app(settings: Settings | None = None) -> Celery:
    """The Celery app for ``settings.broker_url`` (default: ``redis://127.0.0.1:6379/0``), no tasks registered.

    Jobs are acknowledged late and rejected when the worker is lost; each worker process prefetches one job; a
    lost worker's job goes back to the queue after ``settings.visibility_timeout_s``.
    """
    settings = settings or Settings()
    configure_torch_threads(settings.torch_threads)
    app = Celery("ecglens", broker=settings.broker_url or "redis://127.0.0.1:6379/0")
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        broker_connection_retry_on_startup=True,
        # A lost worker's job is restored to the queue once its visibility timeout has passed; sweep for such
        # jobs a few times per timeout (capped at every 10 s) rather than kombu's default 100 s.
        broker_transport_options={
            "visibility_timeout": settings.visibility_timeout_s,
            "unacked_restore_interval": min(10, max(1, settings.visibility_timeout_s // 3)),
            "unacked_restore_throttle": 1,
        },
        worker_hijack_root_logger=False,
    )
    return app
