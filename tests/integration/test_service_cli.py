"""`ecglens serve` on a real port (first admin key written to a 0600 file, never printed), `ecglens create-key`
(the key alone on the last line), `ecglens db upgrade`."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ecglens(*args: str, env: dict[str, str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ecglens.cli", *args], env=env, capture_output=True, text=True, timeout=120, **kw
    )


@pytest.fixture
def env(tmp_path) -> dict[str, str]:
    return {
        **os.environ,
        "ECGLENS_DATA_DIR": str(tmp_path / "var"),
        "ECGLENS_DATABASE_URL": "",
        "ECGLENS_BROKER_URL": "",
        "OMP_NUM_THREADS": "1",
    }


def test_serve_writes_the_first_admin_key_to_a_private_file(tmp_path, env):
    port = _free_port()
    log = tmp_path / "serve.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ecglens.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        else:
            raise AssertionError(log.read_text())
        key_file = Path(env["ECGLENS_DATA_DIR"]) / "admin-key.txt"
        assert str(key_file) in log.read_text()
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        token = key_file.read_text().strip()
        response = httpx.get(f"http://127.0.0.1:{port}/api/v1/keys", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 200 and response.json()["data"][0]["role"] == "admin"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert token not in log.read_text()  # printed where to find it, never the key itself


def test_create_key_prints_the_key_alone_on_the_last_line(env):
    done = _ecglens("create-key", "--role", "clinician", "--name", "dr who", env=env)
    assert done.returncode == 0, done.stderr
    token = done.stdout.strip().splitlines()[-1]
    assert token.startswith("ecgl_") and " " not in token
    from ecglens.service import Settings
    from ecglens.service.auth import authenticate
    from ecglens.service.runtime import Runtime

    runtime = Runtime(Settings(_env_file=None, data_dir=env["ECGLENS_DATA_DIR"]))
    with runtime.sessions() as session:
        key = authenticate(session, token)
        assert key is not None and key.role == "clinician" and key.name == "dr who"


def test_create_key_with_an_unknown_role_fails_cleanly(env):
    done = _ecglens("create-key", "--role", "janitor", "--name", "x", env=env)
    assert done.returncode == 2 and "janitor" in done.stderr and "Traceback" not in done.stderr


def test_db_upgrade_then_audit_verify_on_an_empty_log(env):
    assert _ecglens("db", "upgrade", env=env).returncode == 0
    done = _ecglens("audit", "verify", env=env)  # no key yet: verify says so and makes none
    assert done.returncode == 2 and "no audit key" in done.stderr
    assert _ecglens("audit", "verify", env={**env, "ECGLENS_AUDIT_KEY": "k" * 32}).returncode == 0


def test_create_key_then_verify_anchors_the_cli_event(env):
    assert _ecglens("create-key", "--role", "auditor", env=env).returncode == 0
    done = _ecglens("audit", "verify", env=env)
    assert done.returncode == 0 and "1 events" in done.stdout and "no checkpoints" not in done.stdout
