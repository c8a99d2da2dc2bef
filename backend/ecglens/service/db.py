"""Database tables (SQLAlchemy 2 ORM) and the engine / session factory.

Tables: ``api_keys``, ``blobs``, ``records``, ``analyses``, ``models``, ``hardening_jobs``, ``audit_events`` and
``audit_head``.
The schema is owned by the Alembic migrations in ``ecglens/migrations``; `init_db` runs them at start-up.
Record metadata (the reader's header fields) is stored in ``records.header`` and never logged or audited.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Index, Integer, String, Text, create_engine, event, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from ecglens.migrations import upgrade

# Analysis states, in the order a job passes through them.
QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"
ANALYSIS_STATES = (QUEUED, RUNNING, DONE, FAILED)


def utcnow() -> str:
    """Current UTC time as fixed-width ISO text (``2024-05-01T12:00:00.123456Z``): sorts and hashes exactly."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def new_id() -> str:
    return uuid.uuid4().hex


class Base(DeclarativeBase):
    pass


class ApiKey(Base):
    """An API key. ``secret_hash`` is SHA-256 of the secret part; the secret itself is shown once."""

    __tablename__ = "api_keys"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20))
    secret_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[str] = mapped_column(String(32), default=utcnow)
    created_by: Mapped[str | None] = mapped_column(String(32), nullable=True)
    revoked_at: Mapped[str | None] = mapped_column(String(32), nullable=True)


class Blob(Base):
    """Uploaded bytes, content-addressed: the file lives at ``blobs/<sha[:2]>/<sha>``."""

    __tablename__ = "blobs"
    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[str] = mapped_column(String(32), default=utcnow)


class Record(Base):
    """One uploaded ECG record. ``files`` lists ``{"filename", "sha256", "size"}`` of the bytes it came from."""

    __tablename__ = "records"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(255))
    filename: Mapped[str] = mapped_column(String(255))
    format: Mapped[str] = mapped_column(String(40))
    fs: Mapped[float] = mapped_column(Float)
    leads: Mapped[list[str]] = mapped_column(JSON)
    n_samples: Mapped[int] = mapped_column(Integer)
    duration_s: Mapped[float] = mapped_column(Float)
    files: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    header: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_by: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    created_at: Mapped[str] = mapped_column(String(32), default=utcnow)
    deleted_at: Mapped[str | None] = mapped_column(String(32), nullable=True)
    deleted_by: Mapped[str | None] = mapped_column(String(32), nullable=True)

    @property
    def warnings(self) -> list[str]:
        """The readers' warnings: faults read past in the record's files (``header["warnings"]``) and in its
        annotation files (each ``files`` entry's), shown beside the record."""
        out = [str(w) for w in (self.header or {}).get("warnings") or []]
        for entry in self.files or []:
            out += [f"{entry.get('filename')}: {w}" for w in entry.get("warnings") or []]
        return out


class JobState:
    """The columns every queued job shares (analyses, hardening jobs): its state, progress, failure reason and
    the lease a worker holds while it runs (`ecglens.service.jobs` claims, heartbeats and finishes both kinds alike)."""

    status: Mapped[str] = mapped_column(String(16), default=QUEUED, index=True)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    worker: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_by: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    created_at: Mapped[str] = mapped_column(String(32), default=utcnow)
    started_at: Mapped[str | None] = mapped_column(String(32), nullable=True)
    heartbeat_at: Mapped[str | None] = mapped_column(String(32), nullable=True)
    finished_at: Mapped[str | None] = mapped_column(String(32), nullable=True)
    duration_s: Mapped[float | None] = mapped_column(Float, nullable=True)


class Analysis(JobState, Base):
    """One explain + robustness job on a record. ``result`` is the JSON text of
    ``{"explanation": ..., "robustness": ...}`` once done; ``error`` says why when failed. ``partial``, while it
    runs, is ``{"window": {"index", "count", "finding", "start_s"}, "segments": [...]}``: the explainer's current
    best segments (as the result's) in the window being explained; None before the first and once the job ends."""

    __tablename__ = "analyses"
    __table_args__ = (Index("ix_analyses_record_id_created_at", "record_id", "created_at"),)  # migration 0004
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    record_id: Mapped[str] = mapped_column(String(32), ForeignKey("records.id"), index=True)
    model: Mapped[str] = mapped_column(String(200))
    distortions: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    query_budget: Mapped[int] = mapped_column(Integer)
    seed: Mapped[int] = mapped_column(Integer)
    start_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    result: Mapped[str | None] = mapped_column(Text, nullable=True)
    queries: Mapped[int] = mapped_column(Integer, default=0)
    partial: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)

    def result_dict(self) -> dict[str, Any] | None:
        return json.loads(self.result) if self.result else None


