"""Fixtures for the REST API tests: an app per test on SQLite (and on a real PostgreSQL server started here),
one API key per role, a small WFDB record written by wfdb, and a tiny real TorchScript classifier."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from service_helpers import TINY_CARD, Api, make_api, wfdb_files

POSTGRES_BIN = Path("/usr/lib/postgresql/15/bin")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A throw-away PostgreSQL 15 cluster on a free 127.0.0.1 port (run as the unprivileged `postgres` user when
    we are root); yields a libpq URL prefix ``postgresql+psycopg://ecglens@127.0.0.1:PORT``."""
    initdb, pg_ctl = POSTGRES_BIN / "initdb", POSTGRES_BIN / "pg_ctl"
    if not (initdb.exists() and pg_ctl.exists()):
        initdb_w, pg_ctl_w = shutil.which("initdb"), shutil.which("pg_ctl")
        if not (initdb_w and pg_ctl_w):
            pytest.skip("PostgreSQL server binaries not installed")
        initdb, pg_ctl = Path(initdb_w), Path(pg_ctl_w)
    root = Path(tempfile.mkdtemp(prefix="ecglens-pg-"))
    run_as: dict[str, int] = {}
    if os.geteuid() == 0:  # initdb and postgres refuse to run as root
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root without an unprivileged `postgres` user")
        os.chown(root, user.pw_uid, user.pw_gid)
        run_as = {"user": user.pw_uid, "group": user.pw_gid}
    port = free_port()
    data = root / "data"
    subprocess.run(
        [str(initdb), "-D", str(data), "-U", "ecglens", "--auth=trust", "-E", "UTF8", "--no-sync"],
        check=True,
        capture_output=True,
        timeout=120,
        **run_as,
    )
    subprocess.run(
        [
            str(pg_ctl),
            "-D",
            str(data),
            "-l",
            str(root / "pg.log"),
            "-w",
            "-t",
            "60",
            "-o",
            f"-h 127.0.0.1 -p {port} -k {root} -F",
            "start",
        ],
        check=True,
        capture_output=True,
        timeout=90,
        **run_as,
    )
    try:
        yield f"postgresql+psycopg://ecglens@127.0.0.1:{port}"
    finally:
        subprocess.run(
            [str(pg_ctl), "-D", str(data), "-m", "fast", "-w", "stop"], capture_output=True, timeout=60, **run_as
        )
        shutil.rmtree(root, ignore_errors=True)


def _fresh_postgres_db(server: str) -> str:
    import psycopg

    port = server.rsplit(":", 1)[1]
    name = f"t{os.getpid()}_{time.monotonic_ns()}"
    with psycopg.connect(f"host=127.0.0.1 port={port} user=ecglens dbname=postgres", autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return f"{server}/{name}"


@pytest.fixture
def fresh_postgres_db():
    """A function: a new empty database on the session's PostgreSQL server -> its SQLAlchemy URL (a fixture, so
    test modules need not import this conftest by name, which is ambiguous beside tests/browser/conftest.py)."""
    return _fresh_postgres_db


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def api(request, tmp_path) -> Iterator[Api]:
    """The app on SQLite, then on PostgreSQL; 2 MiB upload limit."""
    url = _fresh_postgres_db(request.getfixturevalue("postgres_server")) if request.param == "postgres" else ""
    yield from make_api(tmp_path, url, max_upload_mb=2)


@pytest.fixture
def sqlite_api(tmp_path) -> Iterator[Api]:
    """The app on SQLite only (for the long matrix and fuzz tests); 1 MiB upload limit."""
    yield from make_api(tmp_path, "", max_upload_mb=1)


@pytest.fixture
def wfdb_record(synthetic_ecg, tmp_path) -> dict[str, bytes]:
    """The 10-s 2-lead synthetic record as a WFDB pair ``syn.hea`` + ``syn.dat``."""
    return wfdb_files(synthetic_ecg, "syn", tmp_path / "wfdb")


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> tuple[bytes, dict[str, Any]]:
    """A real TorchScript classifier (bytes) and its card: logits from the power of lead MLII, so realistic
    noise flips "calm" to "noisy"."""
    import torch

    class Tiny(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            centred = x[:, 0, :] - x[:, 0, :].mean(dim=1, keepdim=True)
            power = (centred**2).mean(dim=1)
            return torch.stack([2.0 - 12.0 * power, 12.0 * power - 2.0], dim=1)

    path = tmp_path_factory.mktemp("tiny") / "tiny.pt"
    torch.jit.script(Tiny()).save(str(path))
    return path.read_bytes(), dict(TINY_CARD)
