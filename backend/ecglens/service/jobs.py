"""Analysis and hardening jobs: the `Executor` interface, and `run_analysis` / `run_hardening`, the functions
every executor calls.

`LocalExecutor` (default) runs jobs on a thread pool in the API process; `CeleryExecutor` queues them on a Redis
broker for `ecglens.service.worker` processes. Either way `run_analysis(analysis_id)` claims the job in the database,
loads the record and the classifier (once per model per process), screens the whole record (`ecglens.screen`),
runs `ecglens.explain` on the most probable window of each finding (or on the window asked for) and
`ecglens.robustness` on the first, with a progress callback that writes progress to the database (and, while
it explains, the current best segments: `ProgressWriter.partial`), and stores the result JSON, or marks the job
failed with the reason in words (`service.fitting.failure_reason`). It is idempotent: a job already done or failed
is left alone, and a job whose worker died (no progress for ``job_lease_s``) is taken over.

Hardening jobs (``POST /models/{name}/harden``, table ``hardening_jobs``) follow the same pattern:
`run_hardening(job_id)` claims the row, runs `ecglens.service.hardening_job.run_hardening_job` on the MIT-BIH folder of
`Settings.mitdb_dir` with the same progress writer, and stores the new model's summary or the failure reason. A job
takes minutes with few progress calls, so a heartbeat thread keeps its lease while it runs. `LocalExecutor` runs
them on a pool of their own (one thread), so a long fine-tuning never holds up analyses.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import func, or_, select, update

from ecglens.agent.explain import explain
from ecglens.datasets.mitdb import DS1, default_data_dir
from ecglens.explanation import Segment
from ecglens.formats.annotations import segment_coverage
from ecglens.reports.summary import summarize
from ecglens.robustness import robustness
from ecglens.screening import screen
from ecglens.service.broker import CELERY_TASK, HARDEN_CELERY_TASK, celery_app
from ecglens.service.classifier_cache import CLASSIFIERS, ClassifierCache
from ecglens.service.config import Settings
from ecglens.service.db import DONE, FAILED, QUEUED, RUNNING, Analysis, HardeningJob, Model, Record, utcnow
from ecglens.service.fitting import failure_reason
from ecglens.service.grouping import stored_annotations
from ecglens.service.hardening_job import run_hardening_job
from ecglens.service.runtime import Runtime
from ecglens.service.signals import load_ecg

log = logging.getLogger("ecglens.jobs")

# Progress split: the screening is quick, the explanations are most of the work, the robustness sweep the rest.
SCREEN_SHARE = 5.0
EXPLAIN_SHARE = 70.0
# Windows a default analysis explains: the most probable window of each finding, at most this many.
MAX_EXPLAINED_WINDOWS = 3
# Classifier rows per call while a job runs: a big batch (choosing the window of a 30-min record, a localisation
# level) is answered in chunks this size, each one moving the progress bar.
PROGRESS_CHUNK_ROWS = 16
# Seconds between two writes of the explainer's current best segments (`ProgressWriter.partial`); the last is
# always written.
PARTIAL_INTERVAL_S = 0.3
JobTable = type[Analysis] | type[HardeningJob]


class Executor(ABC):
    """Runs analysis jobs somewhere. ``submit`` must return quickly; the job's state lives in the database."""

    @abstractmethod
    def submit(self, analysis_id: str) -> None:
        """Queue the analysis ``analysis_id`` (already in the database with status queued)."""

    @abstractmethod
    def submit_hardening(self, job_id: str) -> None:
        """Queue the hardening job ``job_id`` (already in ``hardening_jobs`` with status queued)."""

    def shutdown(self, wait: bool = False, timeout_s: float | None = None) -> list[str]:
        """Stop accepting jobs; ``wait`` for running ones (up to ``timeout_s``). Default: do not wait. Returns
        the ids of jobs put back in the queue."""
        return []


