"""Service under load and attack: a real ``ecglens serve`` on 127.0.0.1, on SQLite and on PostgreSQL.

For each database this starts a fresh server (temporary data directory; PostgreSQL: a throw-away cluster from the
Debian server binaries, as tests/api/conftest.py makes one), uploads a synthetic record, and then:

* load: 1, 4, 16, 64, 128 concurrent clients (aiohttp, in this process) for ``--seconds`` each, mixing reads
  (record list of 50, a record, its signal decimated for display, an analysis), analyses (``POST /analyses``,
  builtin model, small budget) and progress streams (``/analyses/{id}/events`` followed to its end); per level:
  requests/s, p50 / p95 of the reads, errors (any non-2xx or transport error), audit events written vs audited
  requests made, and the server's and the client's CPU time per request;
* streams: ``--streams`` progress streams held open at once, and ``/healthz`` latency meanwhile;
* fuzz (SQLite): ``--fuzz`` hostile uploads from tests/api/upload_cases.py, counting 5xx, with the server's
  memory during that phase alone: its RSS when the phase starts and its peak during it (the kernel's high-water
  mark, VmHWM, reset through ``/proc/PID/clear_refs`` when the phase starts);
* valid upload (SQLite): a fresh server (default upload limit) takes one ``--upload-mb`` WFDB record (12 leads,
  500 Hz, format 16, generated here); its RSS growth while the upload is parsed and stored (peak minus the RSS
  before), divided by the upload's size.

Prints a markdown table and writes it to ``benchmarks/results/service_load.md`` with the command and date.

    .venv/bin/python benchmarks/service_load.py                  # defaults: both databases, 10 s per level
    .venv/bin/python benchmarks/service_load.py --db sqlite --levels 1,64 --seconds 5 --fuzz 200
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import pwd
import random
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "api"))
POSTGRES_BIN = Path("/usr/lib/postgresql/15/bin")
AUDITED_PREFIX = "/api/v1/"
# New analyses per level: each is seconds of CPU for the one job thread; more only queue up behind it and
# load the next level.
MAX_NEW_ANALYSES = 4


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


class Postgres:
    """A throw-away PostgreSQL cluster on a free port (as the unprivileged ``postgres`` user when root)."""

    def __init__(self, root: Path):
        self.root = root
        initdb, self.pg_ctl = POSTGRES_BIN / "initdb", POSTGRES_BIN / "pg_ctl"
        if not initdb.exists():
            raise RuntimeError("PostgreSQL server binaries not installed (scripts/install-system-deps.sh)")
        self.run_as: dict[str, int] = {}
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(root, user.pw_uid, user.pw_gid)
            self.run_as = {"user": user.pw_uid, "group": user.pw_gid}
        self.port = free_port()
        self.data = root / "data"
        subprocess.run(
            [str(initdb), "-D", str(self.data), "-U", "ecglens", "--auth=trust", "-E", "UTF8", "--no-sync"],
            check=True,
            capture_output=True,
            timeout=120,
            **self.run_as,
        )
        subprocess.run(
            [
                str(self.pg_ctl),
                "-D",
                str(self.data),
                "-l",
                str(root / "pg.log"),
                "-w",
                "-t",
                "60",
                "-o",
                f"-h 127.0.0.1 -p {self.port} -k {root} -F -c max_connections=300",
                "start",
            ],
            check=True,
            capture_output=True,
            timeout=90,
            **self.run_as,
        )
        import psycopg

        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=ecglens dbname=postgres", autocommit=True) as conn:
            conn.execute("CREATE DATABASE ecglens")
        self.url = f"postgresql+psycopg://ecglens@127.0.0.1:{self.port}/ecglens"

    def sql(self, statement: str, rows: list[tuple] | None = None) -> list[tuple]:
        import psycopg

        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=ecglens dbname=ecglens") as conn:
            if rows is not None:
                with conn.cursor() as cur:
                    cur.executemany(statement.replace("?", "%s"), rows)
                return []
            return conn.execute(statement).fetchall()

    def stop(self) -> None:
        subprocess.run(
            [str(self.pg_ctl), "-D", str(self.data), "-m", "fast", "-w", "stop"],
            capture_output=True,
            timeout=60,
            **self.run_as,
        )


class Server:
    def __init__(self, root: Path, db: str, workers: int, max_upload_mb: float | None = 4):
        self.root, self.db = root, db
        (root / "pg").mkdir(exist_ok=True)
        self.pg = Postgres(root / "pg") if db == "postgres" else None
        self.data = root / "var"
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = root / "serve.log"
        env = {
            **os.environ,
            "ECGLENS_DATA_DIR": str(self.data),
            "ECGLENS_DATABASE_URL": self.pg.url if self.pg else "",
            "ECGLENS_BROKER_URL": "",
            "ECGLENS_WORKERS": str(workers),
            "OMP_NUM_THREADS": "1",
            "ECGLENS_DEVICE": "cpu",
        }
        if max_upload_mb is not None:
            env["ECGLENS_MAX_UPLOAD_MB"] = f"{max_upload_mb:g}"
        with open(self.log, "w") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "ecglens.cli", "serve", "--port", str(self.port), "--log-level", "warning"],
                env=env,
                cwd=root,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 300  # importing torch alone took minutes on a machine at load 10
        while True:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.proc.kill()
                if self.pg is not None:
                    self.pg.stop()
                raise RuntimeError(f"server did not start:\n{self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        admin = (self.data / "admin-key.txt").read_text().strip()
        made = httpx.post(
            f"{self.base}/api/v1/keys",
            headers={"Authorization": f"Bearer {admin}"},
            json={"role": "clinician", "name": "bench"},
            timeout=30,
        ).json()
        self.headers = {"Authorization": f"Bearer {made['token']}"}
        self.key_id = made["id"]

    def sql(self, statement: str, rows: list[tuple] | None = None) -> list[tuple]:
        if self.pg is not None:
            return self.pg.sql(statement, rows)
        with sqlite3.connect(self.data / "ecglens.db", timeout=60) as conn:
            if rows is not None:
                conn.executemany(statement, rows)
                return []
            return conn.execute(statement).fetchall()

    def audit_events(self) -> int:
        return int(self.sql("SELECT COUNT(*) FROM audit_events")[0][0])

    def _status_mb(self, field: str) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def peak_rss_mb(self) -> float:
        """The process's peak RSS (VmHWM) since it started or since `reset_peak`."""
        return self._status_mb("VmHWM")

    def rss_mb(self) -> float:
        return self._status_mb("VmRSS")

    def reset_peak(self) -> float:
        """Reset the process's RSS high-water mark to its current RSS (Linux: ``5`` to ``clear_refs``); return
        that RSS."""
        Path(f"/proc/{self.proc.pid}/clear_refs").write_text("5")
        return self.rss_mb()

    def stop(self) -> float:
        """SIGTERM; returns seconds until the process exited."""
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        took = time.monotonic() - started
        if self.pg is not None:
            self.pg.stop()
        return took


