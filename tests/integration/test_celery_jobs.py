"""Celery scale-out with real parts: a redis-server, real worker processes (solo pool), a real analysis end to
end, and a worker SIGKILLed mid-job whose job completes on a second worker (late ack + reject on worker lost)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

pytestmark = [pytest.mark.redis, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
CARD = {
    "name": "slowtiny",
    "classes": ["calm", "noisy"],
    "sampling_rate": 360.0,
    "leads": ["MLII", "V1"],
    "window_s": 2.0,
    "output": "logits",
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory) -> Iterator[str]:
    server = shutil.which("redis-server")
    if not server:
        pytest.skip("redis-server not installed")
    root = tmp_path_factory.mktemp("redis")
    port = _free_port()
    proc = subprocess.Popen(
        [server, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no", "--dir", str(root)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    import redis

    client = redis.Redis(host="127.0.0.1", port=port)
    try:
        for _ in range(100):
            try:
                if client.ping():
                    break
            except redis.ConnectionError:
                time.sleep(0.1)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        client.close()
        proc.terminate()
        proc.wait(timeout=20)


@pytest.fixture(scope="module")
def slow_model(tmp_path_factory) -> bytes:
    """A real TorchScript classifier that takes ~20 ms per call (a chain of matrix products), so a job lasts
    long enough to kill its worker in the middle."""
    import torch

    class SlowTiny(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.eye(192) * 0.999, requires_grad=False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            centred = x[:, 0, :] - x[:, 0, :].mean(dim=1, keepdim=True)
            power = (centred**2).mean(dim=1)
            y = torch.ones(192, 192)
            for _ in range(40):
                y = torch.tanh(y @ self.w)
            return torch.stack([2.0 - 12.0 * power, 12.0 * power - 2.0], dim=1) + 0.0 * y.mean()

    path = tmp_path_factory.mktemp("slow") / "slowtiny.pt"
    torch.jit.script(SlowTiny()).save(str(path))
    return path.read_bytes()


@pytest.fixture
def cluster(tmp_path, redis_url, slow_model, synthetic_ecg):
    """The API (CeleryExecutor) on a SQLite file shared with worker processes started by ``start_worker``."""
    sys.path.insert(0, str(REPO / "tests" / "api"))
    from fastapi.testclient import TestClient
    from service_helpers import wfdb_files

    from ecglens.service import Settings, create_app
    from ecglens.service.auth import create_key

    data_dir = tmp_path / "var"
    env = {
        **os.environ,
        "ECGLENS_DATA_DIR": str(data_dir),
        "ECGLENS_BROKER_URL": redis_url,
        "ECGLENS_DATABASE_URL": "",
        "ECGLENS_VISIBILITY_TIMEOUT_S": "4",
        "ECGLENS_JOB_LEASE_S": "2",
        "ECGLENS_DEVICE": "cpu",
        "OMP_NUM_THREADS": "1",
    }
    settings = Settings(
        _env_file=None,
        data_dir=data_dir,
        broker_url=redis_url,
        visibility_timeout_s=4,
        job_lease_s=2,
        frontend_dir=tmp_path / "none",
    )
    app = create_app(settings)
    with app.state.runtime.sessions() as session:
        token = create_key(session, "admin", "celery test").token
    workers: list[subprocess.Popen] = []

    def start_worker(name: str) -> subprocess.Popen:
        log = open(tmp_path / f"{name}.log", "wb")
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "ecglens.service.worker",
                "worker",
                "--pool",
                "solo",
                "--concurrency",
                "1",
                "-n",
                f"{name}@%h",
                "--without-gossip",
                "--without-mingle",
                "--loglevel",
                "INFO",
            ],
            env=env,
            cwd=tmp_path,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        workers.append(proc)
        return proc

    with TestClient(app) as client:
        h = {"Authorization": f"Bearer {token}"}
        files = wfdb_files(synthetic_ecg, "syn", tmp_path / "wfdb")
        record = client.post("/api/v1/records", headers=h, files=[("files", (n, d)) for n, d in files.items()]).json()[
            "data"
        ][0]
        registered = client.post(
            "/api/v1/models", headers=h, data={"card": json.dumps(CARD)}, files={"file": ("slowtiny.pt", slow_model)}
        )
        assert registered.status_code == 201, registered.text
        try:
            yield client, h, record, start_worker, tmp_path
        finally:
            for proc in workers:
                if proc.poll() is None:
                    proc.terminate()
                    try:
                        proc.wait(timeout=20)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()


def _poll(client, h, analysis_id: str, until, timeout_s: float, what: str, log_dir: Path) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        body = client.get(f"/api/v1/analyses/{analysis_id}", headers=h).json()
        if until(body):
            return body
        time.sleep(0.1)
    logs = "\n".join(p.read_text(errors="replace")[-3000:] for p in log_dir.glob("w*.log"))
    raise AssertionError(
        f"{what} not reached in {timeout_s} s; last: {body.get('status')} {body.get('progress')}\n{logs}"
    )


def test_celery_worker_runs_a_real_analysis(cluster):
    client, h, record, start_worker, logs = cluster
    assert client.get("/healthz").json()["executor"] == "CeleryExecutor"
    start_worker("w1")
    created = client.post(
        "/api/v1/analyses", headers=h, json={"record_id": record["id"], "model": "slowtiny", "query_budget": 30}
    )
    assert created.status_code == 202
    done = _poll(client, h, created.json()["id"], lambda b: b["status"] in ("done", "failed"), 120, "done", logs)
    assert done["status"] == "done", done["error"]
    assert done["explanation"]["diagnosis"]["label"] == "calm" and done["robustness"]["label"] == "calm"
    assert done["attempts"] == 1


def test_job_of_a_killed_worker_completes_on_a_second_worker(cluster):
    client, h, record, start_worker, logs = cluster
    first = start_worker("w1")
    created = client.post(
        "/api/v1/analyses", headers=h, json={"record_id": record["id"], "model": "slowtiny", "query_budget": 400}
    ).json()
    running = _poll(
        client, h, created["id"], lambda b: b["status"] == "running" and b["progress"] > 0, 120, "running", logs
    )
    assert running["attempts"] == 1
    os.kill(first.pid, signal.SIGKILL)  # mid-job: no chance to ack or to mark the job
    first.wait(timeout=10)
    assert client.get(f"/api/v1/analyses/{created['id']}", headers=h).json()["status"] == "running"
    start_worker("w2")
    done = _poll(client, h, created["id"], lambda b: b["status"] in ("done", "failed"), 240, "done on w2", logs)
    assert done["status"] == "done", done["error"]
    assert done["attempts"] == 2
    assert np.isfinite(done["robustness"]["score"])
