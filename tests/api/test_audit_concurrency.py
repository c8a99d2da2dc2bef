"""Concurrent appenders never break the audit chain, and a verify running while they append reports it intact.

Threads of one process (group commit), two `AuditLog`s with their own engines in one process, and two processes
on the same SQLite file (an API process and a worker share the data directory) append at once while another
thread verifies over and over; every verify, and the final one, must find the chain intact, with as many
events as were appended and the checkpoints matching.
"""

from __future__ import annotations

import multiprocessing
import threading
from pathlib import Path

import pytest
from sqlalchemy import update

from ecglens.service import audit
from ecglens.service.config import Settings
from ecglens.service.db import AuditEvent, AuditHead
from ecglens.service.runtime import Runtime

KEY = b"k" * 32


def _runtime(data_dir: Path, every: int = 7, url: str = "") -> Runtime:
    return Runtime(Settings(data_dir=data_dir, audit_key=KEY.decode(), audit_checkpoint_every=every, database_url=url))


def _hammer(log: audit.AuditLog, n: int, name: str, errors: list[BaseException]) -> None:
    try:
        for i in range(n):
            log.append(action=f"test.{name}", status=200, object_id=str(i))
    except BaseException as exc:  # noqa: BLE001 - reported by the test
        errors.append(exc)


def _process_appender(data_dir: str, n: int, name: str, start) -> None:  # runs in a child process
    runtime = _runtime(Path(data_dir))
    start.wait(30)
    for i in range(n):
        runtime.audit.append(action=f"test.{name}", status=200, object_id=str(i))
    runtime.close()


def _verify_while(runtime: Runtime, done: threading.Event, seen: list[audit.ChainStatus]) -> None:
    while not done.is_set():
        with runtime.sessions() as session:
            seen.append(
                audit.verify(session, runtime.audit_key, checkpoint_file=runtime.settings.audit_checkpoint_file)
            )


def _final(runtime: Runtime) -> audit.ChainStatus:
    with runtime.sessions() as session:
        return audit.verify(session, runtime.audit_key, checkpoint_file=runtime.settings.audit_checkpoint_file)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request) -> str:
    if request.param == "sqlite":
        return ""
    return request.getfixturevalue("fresh_postgres_db")(request.getfixturevalue("postgres_server"))


def test_threads_and_a_second_log_append_while_verify_runs(tmp_path, database_url):
    runtime = _runtime(tmp_path, url=database_url)
    runtime.audit.checkpoint()
    other = _runtime(tmp_path, url=database_url)  # a second AuditLog, engine and lock: like another process
    errors: list[BaseException] = []
    seen: list[audit.ChainStatus] = []
    done = threading.Event()
    verifier = threading.Thread(target=_verify_while, args=(runtime, done, seen))
    appenders = [
        threading.Thread(target=_hammer, args=(log, 60, f"{i}", errors))
        for i, log in enumerate([runtime.audit] * 4 + [other.audit] * 2)
    ]
    verifier.start()
    for t in appenders:
        t.start()
    for t in appenders:
        t.join(120)
    done.set()
    verifier.join(60)
    assert not errors, errors
    bad = [s for s in seen if not s.ok]
    assert seen and not bad, bad[:3]
    final = _final(runtime)
    assert final.ok and final.events == 6 * 60, final
    runtime.close()
    other.close()


def test_two_processes_on_one_sqlite_file_append_while_verify_runs(tmp_path):
    runtime = _runtime(tmp_path)
    runtime.audit.checkpoint()
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Event()
    procs = [ctx.Process(target=_process_appender, args=(str(tmp_path), 80, f"p{i}", start)) for i in range(2)]
    for p in procs:
        p.start()
    errors: list[BaseException] = []
    seen: list[audit.ChainStatus] = []
    done = threading.Event()
    verifier = threading.Thread(target=_verify_while, args=(runtime, done, seen))
    mine = threading.Thread(target=_hammer, args=(runtime.audit, 80, "main", errors))
    start.set()
    verifier.start()
    mine.start()
    for p in procs:
        p.join(180)
    mine.join(120)
    done.set()
    verifier.join(60)
    assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]
    assert not errors, errors
    bad = [s for s in seen if not s.ok]
    assert seen and not bad, bad[:3]
    final = _final(runtime)
    assert final.ok and final.events == 3 * 80, final
    runtime.close()


def test_an_append_between_the_walk_and_the_head_read_is_not_a_cut_tail(tmp_path, monkeypatch):
    """The head read after the walk names an event appended meanwhile: verify walks on and finds it intact."""
    runtime = _runtime(tmp_path, every=1000)
    runtime.audit.checkpoint()  # as a server does at start
    for i in range(3):
        runtime.audit.append(action="test.x", status=200, object_id=str(i))
    real = audit._read_head

    def late_head(session):
        runtime.audit.append(action="test.late", status=200)
        return real(session)

    monkeypatch.setattr(audit, "_read_head", late_head)
    status = _final(runtime)
    assert status.ok and status.events == 4, status
    runtime.close()


def test_a_head_moved_back_onto_a_kept_event_is_still_named(tmp_path):
    runtime = _runtime(tmp_path, every=1000)
    runtime.audit.checkpoint()  # as a server does at start
    for i in range(3):
        runtime.audit.append(action="test.x", status=200, object_id=str(i))
    with runtime.sessions() as session:
        row = session.get(AuditEvent, 2)
        session.execute(update(AuditHead).where(AuditHead.id == 1).values(seq=2, hash=row.hash))
        session.commit()
    status = _final(runtime)
    assert not status.ok and status.first_bad_seq == 2 and "ends at 3" in status.reason, status
    runtime.close()
