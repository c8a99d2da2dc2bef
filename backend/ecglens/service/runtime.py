"""What the API process and the workers share: settings, database engine and sessions, blob store.

One `Runtime` per process; the app keeps it on ``app.state.runtime``, a Celery worker builds its own from the
same ``ECGLENS_*`` settings.
"""

from __future__ import annotations

import os
import secrets
import threading
from functools import cached_property

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from ecglens.service.audit import AuditLog
from ecglens.service.auth import AuthThrottle, KeyCache
from ecglens.service.blobs import BlobStore
from ecglens.service.config import Settings
from ecglens.service.db import init_db, make_engine, make_sessionmaker, private_sqlite_file
from ecglens.service.responses import BodyCache


class Runtime:
    """Per-process service state built from `Settings`.

    Parameters
    ----------
    settings : Settings
        Where the data lives and how jobs run.
    migrate : bool
        Run the Alembic migrations on first use of the database. Default: True.
    """

    def __init__(self, settings: Settings, migrate: bool = True):
        self.settings = settings
        self.migrate = migrate
        private_dir(settings.data_dir)
        # Set on shutdown: running jobs stop at their next progress call and go back to the queue.
        self.stopping = threading.Event()

    @cached_property
    def engine(self) -> Engine:
        """Requests and jobs: ``db_pool_size`` connections, one per request thread and job thread and a few
        for the progress poller and heartbeats, so no holder of one ever waits for another."""
        private_sqlite_file(self.settings.db_url)
        if self.migrate:
            init_db(self.settings.db_url)
        return make_engine(
            self.settings.db_url,
            pool_size=self.settings.db_pool_size,
            max_overflow=0,
            pool_timeout=self.settings.db_pool_timeout_s,
        )

    @cached_property
    def sessions(self) -> sessionmaker[Session]:
        return make_sessionmaker(self.engine)

    @cached_property
    def audit_engine(self) -> Engine:
        """The audit appends' own pool: appends are serialised in-process, so two connections are plenty, and no
        request can hold them."""
        self.engine  # noqa: B018 - migrated first
        return make_engine(
            self.settings.db_url, pool_size=2, max_overflow=0, pool_timeout=self.settings.db_pool_timeout_s
        )

    @cached_property
    def audit_sessions(self) -> sessionmaker[Session]:
        return make_sessionmaker(self.audit_engine)

    @cached_property
    def blobs(self) -> BlobStore:
        return BlobStore(self.settings.blob_dir)

    @cached_property
    def audit_key(self) -> bytes:
        """The audit chain's HMAC key: ``settings.audit_key``, else the ``audit-key`` file in the data directory,
        made on first use (processes starting together agree: the file appears whole, once, by ``os.link``)."""
        return self.load_audit_key(create=True)

    def load_audit_key(self, create: bool) -> bytes:
        """The audit key; with ``create=False`` (verifying) a missing key is an error, never a fresh key."""
        given = self.settings.audit_key.get_secret_value().strip()
        if given:
            return given.encode()
        path = self.settings.audit_key_file
        if not path.exists() and not create:
            raise FileNotFoundError(
                f"no audit key: set ECGLENS_AUDIT_KEY or restore {path}; the chain cannot be "
                "verified without the key it was written under"
            )
        if not path.exists():
            tmp = path.with_name(f".audit-key.{os.getpid()}.{secrets.token_hex(4)}")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_hex(32) + "\n")
            try:
                os.link(tmp, path)  # fails if another process made the key first: theirs is kept
            except FileExistsError:
                pass
            finally:
                tmp.unlink()
        key = path.read_text().strip()
        if len(key) < 16:
            raise RuntimeError(
                f"{path}: audit key shorter than 16 characters; remove the file to make a new one "
                "(the existing audit chain will then no longer verify)"
            )
        return key.encode()

    @cached_property
    def auth_throttle(self) -> AuthThrottle:
        return AuthThrottle(self.settings.auth_failures_per_minute)

    @cached_property
    def analysis_bodies(self) -> BodyCache:
        """Serialised bodies of finished analyses (`GET /analyses/{id}`), 16 MiB at most."""
        return BodyCache()

    @cached_property
    def key_cache(self) -> KeyCache:
        """Keys recently found valid (`ecglens.service.auth.KeyCache`); revoking a key drops it here."""
        return KeyCache()

    @cached_property
    def audit(self) -> AuditLog:
        """This process's audit log: appends on `audit_sessions`, keyed checkpoints in the data directory."""
        return AuditLog(
            self.audit_sessions,
            self.audit_key,
            self.settings.audit_checkpoint_file,
            every=self.settings.audit_checkpoint_every,
        )

    def close(self) -> None:
        for name in ("audit_engine", "engine"):
            if name in self.__dict__:
                self.__dict__[name].dispose()


def private_dir(path) -> None:
    """Make ``path`` (and missing parents) and restrict it to this user (0700): it holds health data."""
    from pathlib import Path

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        os.chmod(path, 0o700)
    except OSError:  # not ours (a mounted volume owned by root): what it allows is the operator's choice
        pass