def wfdb_record(folder: Path) -> dict[str, bytes]:
    """A 60-s 2-lead 360-Hz synthetic ECG-like record (sum of Gaussians per beat) as WFDB format 16."""
    import wfdb

    fs, n = 360, 360 * 60
    t = np.arange(n) / fs
    phase = (t * 1.2) % 1.0
    beat = 1.2 * np.exp(-(((phase - 0.3) / 0.012) ** 2)) + 0.15 * np.exp(-(((phase - 0.55) / 0.05) ** 2))
    rng = np.random.default_rng(0)
    sig = np.stack([beat + 0.02 * rng.standard_normal(n), 0.6 * beat + 0.02 * rng.standard_normal(n)], axis=1)
    folder.mkdir(parents=True, exist_ok=True)
    wfdb.wrsamp(
        "bench",
        fs=fs,
        units=["mV", "mV"],
        sig_name=["MLII", "V1"],
        p_signal=sig,
        fmt=["16", "16"],
        adc_gain=[200.0, 200.0],
        baseline=[0, 0],
        write_dir=str(folder),
    )
    return {n: (folder / n).read_bytes() for n in ("bench.hea", "bench.dat")}


def big_wfdb_record(folder: Path, megabytes: float, seed: int = 0) -> dict[str, bytes]:
    """A 12-lead 500-Hz WFDB format-16 record of about ``megabytes`` MB of samples (ECG-like beats plus noise),
    header with each lead's initial value and checksum; written with numpy (wfdb is slow at this size)."""
    leads, fs = 12, 500
    n = int(megabytes * 1e6 / (2 * leads))
    t = np.arange(n, dtype=np.float32) / fs
    phase = (t * 1.2) % 1.0
    beat = 1.2 * np.exp(-(((phase - 0.3) / 0.012) ** 2)) + 0.15 * np.exp(-(((phase - 0.55) / 0.05) ** 2))
    rng = np.random.default_rng(seed)
    gains = np.linspace(0.3, 1.2, leads, dtype=np.float32)
    digital = np.empty((n, leads), dtype="<i2")
    for j in range(leads):
        noise = rng.standard_normal(n, dtype=np.float32) * 0.02
        digital[:, j] = np.round(200.0 * (gains[j] * beat + noise)).astype("<i2")
    names = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]
    lines = [f"big {leads} {fs} {n}"]
    for j, name in enumerate(names):
        checksum = int(digital[:, j].astype(np.int64).sum()) % 65536
        checksum = checksum - 65536 if checksum > 32767 else checksum
        lines.append(f"big.dat 16 200/mV 16 0 {int(digital[0, j])} {checksum} 0 {name}")
    folder.mkdir(parents=True, exist_ok=True)
    return {"big.hea": ("\n".join(lines) + "\n").encode(), "big.dat": digital.tobytes()}