class LocalExecutor(Executor):
    """In-process thread pools (the default when no broker is configured): analyses on ``workers`` threads,
    hardening jobs one at a time on a thread of their own.

    Parameters
    ----------
    runtime : Runtime
        Database and blobs of this process.
    workers : int
        Analysis threads. Default: ``runtime.settings.workers``.
    """

    def __init__(self, runtime: Runtime, workers: int | None = None):
        self.runtime = runtime
        self.pool = ThreadPoolExecutor(
            max_workers=workers or runtime.settings.workers, thread_name_prefix="ecglens-job"
        )
        # One fine-tuning at a time: each uses the CPU for minutes and sets torch's process-wide threads.
        self.hardening_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ecglens-harden")
        self.futures: dict[str, Future[str]] = {}

    def submit(self, analysis_id: str) -> None:
        self.futures[analysis_id] = self.pool.submit(_run_logged, analysis_id, self.runtime)

    def submit_hardening(self, job_id: str) -> None:
        self.futures[job_id] = self.hardening_pool.submit(_run_logged, job_id, self.runtime, run_hardening)

    def wait(self, job_id: str, timeout: float | None = None) -> str:
        """Block until the analysis or hardening job submitted as ``job_id`` ends; return its final status."""
        return self.futures[job_id].result(timeout=timeout)

    def shutdown(self, wait: bool = False, timeout_s: float | None = None) -> list[str]:
        """Stop taking jobs. With ``timeout_s``: ask running jobs to stop (`Runtime.stopping`: they go back to
        the queue at their next progress call), wait up to ``timeout_s`` for them, put any still running back
        in the queue, and return their ids (their threads are abandoned; the process may exit)."""
        if timeout_s is None:
            self.pool.shutdown(wait=wait, cancel_futures=not wait)
            self.hardening_pool.shutdown(wait=wait, cancel_futures=not wait)
            return []
        self.runtime.stopping.set()
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.hardening_pool.shutdown(wait=False, cancel_futures=True)
        deadline = time.monotonic() + timeout_s
        left: list[str] = []
        for job_id, future in list(self.futures.items()):
            if future.cancelled():
                continue
            try:
                future.result(timeout=max(0.0, deadline - time.monotonic()))
            except FutureTimeout:
                left.append(job_id)
            except Exception:  # noqa: BLE001 - logged by _run_logged; its state is in the database
                pass
        for job_id in left:  # still running past the timeout: back to the queue; the thread's last write is void
            for table in (Analysis, HardeningJob):
                requeue(self.runtime, table, job_id)
        return left


class CeleryExecutor(Executor):
    """Queues jobs on the Celery broker at ``runtime.settings.broker_url`` for `ecglens.service.worker` processes."""

    def __init__(self, runtime: Runtime):
        self.runtime = runtime
        self.app = celery_app(runtime.settings)

    def submit(self, analysis_id: str) -> None:
        self.app.send_task(CELERY_TASK, args=[analysis_id])

    def submit_hardening(self, job_id: str) -> None:
        self.app.send_task(HARDEN_CELERY_TASK, args=[job_id])


def make_executor(runtime: Runtime) -> Executor:
    """`CeleryExecutor` when a broker URL is set, else `LocalExecutor`."""
    return CeleryExecutor(runtime) if runtime.settings.broker_url else LocalExecutor(runtime)


def _run_logged(job_id: str, runtime: Runtime, run: Callable[[str, Runtime], str] | None = None) -> str:
    try:
        return (run or run_analysis)(job_id, runtime)
    except Exception:  # noqa: BLE001 - a pool thread must not die silently
        log.exception("job %s crashed", job_id)
        raise


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.current_thread().name}"


def _age_s(stamp: str | None) -> float:
    if not stamp:
        return float("inf")
    then = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
    return (datetime.now(timezone.utc) - then).total_seconds()


@dataclass
class _Claim:
    record_id: str
    model: str
    distortions: list[str] | None
    query_budget: int
    seed: int
    start_s: float | None


