"""What the API process and the workers share: settings, database engine and sessions, blob store.

One `Runtime` per process; the app keeps it on ``app.state.runtime``, a Celery worker builds its own from the
same ``ECGLENS_*`` settings.
"""
from __future__ import annotations

import os
import secrets
from functools import cached_property

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from ecglens.service.blobs import BlobStore
from ecglens.service.config import Settings
from ecglens.service.db import init_db, make_engine, make_sessionmaker


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
        settings.data_dir.mkdir(parents=True, exist_ok=True)

    @cached_property
    def engine(self) -> Engine:
        if self.migrate:
            init_db(self.settings.db_url)
        return make_engine(self.settings.db_url)

    @cached_property
    def sessions(self) -> sessionmaker[Session]:
        return make_sessionmaker(self.engine)

    @cached_property
    def blobs(self) -> BlobStore:
        return BlobStore(self.settings.blob_dir)

    @cached_property
    def audit_key(self) -> bytes:
        """The audit chain's HMAC key: ``settings.audit_key``, else the ``audit-key`` file in the data directory,
        made on first use (processes starting together agree: the file appears whole, once, by ``os.link``)."""
        given = self.settings.audit_key.get_secret_value().strip()
        if given:
            return given.encode()
        path = self.settings.audit_key_file
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
            raise RuntimeError(f"{path}: audit key shorter than 16 characters; remove the file to make a new one "
                               "(the existing audit chain will then no longer verify)")
        return key.encode()

    def close(self) -> None:
        if "engine" in self.__dict__:
            self.engine.dispose()
