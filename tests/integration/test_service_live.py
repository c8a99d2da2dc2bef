"""A real `ecglens serve` on 127.0.0.1 under load and shutdown: 64 concurrent clients with 100 progress streams
open get no error and every audited request has its event; SIGTERM with a stalled upload in flight and a
running analysis exits, puts the analysis back in the queue and anchors the audit chain."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Live:
    def __init__(self, tmp_path: Path, **env: str):
        self.data = tmp_path / "var"
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = tmp_path / "serve.log"
        full = {
            **os.environ,
            "ECGLENS_DATA_DIR": str(self.data),
            "ECGLENS_DATABASE_URL": "",
            "ECGLENS_BROKER_URL": "",
            "OMP_NUM_THREADS": "1",
            "ECGLENS_DEVICE": "cpu",
            **env,
        }
        with open(self.log, "w") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "ecglens.cli", "serve", "--port", str(self.port), "--log-level", "info"],
                env=full,
                cwd=tmp_path,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 120
        while True:
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            assert time.monotonic() < deadline, self.log.read_text()[-3000:]
            try:
                if httpx.get(f"{self.base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        admin = (self.data / "admin-key.txt").read_text().strip()
        self.admin = {"Authorization": f"Bearer {admin}"}
        made = httpx.post(f"{self.base}/api/v1/keys", headers=self.admin, json={"role": "clinician", "name": "dr"})
        self.clinician = {"Authorization": f"Bearer {made.json()['token']}"}

    def upload(self, ecg_files: dict[str, bytes]) -> str:
        response = httpx.post(
            f"{self.base}/api/v1/records",
            headers=self.clinician,
            timeout=60,
            files=[("files", (n, d)) for n, d in ecg_files.items()],
        )
        assert response.status_code == 201, response.text
        return response.json()["data"][0]["id"]

    def sql(self, statement: str, *args) -> list[tuple]:
        with sqlite3.connect(self.data / "ecglens.db", timeout=30) as conn:
            return conn.execute(statement, args).fetchall()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)


@pytest.fixture
def record_files(synthetic_ecg, tmp_path) -> dict[str, bytes]:
    import wfdb

    folder = tmp_path / "wfdb"
    folder.mkdir()
    wfdb.wrsamp(
        "syn",
        fs=synthetic_ecg.fs,
        units=["mV", "mV"],
        sig_name=list(synthetic_ecg.leads),
        p_signal=synthetic_ecg.signal.T.astype(np.float64),
        fmt=["16", "16"],
        adc_gain=[200.0, 200.0],
        baseline=[0, 0],
        write_dir=str(folder),
    )
    return {n: (folder / n).read_bytes() for n in ("syn.hea", "syn.dat")}


def _queued_analyses(live: Live, record_id: str, n: int) -> list[str]:
    """Analysis rows left queued (never submitted): their progress streams stay open until closed."""
    ids = [f"{i:032x}" for i in range(1, n + 1)]
    key_id = live.clinician["Authorization"].split("_")[1]
    with sqlite3.connect(live.data / "ecglens.db", timeout=30) as conn:
        conn.executemany(
            "INSERT INTO analyses (id, record_id, model, query_budget, seed, status, progress, queries, attempts, "
            "created_by, created_at) VALUES (?, ?, 'builtin', 10, 0, 'queued', 0, 0, 0, ?, "
            "'2026-01-01T00:00:00.000000Z')",
            [(i, record_id, key_id) for i in ids],
        )
    return ids


async def _load(live: Live, analysis_ids: list[str], clients: int, rounds: int) -> tuple[list[int], list[int], int]:
    limits = httpx.Limits(max_connections=clients + len(analysis_ids) + 8)
    async with httpx.AsyncClient(
        base_url=live.base, headers=live.clinician, limits=limits, timeout=httpx.Timeout(120.0)
    ) as http:
        opened = asyncio.Event()
        ready = 0
        stream_status: list[int] = []

        async def follow(aid: str) -> None:
            nonlocal ready
            async with http.stream("GET", f"/api/v1/analyses/{aid}/events") as response:
                stream_status.append(response.status_code)
                async for line in response.aiter_lines():
                    if line.startswith("event: progress"):
                        ready += 1
                        if ready == len(analysis_ids):
                            opened.set()
                        break
                await stop.wait()

        stop = asyncio.Event()
        streams = [asyncio.create_task(follow(a)) for a in analysis_ids]
        await asyncio.wait_for(opened.wait(), 180)
        health = (await http.get("/healthz")).status_code  # answered with every stream open

        statuses: list[int] = []

        async def client() -> None:
            for _ in range(rounds):
                statuses.append((await http.get("/api/v1/records", params={"limit": 50})).status_code)

        await asyncio.gather(*(client() for _ in range(clients)))
        stop.set()
        await asyncio.gather(*streams)
        return statuses, stream_status, health


def test_64_clients_with_100_open_streams_get_no_error_and_every_request_is_audited(tmp_path, record_files):
    # 4 request threads (a 9-connection pool) for 64 clients: the old code deadlocked well before that.
    live = Live(tmp_path, ECGLENS_DB_POOL_TIMEOUT_S="10", ECGLENS_REQUEST_THREADS="4")
    try:
        rid = live.upload(record_files)
        ids = _queued_analyses(live, rid, 100)
        before = live.sql("SELECT COUNT(*) FROM audit_events WHERE action = 'record.list'")[0][0]
        statuses, stream_status, health = asyncio.run(_load(live, ids, clients=64, rounds=4))
        assert health == 200
        assert stream_status == [200] * 100
        assert statuses == [200] * (64 * 4), {s: statuses.count(s) for s in set(statuses)}
        listed = live.sql("SELECT COUNT(*) FROM audit_events WHERE action = 'record.list'")[0][0] - before
        followed = live.sql("SELECT COUNT(*) FROM audit_events WHERE action = 'analysis.events'")[0][0]
        assert (listed, followed) == (64 * 4, 100)
        assert "could not append" not in live.log.read_text()
    finally:
        live.stop()


def test_sigterm_with_a_stalled_upload_and_a_running_analysis_exits_requeues_and_anchors(tmp_path, record_files):
    live = Live(tmp_path, ECGLENS_SHUTDOWN_TIMEOUT_S="3")
    try:
        rid = live.upload(record_files)
        made = httpx.post(
            f"{live.base}/api/v1/analyses",
            headers=live.clinician,
            json={"record_id": rid, "model": "builtin", "query_budget": 100_000},
            timeout=60,  # the first analysis loads torch and the model (the server starts without them)
        )
        assert made.status_code == 202, made.text
        aid = made.json()["id"]
        deadline = time.monotonic() + 120
        while live.sql("SELECT status FROM analyses WHERE id = ?", aid)[0][0] != "running":
            assert time.monotonic() < deadline
            time.sleep(0.2)
        # An upload that sends its headers and a little of its body, then stalls.
        stalled = socket.create_connection(("127.0.0.1", live.port))
        stalled.sendall(
            b"POST /api/v1/records HTTP/1.1\r\nHost: x\r\n"
            + live.clinician["Authorization"].join([b"Authorization: ".decode(), "\r\n"]).encode()
            + b"Content-Type: multipart/form-data; boundary=b\r\n"
            b'Content-Length: 1000000\r\n\r\n--b\r\nContent-Disposition: form-data; name="files"; '
            b'filename="x.csv"\r\n\r\nII\n'
        )
        time.sleep(0.5)
        live.proc.send_signal(signal.SIGTERM)
        live.proc.wait(timeout=90)  # the old server was still up 10 minutes later
        stalled.close()
        assert live.sql("SELECT status FROM analyses WHERE id = ?", aid)[0][0] == "queued"
        head = live.sql("SELECT seq, hash FROM audit_head WHERE id = 1")[0]
        last = json.loads((live.data / "audit-checkpoints").read_text().splitlines()[-1])
        assert (last["seq"], last["hash"]) == head
    finally:
        live.stop()