def valid_upload(root: Path, megabytes: float) -> dict:
    """One valid ``megabytes`` upload to a fresh SQLite server with the default upload limit: the server's RSS
    before, its peak while the upload is parsed and stored, and the growth per uploaded byte."""
    files = big_wfdb_record(root / "big", megabytes)
    size = sum(len(d) for d in files.values())
    (root / "upload").mkdir(exist_ok=True)
    server = Server(root / "upload", "sqlite", 1, max_upload_mb=None)
    try:
        # One small upload first, so the readers and the upload path are imported and warm.
        small = wfdb_record(root / "rec-small")
        httpx.post(
            f"{server.base}/api/v1/records",
            headers=server.headers,
            timeout=60,
            files=[("files", (n, d)) for n, d in small.items()],
        ).raise_for_status()
        time.sleep(0.5)
        before = server.reset_peak()
        started = time.perf_counter()
        response = httpx.post(
            f"{server.base}/api/v1/records",
            headers=server.headers,
            timeout=300,
            files=[("files", (n, d)) for n, d in files.items()],
        )
        took = time.perf_counter() - started
        peak = server.peak_rss_mb()
        body = response.json() if response.status_code < 300 else {}
        record = (body.get("data") or [{}])[0]
        return {
            "size_mb": size / 2**20,
            "status": response.status_code,
            "detail": None if response.status_code < 300 else response.text[:300],
            "samples": record.get("n_samples"),
            "leads": len(record.get("leads") or []),
            "rss_before_mb": before,
            "peak_mb": peak,
            "growth_mb": peak - before,
            "ratio": (peak - before) / (size / 2**20),
            "seconds": took,
        }
    finally:
        server.stop()