def claim(runtime: Runtime, analysis_id: str, worker: str | None = None) -> tuple[str, _Claim | None]:
    """Take the job if it is queued, or running with a stale lease (its worker died); compare-and-set so only
    one worker wins. Returns (status, claim): claim is None when the job is not ours to run."""
    status, row = _take(runtime, Analysis, analysis_id, worker)
    if row is None:
        return status, None
    return RUNNING, _Claim(row.record_id, row.model, row.distortions, row.query_budget, row.seed, row.start_s)


def _take(runtime: Runtime, table: JobTable, job_id: str, worker: str | None) -> tuple[str, Any]:
    """`claim` for any job table: (status, the row as it was before we took it, detached) or (status, None)."""
    lease = runtime.settings.job_lease_s
    with runtime.sessions() as session:
        row = session.get(table, job_id)
        if row is None:
            return "missing", None
        if row.status in (DONE, FAILED):
            return row.status, None
        if row.status == RUNNING and _age_s(row.heartbeat_at) < lease:
            return "busy", None
        now = utcnow()
        won = session.execute(
            update(table)
            .where(
                table.id == job_id,
                table.status == row.status,
                or_(table.heartbeat_at.is_(None), table.heartbeat_at == row.heartbeat_at),
            )
            .values(
                status=RUNNING,
                attempts=table.attempts + 1,
                started_at=now,
                heartbeat_at=now,
                worker=(worker or worker_name())[:200],
                progress=0.0,
                error=None,
                **_no_partial(table),
            )
        ).rowcount
        session.commit()
        if not won:
            return "busy", None
        session.expunge(row)
        return RUNNING, row


class JobInterrupted(Exception):
    """Raised from a job's progress callback when its process shuts down: the job goes back to the queue."""


def requeue(runtime: Runtime, table: JobTable, job_id: str) -> None:
    """Put a running job of this process back in the queue (shutdown): the next start, or another worker,
    runs it again from the beginning."""
    with runtime.sessions() as session:
        session.execute(
            update(table)
            .where(table.id == job_id, table.status == RUNNING)
            .values(status=QUEUED, heartbeat_at=None, worker=None, progress=0.0, **_no_partial(table))
        )
        session.commit()


def _no_partial(table: JobTable) -> dict[str, Any]:
    """The values that drop an analysis' partial segments (a job that ends or starts again shows none)."""
    return {"partial": None} if table is Analysis else {}


