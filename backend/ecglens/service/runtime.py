"""What the API process and the workers share: settings, database engine and sessions, blob store.

One `Runtime` per process; the app keeps it on ``app.state.runtime``, a Celery worker builds its own from the
same ``ECGLENS_*`` settings.
"""
from __future__ import annotations

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

    def close(self) -> None:
        if "engine" in self.__dict__:
            self.engine.dispose()