def process_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def load_level(
    server: Server,
    clients: int,
    seconds: float,
    record_id: str,
    analysis_ids: list[str],
    budget: int,
    seed: int,
    mix: str,
) -> dict:
    # aiohttp, not httpx: on the server's own 2 cores httpx's AsyncClient with 64 connections spent 4-6 ms of
    # CPU per request (more than the server's 2.5-3.3 ms), so the client set the p95; aiohttp spends about 0.25.
    import aiohttp

    reads: list[float] = []
    latency: dict[str, list[float]] = {}
    errors: dict[str, int] = {}
    audited = 0
    made: list[str] = []
    lost = [0]
    rng = random.Random(seed)
    failures = (aiohttp.ClientError, asyncio.TimeoutError)

    connector = aiohttp.TCPConnector(limit=clients + 8)
    async with aiohttp.ClientSession(
        base_url=server.base,
        headers=server.headers,
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=60.0),
    ) as http:
        deadline = time.monotonic() + seconds

        async def call(label: str, method: str, path: str, **kw) -> Any:
            nonlocal audited
            started = time.perf_counter()
            try:
                async with http.request(method, path, **kw) as response:
                    body = await response.read()
                    status = response.status
            except failures:  # a timeout: the server may or may not have served (and audited) it
                errors[label] = errors.get(label, 0) + 1
                lost[0] += 1
                return None
            took = time.perf_counter() - started
            audited += path.startswith(AUDITED_PREFIX)
            latency.setdefault(label, []).append(took)
            if status >= 300:
                errors[label] = errors.get(label, 0) + 1
                return None
            if label.startswith("GET"):
                reads.append(took)
            return json.loads(body)

        async def stream(aid: str) -> None:
            nonlocal audited
            started = time.perf_counter()
            try:
                async with http.get(f"/api/v1/analyses/{aid}/events") as response:
                    audited += 1
                    if response.status != 200:
                        errors["SSE events"] = errors.get("SSE events", 0) + 1
                        return
                    first = True
                    async for raw in response.content:
                        line = raw.decode(errors="replace").rstrip("\r\n")
                        if first and line.startswith("event:"):
                            latency.setdefault("SSE first event", []).append(time.perf_counter() - started)
                            first = False
                        if line.startswith(("event: done", "event: failed")) or time.monotonic() > deadline + 5:
                            break
            except failures:
                errors["SSE events"] = errors.get("SSE events", 0) + 1
                lost[0] += 1

        async def client(i: int) -> None:
            while time.monotonic() < deadline:
                roll = rng.random() * (0.85 if mix == "reads" else 1.0)
                if roll < 0.30:
                    await call("GET /records?limit=50", "GET", "/api/v1/records", params={"limit": 50})
                elif roll < 0.50:
                    await call("GET /records/{id}", "GET", f"/api/v1/records/{record_id}")
                elif roll < 0.70:
                    await call(
                        "GET /records/{id}/signal",
                        "GET",
                        f"/api/v1/records/{record_id}/signal",
                        params={"max_points": 2000, "end_s": 10},
                    )
                elif roll < 0.85:
                    aid = rng.choice(made or analysis_ids)
                    await call("GET /analyses/{id}", "GET", f"/api/v1/analyses/{aid}")
                elif roll < 0.92 and len(made) < MAX_NEW_ANALYSES:
                    got = await call(
                        "POST /analyses",
                        "POST",
                        "/api/v1/analyses",
                        json={
                            "record_id": record_id,
                            "model": "builtin",
                            "query_budget": budget,
                            "seed": i,
                            "start_s": 5.0,
                        },
                    )
                    if got is not None:
                        made.append(got["id"])
                else:
                    await stream(rng.choice(made or analysis_ids))

        before = server.audit_events()
        server_cpu, client_cpu = process_cpu_s(server.proc.pid), time.process_time()
        started = time.monotonic()
        await asyncio.gather(*(client(i) for i in range(clients)))
        wall = time.monotonic() - started
        server_cpu, client_cpu = process_cpu_s(server.proc.pid) - server_cpu, time.process_time() - client_cpu
    await asyncio.sleep(1.0)  # the last responses' audit events are written before they are sent; be sure
    written = server.audit_events() - before
    n = sum(len(v) for v in latency.values()) - len(latency.get("SSE first event", []))
    requests = n + len(latency.get("SSE first event", []))
    return {
        "mix": mix,
        "clients": clients,
        "wall_s": wall,
        "requests": requests,
        "rps": requests / wall,
        "read_p50_ms": 1000 * pct(reads, 50),
        "read_p95_ms": 1000 * pct(reads, 95),
        # Per request answered, over the level (the server's includes its job thread in the mixed runs).
        "server_cpu_ms": 1000 * server_cpu / max(requests, 1),
        "client_cpu_ms": 1000 * client_cpu / max(requests, 1),
        "errors": sum(errors.values()),
        "error_kinds": errors,
        "audited": audited,
        "audit_written": written,
        "timeouts": lost[0],
        "endpoints": {k: (len(v), 1000 * pct(v, 50), 1000 * pct(v, 95)) for k, v in sorted(latency.items())},
    }