class ProgressWriter:
    """The progress callback given to explain / robustness: maps their fraction into ``[lo, hi]`` percent and
    writes it (and the heartbeat) to the database at most every ``interval_s`` seconds. The bar never moves back:
    an analysis feeds one writer from two sources (the explainer's own stages and the rows answered over the query
    budget), which need not agree.

    Accepts ``progress(fraction)`` with fraction in [0, 1], or ``progress(done, total)``. ``table`` is the job's
    table (`Analysis` or `HardeningJob`). Default: Analysis.

    For an analysis, `partial` is `explain`'s ``partial`` callback: it stores the current best segments with the
    job's progress, as ``{"window": window, "segments": [...]}`` in ``analyses.partial``, at most every
    ``partial_interval_s`` seconds (default `PARTIAL_INTERVAL_S`); one held back is written at the next progress
    call past the interval, and `flush` writes it at once. ``window`` names the window explained: ``{"index",
    "count", "finding", "start_s"}``.
    """

    def __init__(
        self,
        runtime: Runtime,
        analysis_id: str,
        lo: float,
        hi: float,
        interval_s: float = 0.5,
        *,
        table: JobTable = Analysis,
        window: dict[str, Any] | None = None,
        partial_interval_s: float = PARTIAL_INTERVAL_S,
    ):
        self.runtime, self.analysis_id, self.lo, self.hi = runtime, analysis_id, lo, hi
        self.interval_s = interval_s
        self.table = table
        self.window, self.partial_interval_s = window, partial_interval_s
        self._last = 0.0
        self._frac = 0.0  # the furthest fraction reported so far
        self._held: list[dict[str, Any]] | None = None  # segments not written yet
        self._written: list[dict[str, Any]] | None = None
        self._partial_at = -float("inf")

    def __call__(self, done: Any = None, total: Any = None, *args: Any, **kwargs: Any) -> None:
        if self.runtime.stopping.is_set():
            raise JobInterrupted(self.analysis_id)
        try:
            frac = float(done) / float(total) if total else float(done if done is not None else 0.0)
        except (TypeError, ValueError, ZeroDivisionError):
            return
        frac = min(max(frac, self._frac), 1.0)
        self._frac = frac
        now = time.monotonic()
        if self._held is not None and now - self._partial_at >= self.partial_interval_s:
            self.flush()
        if now - self._last < self.interval_s and frac < 1.0:
            return
        self._last = now
        self.write(self.lo + frac * (self.hi - self.lo))

    def write(self, percent: float) -> None:
        t = self.table
        with self.runtime.sessions() as session:
            session.execute(
                update(t)
                .where(t.id == self.analysis_id, t.status == RUNNING)
                .values(progress=round(percent, 1), heartbeat_at=utcnow())
            )
            session.commit()

    def partial(self, segments: Sequence[Segment]) -> None:
        """Hold ``segments`` (the explainer's current best) and write them unless the last write is under
        ``partial_interval_s`` old; the same segments as the last written are not written again."""
        held = [s.to_dict() for s in segments]
        if held == (self._held if self._held is not None else self._written):
            return
        self._held = held
        if time.monotonic() - self._partial_at >= self.partial_interval_s:
            self.flush()

    def flush(self) -> None:
        """Write the segments held back, if any."""
        if self._held is None:
            return
        segments, self._held = self._held, None
        self._partial_at = time.monotonic()
        self._written = segments
        with self.runtime.sessions() as session:
            session.execute(
                update(Analysis)
                .where(Analysis.id == self.analysis_id, Analysis.status == RUNNING)
                .values(partial={"window": self.window, "segments": segments}, heartbeat_at=utcnow())
            )
            session.commit()


def run_analysis(
    analysis_id: str,
    runtime: Runtime | None = None,
    *,
    worker: str | None = None,
    classifiers: ClassifierCache | None = None,
) -> str:
    """Run one analysis job to the end; return its final status ("done", "failed"), or "busy" / "missing" when
    the job is not this worker's to run (another live worker has it, or it does not exist).

    Parameters
    ----------
    analysis_id : str
        Row id in ``analyses``.
    runtime : Runtime or None
        Database and blobs. Default: built from the environment's `Settings`.
    worker : str or None
        Name recorded on the job. Default: host:pid:thread.
    classifiers : ClassifierCache or None
        Where loaded classifiers are kept. Default: the process-wide cache.
    """
    if runtime is None:
        runtime = Runtime(Settings())
    status, job = claim(runtime, analysis_id, worker)
    if job is None:
        return status
    started = time.monotonic()
    try:
        result, queries = _explain_and_stress(runtime, analysis_id, job, classifiers or CLASSIFIERS)
    except JobInterrupted:
        requeue(runtime, Analysis, analysis_id)
        log.info("analysis %s interrupted by shutdown: back in the queue", analysis_id)
        return QUEUED
    except Exception as exc:  # noqa: BLE001 - any failure is recorded on the job, never lost
        reason = failure_reason(exc)
        log.warning("analysis %s failed: %s: %s", analysis_id, type(exc).__name__, exc)
        _finish(runtime, analysis_id, FAILED, started, error=reason)
        return FAILED
    _finish(runtime, analysis_id, DONE, started, result=json.dumps(result, allow_nan=False), queries=queries)
    return DONE