class Model(Base):
    """A registered classifier. ``kind``: builtin | torchscript | onnx | http; ``spec`` is what
    `ecglens.load_classifier` takes (``"builtin"``, a file path under ``data_dir/models``, or a URL)."""

    __tablename__ = "models"
    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))
    spec: Mapped[str] = mapped_column(Text)
    card: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_by: Mapped[str | None] = mapped_column(String(32), nullable=True)
    created_at: Mapped[str] = mapped_column(String(32), default=utcnow)


class HardeningJob(JobState, Base):
    """One ``POST /models/{name}/harden`` job: fine-tune ``parent_model`` into ``new_model``
    (`ecglens.service.hardening_job.run_hardening_job`). States and lease: `JobState`.

    ``params`` is ``{"seed", "epochs", "agent_windows", "soup"}`` (None = the recipe's default); ``result``, once done,
    is the new model's ``{"name", "kind", "sha256", "parent", "card"}`` with a summary of its card;
    ``error`` says why when failed.
    """

    __tablename__ = "hardening_jobs"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    parent_model: Mapped[str] = mapped_column(String(200), ForeignKey("models.name"), index=True)
    new_model: Mapped[str] = mapped_column(String(200), index=True)
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


class AuditEvent(Base):
    """One audit event. ``hash`` = SHA-256 of ``prev_hash`` + the event's canonical JSON (see `ecglens.service.audit`)."""

    __tablename__ = "audit_events"
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    at: Mapped[str] = mapped_column(String(32), index=True)
    actor_key_id: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    actor_name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    role: Mapped[str | None] = mapped_column(String(20), nullable=True)
    action: Mapped[str] = mapped_column(String(60), index=True)
    object_type: Mapped[str | None] = mapped_column(String(20), nullable=True)
    object_id: Mapped[str | None] = mapped_column(String(200), nullable=True, index=True)
    record_id: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    client: Mapped[str | None] = mapped_column(String(100), nullable=True)
    status: Mapped[int] = mapped_column(Integer)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditHead(Base):
    """The last event's seq and hash (one row), so a deleted tail of the chain is noticed too."""

    __tablename__ = "audit_head"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(Integer)
    hash: Mapped[str] = mapped_column(String(64))


def make_engine(url: str, pool_size: int = 5, max_overflow: int = 10, pool_timeout: float = 30.0) -> Engine:
    """An engine for ``url`` with a pool of ``pool_size`` connections (+ ``max_overflow``); SQLite gets WAL, a
    busy timeout and foreign keys so threads and processes share it.

    The service sizes the pools (`Runtime`): one for requests and jobs, one of its own for the audit appends,
    so requests holding every request connection can never starve the audit of the one it needs.
    """
    pool = dict(pool_size=pool_size, max_overflow=max_overflow, pool_timeout=pool_timeout)
    if url.startswith("sqlite"):
        if url in ("sqlite://", "sqlite:///:memory:"):
            pool = {}  # one shared in-memory connection (StaticPool): no pool to size
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, **pool)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(conn: Any, _record: Any) -> None:
            cur = conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True, **pool)


def private_sqlite_file(url: str) -> None:
    """Create the SQLite file 0600 before SQLite does (its -wal and -shm files then take the same mode), or make
    an existing one 0600. Call it before the process opens the database."""
    import os

    from sqlalchemy.engine import make_url

    if not url.startswith("sqlite"):
        return
    path = make_url(url).database
    if not path or path == ":memory:":
        return
    # Never open an existing database file here: closing any descriptor of it drops every POSIX lock this
    # process holds on it, and SQLite's other connections would lose theirs (another process may then delete
    # the -shm file under them: "disk I/O error").
    try:
        if os.path.exists(path):
            os.chmod(path, 0o600)
        else:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except OSError:  # a read-only or foreign-owned file (or a racing creator): SQLite reports what matters
        pass


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def init_db(url: str) -> None:
    """Bring the schema at ``url`` to the newest migration (``alembic upgrade head``)."""
    upgrade(url)


def active_keys(session: Session) -> int:
    """Number of keys not revoked."""
    return len(session.scalars(select(ApiKey.id).where(ApiKey.revoked_at.is_(None))).all())