async def streams_health(server: Server, record_id: str, n: int) -> dict:
    ids = [f"{0xBE000000 + i:032x}" for i in range(n)]
    server.sql(
        "INSERT INTO analyses (id, record_id, model, query_budget, seed, status, progress, queries, attempts, "
        "created_by, created_at) VALUES (?, ?, 'builtin', 10, 0, 'queued', 0, 0, 0, ?, "
        "'2026-01-01T00:00:00.000000Z')",
        [(i, record_id, server.key_id) for i in ids],
    )
    limits = httpx.Limits(max_connections=n + 8)
    async with httpx.AsyncClient(
        base_url=server.base, headers=server.headers, limits=limits, timeout=httpx.Timeout(120.0)
    ) as http:
        opened, stop = asyncio.Event(), asyncio.Event()
        count = 0
        failed = 0

        async def follow(aid: str) -> None:
            nonlocal count, failed
            try:
                async with http.stream("GET", f"/api/v1/analyses/{aid}/events") as response:
                    if response.status_code != 200:
                        failed += 1
                    async for line in response.aiter_lines():
                        if line.startswith("event:"):
                            break
                    count += 1
                    if count == n:
                        opened.set()
                    await stop.wait()
            except httpx.HTTPError:
                failed += 1

        tasks = [asyncio.create_task(follow(a)) for a in ids]
        await asyncio.wait_for(opened.wait(), 300)
        health: list[float] = []
        async with httpx.AsyncClient(base_url=server.base, timeout=30) as plain:
            for _ in range(40):
                started = time.perf_counter()
                ok = (await plain.get("/healthz")).status_code == 200
                health.append(time.perf_counter() - started if ok else float("inf"))
                await asyncio.sleep(0.1)
        stop.set()
        await asyncio.gather(*tasks)
    return {
        "streams": n,
        "failed": failed,
        "health_p50_ms": 1000 * pct(health, 50),
        "health_p95_ms": 1000 * pct(health, 95),
        "health_max_ms": 1000 * max(health),
    }


def fuzz(server: Server, cases: int) -> dict:
    from hypothesis import HealthCheck, given, settings
    from upload_cases import upload_case

    statuses: dict[int, int] = {}
    start_rss = server.reset_peak()
    with httpx.Client(base_url=server.base, headers=server.headers, timeout=120) as http:

        @settings(
            max_examples=cases, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck)
        )
        @given(case=upload_case())
        def run(case):
            try:
                code = http.post("/api/v1/records", files=[("files", (n, d)) for n, d in case]).status_code
            except httpx.HTTPError:
                code = -1
            statuses[code] = statuses.get(code, 0) + 1

        run()
    total = sum(statuses.values())
    return {
        "cases": total,
        "statuses": dict(sorted(statuses.items())),
        "server_errors": sum(v for k, v in statuses.items() if k >= 500 or k < 0),
        "start_rss_mb": start_rss,
        "peak_rss_mb": server.peak_rss_mb(),
        "end_rss_mb": server.rss_mb(),
    }