def _explain_and_stress(
    runtime: Runtime, analysis_id: str, job: _Claim, classifiers: ClassifierCache
) -> tuple[dict[str, Any], int]:
    with runtime.sessions() as session:
        record = session.get(Record, job.record_id)
        model = session.get(Model, job.model)
        if record is None or record.deleted_at is not None:
            raise LookupError(f"record {job.record_id} was deleted")
        if model is None:
            raise LookupError(f"model {job.model!r} is not registered")
        session.expunge_all()
    ecg = load_ecg(record, runtime.blobs)
    clf = classifiers.get(model)
    screening = screen(ecg, clf, progress=ProgressWriter(runtime, analysis_id, 0.0, SCREEN_SHARE))
    # A window asked for is explained alone; by default, the most probable window of each finding.
    chosen = [(None, job.start_s)] if job.start_s is not None else screening.windows_to_explain(MAX_EXPLAINED_WINDOWS)
    step = (EXPLAIN_SHARE - SCREEN_SHARE) / len(chosen)
    windows = []
    for k, (finding, start_s) in enumerate(chosen):
        window = {"index": k, "count": len(chosen), "finding": finding, "start_s": float(start_s)}
        lo = SCREEN_SHARE + k * step
        window_progress = ProgressWriter(runtime, analysis_id, lo, lo + step, window=window)
        # Rows answered over the query budget: the explainer's own measure of its progress, at a finer grain.
        counted = RowProgress(clf, lambda rows, p=window_progress: p(min(1.0, rows / max(1, job.query_budget))))
        explanation = explain(
            ecg,
            counted,
            distortions=job.distortions,
            query_budget=job.query_budget,
            seed=job.seed,
            start_s=start_s,
            progress=window_progress,
            partial=window_progress.partial,
        )
        window_progress.partial(explanation.segments)  # the window's last partial segments are its final ones
        window_progress.flush()
        windows.append(
            {
                "finding": finding or explanation.diagnosis.label,
                "start_s": float(explanation.start_s),
                "explanation": explanation.to_dict(),
            }
        )
    main = windows[0]["explanation"]
    # The robustness sweep tests the first window explained, for the finding that was explained there.
    report = robustness(
        ecg,
        clf,
        distortions=job.distortions,
        seed=job.seed,
        start_s=main["start_s"],
        label=main["diagnosis"]["label"],
        progress=ProgressWriter(runtime, analysis_id, EXPLAIN_SHARE, 100.0),
    )
    result = {
        "explanation": main,
        "robustness": report.to_dict(),
        "screening": screening.to_dict(),
        "windows": [dict(w, explanation=None) if i == 0 else w for i, w in enumerate(windows)],
    }
    coverage = _annotation_coverage(record, runtime, windows)
    if coverage is not None:
        result["annotations"] = coverage
    result["summary"] = summarize(result, ecg=ecg, thresholds=getattr(clf, "thresholds", None))
    queries = screening.queries + sum(int(w["explanation"]["queries"]) for w in windows) + int(report.queries)
    return result, queries


def _annotation_coverage(record: Record, runtime: Runtime, windows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Which annotated beats each explained window's critical segments cover (None: no annotation files)."""
    files = stored_annotations(record, runtime.blobs)
    if not files:
        return None
    out = []
    for window in windows:
        main = window["explanation"]
        segments = main.get("segments", [])
        out.append({"finding": window["finding"], "start_s": window["start_s"], **segment_coverage(files, segments)})
    return {
        "files": [{"filename": a.filename, "annotator": a.annotator, "beat_counts": a.beat_counts()} for a in files],
        "windows": out,
    }


class RowProgress:
    """A classifier whose batches are answered in chunks of `PROGRESS_CHUNK_ROWS` rows, ``on_rows(total rows
    answered)`` called after each, so a job's progress moves with the agent's steps and inside its big batched
    calls, not only between them. Everything else (class names, card fields) passes through; the answers are
    the classifier's own, row for row."""

    def __init__(self, classifier: Any, on_rows: Callable[[int], None], chunk: int = PROGRESS_CHUNK_ROWS):
        self._classifier, self._on_rows, self._chunk = classifier, on_rows, max(1, int(chunk))
        self.rows = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._classifier, name)

    def predict_proba(self, batch: Any) -> Any:
        import numpy as np

        parts = []
        for i in range(0, max(1, len(batch)), self._chunk):
            part = batch[i : i + self._chunk]
            parts.append(self._classifier.predict_proba(part))
            self.rows += len(part)
            self._on_rows(self.rows)
        return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)


