"""Service settings: one pydantic-settings class read from ``ECGLENS_*`` environment variables and ``.env``.

Every setting has a default that runs a single-machine server (``make run``): SQLite and blobs under
``./var``, the in-process executor, CORS off.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# List settings accept JSON (``["a", "b"]``), a comma-separated string (``a,b``) or nothing (empty list).
StrList = Annotated[list[str], NoDecode]


class Settings(BaseSettings):
    """Service configuration.

    Attributes
    ----------
    data_dir : Path
        Database file (SQLite default), blob store, decoded-signal cache, registered models and the first admin
        key file. Default: ``./var``.
    database_url : str
        SQLAlchemy URL. Default: empty = ``sqlite:///<data_dir>/ecglens.db``. PostgreSQL:
        ``postgresql+psycopg://user:pass@host:5432/db``.
    broker_url : str
        Celery broker (``redis://host:6379/0``). Default: empty = in-process executor.
    max_upload_mb : float
        Largest request body accepted, in MiB; larger ones get 413 while streaming. Default: 100.
    workers : int
        Threads of the in-process executor. Default: 1.
    allowed_model_hosts : list of str
        Host names (``host`` or ``host:port``) an HTTP classifier endpoint may be registered on. Default: none.
    cors_origins : list of str
        Origins allowed by CORS. Default: none (CORS off).
    metrics_public : bool
        Serve ``/metrics`` without a key (aggregate counts only). Default: False (admin or service key).
    visibility_timeout_s : int
        Celery/Redis: seconds before an unacknowledged job is handed to another worker. Default: 3600.
    job_lease_s : float
        A running job whose progress has not moved for this long may be taken over by another worker. Default: 600.
    frontend_dir : Path or None
        Static frontend served at ``/`` when it holds an ``index.html``. Default: ``frontend/`` of the repository.
    device : str
        Where workers run classifiers: ``"auto"`` (CUDA when a GPU is visible, else CPU), ``"cpu"``, ``"cuda"``,
        ``"cuda:1"``. Default: "auto".
    torch_threads : int
        CPU threads torch may use in this process (`ecglens.threads`); scale out with workers instead.
        Default: 1.
    mitdb_dir : Path or None
        Folder with the MIT-BIH Arrhythmia records (``100.hea``, ``100.dat``, ``100.atr``, ...) that
        ``POST /models/{name}/harden`` fine-tunes on (the API checks it before queuing, the worker reads it).
        Default: None = where `ecglens.hardening` looks, ``$ECGLENS_SHARED_DATA/mitdb`` or ``../shared/data/mitdb``
        beside the repository (`ecglens.datasets.mitdb.default_data_dir`).
    audit_key : SecretStr
        The audit chain's HMAC key (at least 16 characters; `ecglens.service.audit`). Every process writing or
        verifying the audit log needs the same one. Default: empty = ``DATA_DIR/audit-key``, made on first use.
        Set it from a secret store the database's administrators cannot read, or the chain can be forged.
    request_threads : int
        Threads that run requests (synchronous endpoints, uploads, progress polls); each holds at most one
        database connection at a time. Default: 40.
    db_pool_timeout_s : float
        Longest wait for a pooled database connection before the request fails with 503. Default: 30.
    audit_checkpoint_every : int
        Write a keyed checkpoint of the audit chain's head to ``DATA_DIR/audit-checkpoints`` (and the log) every
        this many events, as well as at start and shutdown. Default: 100.
    shutdown_timeout_s : float
        On SIGTERM: how long in-flight requests and running jobs may take before they are cancelled (jobs go
        back to the queue). Default: 20.
    auth_failures_per_minute : int
        Failed authentications allowed per key id and per client address in a minute; more get 429.
        Default: 10.
    """

    model_config = SettingsConfigDict(env_prefix="ECGLENS_", env_file=".env", extra="ignore")

    data_dir: Path = Path("./var")
    database_url: str = ""
    broker_url: str = ""
    max_upload_mb: float = Field(default=100.0, gt=0)
    workers: int = Field(default=1, ge=1, le=64)
    allowed_model_hosts: StrList = Field(default_factory=list)
    cors_origins: StrList = Field(default_factory=list)
    metrics_public: bool = False
    visibility_timeout_s: int = Field(default=3600, ge=1)
    job_lease_s: float = Field(default=600.0, gt=0)
    frontend_dir: Path | None = None
    device: str = "auto"
    torch_threads: int = Field(default=1, ge=1, le=256)
    mitdb_dir: Path | None = None
    audit_key: SecretStr = SecretStr("")
    request_threads: int = Field(default=40, ge=4, le=512)
    db_pool_timeout_s: float = Field(default=30.0, gt=0)
    audit_checkpoint_every: int = Field(default=100, ge=1)
    shutdown_timeout_s: float = Field(default=20.0, gt=0)
    auth_failures_per_minute: int = Field(default=10, ge=1)

    @field_validator("allowed_model_hosts", "cors_origins", mode="before")
    @classmethod
    def _str_list(cls, value: object) -> object:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [part.strip() for part in text.split(",") if part.strip()]
        return value

    @field_validator("mitdb_dir", mode="before")
    @classmethod
    def _empty_is_default(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("audit_key")
    @classmethod
    def _long_enough(cls, value: SecretStr) -> SecretStr:
        if 0 < len(value.get_secret_value().strip()) < 16:
            raise ValueError("ECGLENS_AUDIT_KEY must be at least 16 characters (or empty for DATA_DIR/audit-key)")
        return value

    @field_validator("data_dir", "mitdb_dir")
    @classmethod
    def _absolute(cls, value: Path | None) -> Path | None:
        return None if value is None else value.expanduser().resolve()

    @property
    def db_url(self) -> str:
        """The SQLAlchemy URL in use (``database_url`` or the SQLite file in ``data_dir``)."""
        return self.database_url or f"sqlite:///{self.data_dir / 'ecglens.db'}"

    @property
    def db_pool_size(self) -> int:
        """Connections in the request/job pool: one per request thread, one per job thread (``workers``) and the
        hardening thread, one for the progress poller and two spare for heartbeats."""
        return self.request_threads + self.workers + 4

    @property
    def audit_checkpoint_file(self) -> Path:
        return self.data_dir / "audit-checkpoints"

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs"

    @property
    def cache_dir(self) -> Path:
        """Decoded signals (float32 ``.npy``), derived from the blobs and safe to delete."""
        return self.data_dir / "cache"

    @property
    def model_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def admin_key_file(self) -> Path:
        return self.data_dir / "admin-key.txt"

    @property
    def audit_key_file(self) -> Path:
        """The audit chain's key when ``audit_key`` is not set (made on first use, mode 0600)."""
        return self.data_dir / "audit-key"


def get_settings() -> Settings:
    """Settings from the environment (and ``.env``), read afresh on each call."""
    return Settings()