def wait_for_jobs(server: Server, timeout_s: float) -> float:
    """Wait until no analysis is queued or running (each level starts without the last one's backlog)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if not server.sql("SELECT COUNT(*) FROM analyses WHERE status IN ('queued', 'running')")[0][0]:
            break
        time.sleep(0.5)
    return time.monotonic() - started


def run_db(db: str, args: argparse.Namespace) -> dict:
    root = Path(tempfile.mkdtemp(prefix=f"ecglens-load-{db}-"))
    os.chmod(root, 0o755)  # the postgres user reaches its cluster folder inside; the server's data dir is 0700
    server = None
    try:
        server = Server(root, db, args.workers)
        files = wfdb_record(root / "rec")
        up = httpx.post(
            f"{server.base}/api/v1/records",
            headers=server.headers,
            timeout=60,
            files=[("files", (n, d)) for n, d in files.items()],
        )
        up.raise_for_status()
        record_id = up.json()["data"][0]["id"]
        seed = httpx.post(
            f"{server.base}/api/v1/analyses",
            headers=server.headers,
            timeout=60,
            json={"record_id": record_id, "model": "builtin", "query_budget": args.budget, "start_s": 5.0},
        ).json()["id"]
        levels = []
        for mix in args.mix.split(","):
            for clients in [int(x) for x in args.levels.split(",")]:
                drained = wait_for_jobs(server, 120)
                print(f"[{db}] {mix}: {clients} clients (jobs drained in {drained:.0f} s) ...", flush=True)
                levels.append(
                    asyncio.run(
                        load_level(server, clients, args.seconds, record_id, [seed], args.budget, seed=clients, mix=mix)
                    )
                )
                last = levels[-1]
                print(
                    f"    {last['rps']:.1f} req/s, read p95 {last['read_p95_ms']:.0f} ms, server CPU "
                    f"{last['server_cpu_ms']:.2f} ms/req, errors {last['errors']} "
                    f"{last['error_kinds']}, audit {last['audit_written']}/{last['audited']}",
                    flush=True,
                )
        streams = None
        if args.streams:
            print(f"[{db}] {args.streams} open streams ...", flush=True)
            streams = asyncio.run(streams_health(server, record_id, args.streams))
        fuzzed = None
        peak_before_fuzz = server.peak_rss_mb()  # the fuzz phase resets the high-water mark
        if args.fuzz and db == "sqlite":
            print(f"[{db}] fuzz {args.fuzz} uploads ...", flush=True)
            fuzzed = fuzz(server, args.fuzz)
        peak = max(server.peak_rss_mb(), peak_before_fuzz)
        stop_s = server.stop()
        uploaded = None
        if args.upload_mb and db == "sqlite":
            print(f"[{db}] one valid {args.upload_mb:g} MB upload to a fresh server ...", flush=True)
            uploaded = valid_upload(root, args.upload_mb)
        return {
            "db": db,
            "levels": levels,
            "streams": streams,
            "fuzz": fuzzed,
            "upload": uploaded,
            "peak_rss_mb": peak,
            "sigterm_exit_s": stop_s,
        }
    finally:
        if server is not None and server.proc.poll() is None:
            server.proc.kill()
            if server.pg is not None:
                server.pg.stop()
        shutil.rmtree(root, ignore_errors=True)


def render(results: list[dict], args: argparse.Namespace, command: str) -> str:
    lines = [
        f"# Service load and attack — {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC",
        "",
        f"Command: `{command}`",
        "",
        "Machine load (1/5/15-min load average) at start "
        + " / ".join(f"{x:.2f}" for x in getattr(args, "machine_load", ((0, 0, 0),) * 2)[0])
        + ", at end "
        + " / ".join(f"{x:.2f}" for x in getattr(args, "machine_load", ((0, 0, 0),) * 2)[1])
        + ".",
        "",
        f"A real `ecglens serve` on 127.0.0.1 (in-process jobs, ECGLENS_WORKERS={args.workers}, default "
        f"pools: 40 request threads), {os.cpu_count()} CPU cores shared with other work; clients in one "
        "asyncio process (aiohttp) on the same machine; CPU ms/req: the server's and the client's CPU time over "
        "the level per request answered (the server's includes the analysis job in the mixed rows). Mix per "
        "client: 30 % record list (limit 50), 20 % record, 20 % "
        f"signal window (10 s, 2000 points), 15 % analysis read, 7 % new analysis (builtin, budget "
        f"{args.budget}; at most {MAX_NEW_ANALYSES} per level, then reads instead), 8 % progress stream "
        f"followed to its end; {args.seconds:g} s per level, each level started with no job queued. Reads = the "
        "GETs. Errors = non-2xx or transport errors (client timeout 60 s). Audit: events written / audited requests "
        "answered (a request the client gave up on may still have been served and audited).",
        "",
        "Mix `reads`: the reads alone (the first 85 % of the mix, renormalised).",
        "",
        "| db | mix | clients | requests | req/s | read p50 ms | read p95 ms | errors (timeouts) | "
        "audit written / answered | server CPU ms/req | client CPU ms/req |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        for lv in r["levels"]:
            lines.append(
                f"| {r['db']} | {lv['mix']} | {lv['clients']} | {lv['requests']} | {lv['rps']:.1f} | "
                f"{lv['read_p50_ms']:.0f} | {lv['read_p95_ms']:.0f} | {lv['errors']} ({lv['timeouts']}) | "
                f"{lv['audit_written']} / {lv['audited']} | {lv['server_cpu_ms']:.2f} | {lv['client_cpu_ms']:.2f} |"
            )
    lines += [
        "",
        "| db | open progress streams | failed | /healthz p50 ms | p95 ms | max ms |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        s = r["streams"]
        if s is None:
            continue
        lines.append(
            f"| {r['db']} | {s['streams']} | {s['failed']} | {s['health_p50_ms']:.0f} | "
            f"{s['health_p95_ms']:.0f} | {s['health_max_ms']:.0f} |"
        )
    lines += ["", "| db | server peak RSS MB (load, streams and fuzz) | SIGTERM to exit s |", "|---|---|---|"]
    for r in results:
        lines.append(f"| {r['db']} | {r['peak_rss_mb']:.0f} | {r['sigterm_exit_s']:.1f} |")
    for r in results:
        if r["fuzz"]:
            f = r["fuzz"]
            lines += [
                "",
                f"Fuzzed uploads ({r['db']}, tests/api/upload_cases.py, 4 MiB upload limit, on the server of the "
                f"load run): {f['cases']} cases, statuses {f['statuses']}, 5xx or dropped: {f['server_errors']}.",
                "",
                "| db | malformed uploads | server RSS at phase start MB | peak RSS during the phase MB | RSS at end MB |",
                "|---|---|---|---|---|",
                f"| {r['db']} | {f['cases']} | {f['start_rss_mb']:.0f} | {f['peak_rss_mb']:.0f} | "
                f"{f['end_rss_mb']:.0f} |",
            ]
    for r in results:
        if r.get("upload"):
            u = r["upload"]
            lines += [
                "",
                "One valid upload (a fresh SQLite server, default 100 MiB limit, after one small upload; WFDB "
                "format 16, 12 leads, 500 Hz, generated by the benchmark): the server's RSS growth while it is "
                "parsed and stored (peak minus the RSS before) per uploaded MB.",
                "",
                "| upload MB | status | samples x leads | RSS before MB | peak MB | growth MB | growth / size | s |",
                "|---|---|---|---|---|---|---|---|",
                f"| {u['size_mb']:.1f} | {u['status']} | {u['samples']} x {u['leads']} | {u['rss_before_mb']:.0f} | "
                f"{u['peak_mb']:.0f} | {u['growth_mb']:.0f} | {u['ratio']:.2f} | {u['seconds']:.1f} |",
            ]
            if u["detail"]:
                lines.append(f"\nThe upload was refused: {u['detail']}")
    lines += [
        "",
        "Per endpoint (n, p50 ms, p95 ms):",
        "",
        "| db | mix | clients | endpoint | n | p50 ms | p95 ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        for lv in r["levels"]:
            for name, (n, p50, p95) in lv["endpoints"].items():
                lines.append(f"| {r['db']} | {lv['mix']} | {lv['clients']} | {name} | {n} | {p50:.0f} | {p95:.0f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default="sqlite,postgres", help="sqlite, postgres or both. Default: both")
    parser.add_argument("--levels", default="1,4,16,64,128", help="concurrent clients per level")
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds per level. Default: 10")
    parser.add_argument("--streams", type=int, default=100, help="progress streams held open. Default: 100")
    parser.add_argument("--fuzz", type=int, default=1000, help="hostile uploads (SQLite run). Default: 1000")
    parser.add_argument(
        "--mix", default="reads,mixed", help="reads and/or mixed (reads, analyses, streams). Default: both"
    )
    parser.add_argument(
        "--upload-mb", type=float, default=40.0, help="size of the valid upload (SQLite run; 0: none). Default: 40"
    )
    parser.add_argument("--budget", type=int, default=25, help="query budget per analysis. Default: 25")
    parser.add_argument("--workers", type=int, default=1, help="ECGLENS_WORKERS of the server. Default: 1")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "service_load.md")
    args = parser.parse_args(argv)
    command = "python benchmarks/service_load.py " + " ".join(argv if argv is not None else sys.argv[1:])
    load_before = os.getloadavg()
    results = [run_db(db.strip(), args) for db in args.db.split(",") if db.strip()]
    args.machine_load = (load_before, os.getloadavg())
    text = render(results, args, command.strip())
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