def _finish(
    runtime: Runtime,
    analysis_id: str,
    status: str,
    started: float,
    *,
    result: Any = None,
    error: str | None = None,
    queries: int | None = 0,
    table: JobTable = Analysis,
) -> None:
    values: dict[str, Any] = {
        "status": status,
        "finished_at": utcnow(),
        "heartbeat_at": utcnow(),
        "duration_s": round(time.monotonic() - started, 4),
        "error": error,
    }
    if queries is not None:
        values["queries"] = queries
    if status == DONE:
        values.update(progress=100.0, result=result)
    values.update(_no_partial(table))
    with runtime.sessions() as session:
        session.execute(update(table).where(table.id == analysis_id, table.status == RUNNING).values(**values))
        session.commit()


def resume_unfinished(runtime: Runtime, executor: Executor) -> int:
    """Resubmit analyses and hardening jobs left queued or running by a previous run of an in-process executor;
    return how many."""
    resumed = 0
    for table, submit in ((Analysis, executor.submit), (HardeningJob, executor.submit_hardening)):
        with runtime.sessions() as session:
            ids = session.scalars(select(table.id).where(table.status.in_((QUEUED, RUNNING)))).all()
            session.execute(update(table).where(table.status == RUNNING).values(status=QUEUED, heartbeat_at=None))
            session.commit()
        for job_id in ids:
            submit(job_id)
        resumed += len(ids)
    return resumed


def queue_depth(runtime: Runtime) -> int:
    """Jobs waiting (status queued)."""
    with runtime.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(Analysis).where(Analysis.status == QUEUED)) or 0)


ProgressCallback = Callable[..., None]


# ------------------------------------------------------------------------------------------------- hardening
def mitdb_folder(settings: Settings) -> Path:
    """The MIT-BIH folder hardening jobs train on: ``settings.mitdb_dir``, else where `ecglens.hardening` looks
    (`ecglens.datasets.mitdb.default_data_dir`).

    Raises
    ------
    FileNotFoundError
        The folder, or one of the DS1 records' ``.hea`` / ``.dat`` / ``.atr`` files in it, is missing; the message
        names the folder, the missing files and the setting (``ECGLENS_MITDB_DIR``).
    """
    if settings.mitdb_dir is None:
        try:
            folder = default_data_dir()
        except FileNotFoundError as exc:
            raise FileNotFoundError(f"{exc}; or set ECGLENS_MITDB_DIR") from None
    else:
        folder = Path(settings.mitdb_dir)
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: MIT-BIH folder (ECGLENS_MITDB_DIR) does not exist")
    missing = [
        f"{name}{ext}" for name in DS1 for ext in (".hea", ".dat", ".atr") if not (folder / f"{name}{ext}").is_file()
    ]
    if missing:
        shown = ", ".join(missing[:6]) + (f" and {len(missing) - 6} more" if len(missing) > 6 else "")
        raise FileNotFoundError(
            f"{folder}: MIT-BIH folder (ECGLENS_MITDB_DIR) lacks the DS1 training files hardening needs: {shown}"
        )
    return folder


