"""Browser-test fixtures: a real ECG Lens server on 127.0.0.1 (temporary data dir, SQLite, in-process jobs),
API keys made with ``ecglens create-key``, and Debian's chromium driven by Playwright with a fresh profile.

Everything skips cleanly when /usr/bin/chromium or Playwright is missing.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
SERVER_START_S = 90.0


@dataclass
class Server:
    url: str
    keys: dict[str, str]  # role -> bearer token
    names: dict[str, str]  # role -> key name
    data_dir: Path
    log: Path

    def api(
        self,
        path: str,
        role: str = "clinician",
        *,
        body: bytes | None = None,
        content_type: str | None = None,
        method: str | None = None,
    ) -> tuple[int, object]:
        """Call the REST API as ``role``; return (status, parsed JSON or text)."""
        request = urllib.request.Request(self.url + "/api/v1" + path, data=body, method=method)
        request.add_header("Authorization", f"Bearer {self.keys[role]}")
        if content_type:
            request.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                status, raw, ctype = response.status, response.read(), response.headers.get("content-type", "")
        except urllib.error.HTTPError as err:
            status, raw, ctype = err.code, err.read(), err.headers.get("content-type", "")
        return status, (json.loads(raw) if "json" in ctype else raw.decode())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ecglens(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ecglens.cli", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="session")
def server(tmp_path_factory) -> Server:
    """A running server; its keys: clinician, auditor. Stopped (SIGTERM, then SIGKILL) after the session."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is not installed")
    pytest.importorskip("playwright.sync_api")
    root = tmp_path_factory.mktemp("ecglens-browser")
    data = root / "data"
    # Run from the temporary folder so a developer's .env in the repo cannot change the settings.
    # ECGLENS_MODELS_DIR (where the built-in model lives) passes through; other service settings do not.
    env = {k: v for k, v in os.environ.items() if not k.startswith("ECGLENS_") or k == "ECGLENS_MODELS_DIR"}
    env.update({"ECGLENS_DATA_DIR": str(data), "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"})
    port = _free_port()
    log = root / "server.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ecglens.cli",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "warning",
            ],
            env=env,
            cwd=root,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + SERVER_START_S
    while True:
        if proc.poll() is not None:
            pytest.fail(f"the server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=2) as response:
                if response.status == 200:
                    break
        except OSError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the server did not answer /healthz within {SERVER_START_S:.0f} s:\n{log.read_text()[-3000:]}")
        time.sleep(0.3)
    keys, names = {}, {}
    for role, name in (("clinician", "Dr Ada Lovelace"), ("auditor", "Audit Office")):
        done = _ecglens("create-key", "--role", role, "--name", name, env=env, cwd=root)
        assert done.returncode == 0, done.stderr
        keys[role] = done.stdout.strip().splitlines()[-1].strip()
        names[role] = name
    try:
        yield Server(url=url, keys=keys, names=names, data_dir=data, log=log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


class ConsoleLog:
    """Console errors and uncaught page errors seen by one page; some resource errors may be expected."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.expected: list[tuple[str, int]] = []  # (URL suffix, status) of requests meant to fail

    def expect_failure(self, url_suffix: str, status: int) -> None:
        self.expected.append((url_suffix, status))

    def on_console(self, message) -> None:
        if message.type != "error":
            return
        text, url = message.text, (message.location or {}).get("url", "")
        for suffix, status in self.expected:
            if f"status of {status}" in text and url.split("?")[0].endswith(suffix):
                return
        self.errors.append(f"{text} ({url})")

    def on_page_error(self, error) -> None:
        self.errors.append(f"uncaught: {error}")


@pytest.fixture
def browser_page(tmp_path):
    """A chromium page (1280 x 800) in a fresh, empty profile; ``page.console_log`` collects errors."""
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 800},
            accept_downloads=True,
        )
        context.set_default_timeout(20_000)
        page = context.pages[0] if context.pages else context.new_page()
        log = ConsoleLog()
        page.on("console", log.on_console)
        page.on("pageerror", log.on_page_error)
        page.console_log = log
        try:
            yield page
        finally:
            context.close()


@pytest.fixture(scope="session")
def generated_12_lead_csv(tmp_path_factory) -> Path:
    """A deterministic 10-s, 12-lead, 500-Hz record (neurokit2's multi-lead simulator) as CSV with a time column."""
    import neurokit2 as nk

    frame = nk.ecg_simulate(duration=10, sampling_rate=500, heart_rate=72, method="multileads", random_state=7)
    path = tmp_path_factory.mktemp("records") / "sim12.csv"
    times = np.arange(len(frame)) / 500.0
    header = "time_s," + ",".join(frame.columns)
    rows = np.column_stack([times, frame.to_numpy()])
    np.savetxt(path, rows, delimiter=",", header=header, comments="", fmt="%.5f")
    return path


def sign_in(page, server: Server, role: str = "clinician") -> None:
    """Open the app and sign in with ``role``'s key through the form."""
    page.goto(server.url + "/")
    page.fill("#api-key", server.keys[role])
    page.click("#signin-submit")
    page.wait_for_selector("#nav:not([hidden])")


def plot_data(page, div_id: str) -> list[dict]:
    """plotly's trace list of a graph div (x / y arrays included)."""
    return page.evaluate(f"() => JSON.parse(JSON.stringify(document.getElementById('{div_id}').data))")