class _Heartbeat:
    """While the block runs, refresh the job's ``heartbeat_at`` every ``every_s`` seconds, so a live worker keeps
    its lease through long stretches without a progress call (loading DS1, a fine-tuning epoch)."""

    def __init__(self, runtime: Runtime, table: JobTable, job_id: str, every_s: float):
        self.runtime, self.table, self.job_id, self.every_s = runtime, table, job_id, every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{job_id[:8]}", daemon=True)

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()

    def _beat(self) -> None:
        t = self.table
        while not self._stop.wait(self.every_s):
            try:
                with self.runtime.sessions() as session:
                    session.execute(
                        update(t).where(t.id == self.job_id, t.status == RUNNING).values(heartbeat_at=utcnow())
                    )
                    session.commit()
            except Exception:  # noqa: BLE001 - a missed beat only shortens the lease; the job goes on
                log.warning("hardening %s: heartbeat not written", self.job_id, exc_info=True)


def run_hardening(job_id: str, runtime: Runtime | None = None, *, worker: str | None = None) -> str:
    """Run one hardening job to the end; return its final status ("done", "failed"), or "busy" / "missing" when
    the job is not this worker's to run. The pattern of `run_analysis`: claim, run with progress, store.

    Parameters
    ----------
    job_id : str
        Row id in ``hardening_jobs``.
    runtime : Runtime or None
        Database, blobs and settings (``mitdb_dir``, ``model_dir``). Default: built from the environment's
        `Settings`.
    worker : str or None
        Name recorded on the job. Default: host:pid:thread.
    """
    if runtime is None:
        runtime = Runtime(Settings())
    status, job = _take(runtime, HardeningJob, job_id, worker)
    if job is None:
        return status
    started = time.monotonic()
    where = ""
    try:
        params = job.params or {}
        folder = mitdb_folder(runtime.settings)
        # A reader's error deep in DS1 loading may not name the folder: the job's reason does.
        where = f" (hardening {job.parent_model!r} into {job.new_model!r} on the MIT-BIH records in {folder})"
        with _Heartbeat(runtime, HardeningJob, job_id, every_s=min(60.0, runtime.settings.job_lease_s / 4)):
            new = run_hardening_job(
                runtime,
                job.parent_model,
                new_name=job.new_model,
                created_by=job.created_by,
                seed=int(params.get("seed", 0)),
                epochs=params.get("epochs"),
                agent_windows=params.get("agent_windows"),
                soup=params.get("soup"),
                data_dir=folder,
                job_id=job_id,
                progress=ProgressWriter(runtime, job_id, 0.0, 100.0, table=HardeningJob),
            )
    except JobInterrupted:
        requeue(runtime, HardeningJob, job_id)
        log.info("hardening %s interrupted by shutdown: back in the queue", job_id)
        return QUEUED
    except Exception as exc:  # noqa: BLE001 - any failure is recorded on the job, never lost
        reason = f"{type(exc).__name__}: {exc}{where}"[:2000]
        log.warning("hardening %s failed: %s", job_id, type(exc).__name__)
        _finish(runtime, job_id, FAILED, started, error=reason, queries=None, table=HardeningJob)
        return FAILED
    _finish(runtime, job_id, DONE, started, result=hardening_summary(new), queries=None, table=HardeningJob)
    return DONE


def hardening_summary(new: dict[str, Any]) -> dict[str, Any]:
    """What a hardening job stores as its result: the new model's name, kind, SHA-256 and parent, and its card's
    identity, DS1-validation figures before / after and recipe (the full card is on ``GET /models``). The
    server-side file path is left out, as ``GET /models`` leaves it out."""
    card = new.get("card") or {}
    training = card.get("training") or {}
    metrics = card.get("metrics") or {}
    return {
        "name": new["name"],
        "kind": new["kind"],
        "sha256": new["sha256"],
        "parent": new["parent"],
        "card": {
            "name": card.get("name"),
            "version": card.get("version"),
            "parent": card.get("parent"),
            "classes": card.get("classes"),
            "metrics": {
                k: metrics.get(k)
                for k in (
                    "ds1_validation",
                    "ds1_validation_parent",
                    "ds1_validation_noisy",
                    "ds1_validation_noisy_parent",
                )
            },
            "training": {
                k: training.get(k) for k in ("parent", "seed", "epochs", "steps_per_epoch", "agent_pool", "timing_s")
            },
        },
    }
