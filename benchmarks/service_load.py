"""Service load: N concurrent clients upload real records and analyse them against a running server on 127.0.0.1.

For each executor setting (in-process pool; Celery with 1 and with 2 workers on a local redis-server) this starts
a fresh ``ecglens serve`` (SQLite in a temporary data directory), its workers, and N client threads. Each client
loops over its share of the records: upload (WFDB .hea + .dat), read the record, read the whole record's signal
decimated for display, start an analysis, poll it until done. Bounded: ``--analyses`` in all and ``--timeout-s``
per setting. Prints a table (throughput, p50 / p95 latency per endpoint, errors) and writes
``benchmarks/results/service_load-<date>.md``.

    .venv/bin/python benchmarks/service_load.py --clients 4 --analyses 8 --budget 60

Needs ../shared/data/mitdb (real MIT-BIH records) and, for the Celery rows, redis-server. The classifier is the
shipped "builtin" model when ``models/builtin.pt`` exists, else (``--model auto``) a small generated TorchScript
power detector, so the figures measure the service, not a particular network.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("ECGLENS_SHARED_DATA", REPO.parent / "shared" / "data"))
DEFAULT_RECORDS = ("100", "101", "103", "105", "106", "108", "109", "111", "112", "113", "114", "115")
CARD = {"name": "bench-power", "classes": ["calm", "noisy"], "sampling_rate": 360.0, "leads": ["MLII"],
        "window_s": 10.0, "output": "logits", "description": "benchmark stand-in: MLII power detector"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, timeout_s: float, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited {proc.returncode}:\n{log.read_text()[-2000:]}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError(f"server not up after {timeout_s} s:\n{log.read_text()[-2000:]}")


def generated_model(folder: Path) -> Path:
    import torch

    class Power(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            centred = x[:, 0, :] - x[:, 0, :].mean(dim=1, keepdim=True)
            power = (centred ** 2).mean(dim=1)
            return torch.stack([1.5 - 10.0 * power, 10.0 * power - 1.5], dim=1)

    path = folder / "bench-power.pt"
    torch.jit.script(Power()).save(str(path))
    return path


class Stats:
    """Latencies (s) per endpoint label and error counts, shared by the client threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.latency: dict[str, list[float]] = defaultdict(list)
        self.errors: dict[str, int] = defaultdict(int)
        self.jobs: list[float] = []
        self.failed_jobs = 0

    def call(self, label: str, fn, ok=(200, 201, 202)):
        started = time.perf_counter()
        try:
            response = fn()
        except httpx.HTTPError:
            with self.lock:
                self.errors[label] += 1
            return None
        elapsed = time.perf_counter() - started
        with self.lock:
            self.latency[label].append(elapsed)
            if response.status_code not in ok:
                self.errors[label] += 1
        return response if response.status_code in ok else None


def client_loop(base: str, token: str, records: list[str], model: str, budget: int, deadline: float,
                stats: Stats) -> None:
    h = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=base, headers=h, timeout=60) as http:
        for name in records:
            if time.monotonic() > deadline:
                return
            files = [("files", (f"{name}.{ext}", (DATA / "mitdb" / f"{name}.{ext}").read_bytes()))
                     for ext in ("hea", "dat")]
            up = stats.call("POST /records", lambda: http.post("/api/v1/records", files=files))
            if up is None:
                continue
            rid = up.json()["data"][0]["id"]
            stats.call("GET /records/{id}", lambda: http.get(f"/api/v1/records/{rid}"))
            stats.call("GET /records/{id}/signal", lambda: http.get(f"/api/v1/records/{rid}/signal",
                                                                    params={"max_points": 4000}))
            t0 = time.monotonic()
            made = stats.call("POST /analyses", lambda: http.post("/api/v1/analyses", json={
                "record_id": rid, "model": model, "query_budget": budget, "seed": 0}))
            if made is None:
                continue
            aid = made.json()["id"]
            while time.monotonic() < deadline:
                got = stats.call("GET /analyses/{id}", lambda: http.get(f"/api/v1/analyses/{aid}"))
                status = got.json()["status"] if got is not None else None
                if status in ("done", "failed"):
                    with stats.lock:
                        if status == "done":
                            stats.jobs.append(time.monotonic() - t0)
                        else:
                            stats.failed_jobs += 1
                    break
                time.sleep(0.25)


def run_setting(label: str, workers: int | None, args: argparse.Namespace, records: list[str],
                model_file: Path | None) -> dict:
    """One server (+ workers) in a fresh data directory; returns the figures."""
    root = Path(tempfile.mkdtemp(prefix="ecglens-load-"))
    procs: list[subprocess.Popen] = []
    env = {**os.environ, "ECGLENS_DATA_DIR": str(root / "var"), "ECGLENS_DATABASE_URL": "",
           "ECGLENS_WORKERS": str(args.local_threads), "OMP_NUM_THREADS": "1", "ECGLENS_DEVICE": "cpu",
           "ECGLENS_BROKER_URL": ""}
    try:
        if workers:
            rport = free_port()
            procs.append(subprocess.Popen([shutil.which("redis-server"), "--bind", "127.0.0.1", "--port",
                                           str(rport), "--save", "", "--appendonly", "no", "--dir", str(root)],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            env["ECGLENS_BROKER_URL"] = f"redis://127.0.0.1:{rport}/0"
            time.sleep(0.5)
        port = free_port()
        log = root / "serve.log"
        with open(log, "w") as out:
            procs.append(subprocess.Popen([sys.executable, "-m", "ecglens.cli", "serve", "--port", str(port),
                                           "--log-level", "warning"], env=env, cwd=root, stdout=out,
                                          stderr=subprocess.STDOUT))
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/healthz", 90, procs[-1], log)
        for i in range(workers or 0):
            with open(root / f"worker{i}.log", "w") as out:
                procs.append(subprocess.Popen([sys.executable, "-m", "celery", "-A", "ecglens.worker", "worker",
                                               "--pool", "solo", "-n", f"bench{i}@%h", "--without-gossip",
                                               "--without-mingle", "--loglevel", "WARNING"], env=env, cwd=root,
                                              stdout=out, stderr=subprocess.STDOUT))
        token = (root / "var" / "admin-key.txt").read_text().strip()
        model = "builtin"
        if model_file is not None:
            model = CARD["name"]
            reg = httpx.post(f"{base}/api/v1/models", headers={"Authorization": f"Bearer {token}"},
                             data={"card": json.dumps(CARD)},
                             files={"file": (model_file.name, model_file.read_bytes())}, timeout=60)
            reg.raise_for_status()
        shares = [records[i::args.clients] for i in range(args.clients)]
        stats = Stats()
        started = time.monotonic()
        deadline = started + args.timeout_s
        threads = [threading.Thread(target=client_loop, args=(base, token, share, model, args.budget, deadline,
                                                             stats)) for share in shares if share]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.monotonic() - started
        requests = sum(len(v) for v in stats.latency.values())
        return {"setting": label, "wall_s": wall, "analyses_done": len(stats.jobs),
                "analyses_failed": stats.failed_jobs, "analyses_per_min": 60 * len(stats.jobs) / wall,
                "requests_per_s": requests / wall,
                "job_p50_s": _pct(stats.jobs, 50), "job_p95_s": _pct(stats.jobs, 95),
                "endpoints": {k: {"n": len(v), "p50_ms": 1000 * _pct(v, 50), "p95_ms": 1000 * _pct(v, 95),
                                  "errors": stats.errors.get(k, 0)} for k, v in sorted(stats.latency.items())},
                "errors": sum(stats.errors.values())}
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        shutil.rmtree(root, ignore_errors=True)


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def render(results: list[dict], args: argparse.Namespace, model: str) -> str:
    lines = [f"# Service load — {dt.date.today().isoformat()}", "",
             f"{args.clients} concurrent clients, {args.analyses} MIT-BIH records (30 min, 2 leads, 360 Hz) "
             f"uploaded and analysed per setting, query budget {args.budget}, model {model}, SQLite, "
             f"{os.cpu_count()} CPU cores, time limit {args.timeout_s:.0f} s per setting.", "",
             "| setting | analyses done | failed | analyses/min | requests/s | job p50 s | job p95 s | errors |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['setting']} | {r['analyses_done']} | {r['analyses_failed']} | "
                     f"{r['analyses_per_min']:.2f} | {r['requests_per_s']:.1f} | {r['job_p50_s']:.1f} | "
                     f"{r['job_p95_s']:.1f} | {r['errors']} |")
    lines += ["", "| setting | endpoint | n | p50 ms | p95 ms | errors |", "|---|---|---|---|---|---|"]
    for r in results:
        for name, e in r["endpoints"].items():
            lines.append(f"| {r['setting']} | {name} | {e['n']} | {e['p50_ms']:.1f} | {e['p95_ms']:.1f} | "
                         f"{e['errors']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients. Default: 4")
    parser.add_argument("--analyses", type=int, default=8, help="records uploaded + analysed per setting. Default: 8")
    parser.add_argument("--budget", type=int, default=60, help="query budget per analysis. Default: 60")
    parser.add_argument("--timeout-s", type=float, default=600, help="time limit per setting. Default: 600")
    parser.add_argument("--local-threads", type=int, default=2, help="in-process executor threads. Default: 2")
    parser.add_argument("--settings", default="in-process,celery-1,celery-2",
                        help="which of in-process, celery-1, celery-2 to run. Default: all three")
    parser.add_argument("--model", default="auto", choices=("auto", "builtin", "generated"),
                        help="builtin, a generated power detector, or auto (builtin when present). Default: auto")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args(argv)
    if not (DATA / "mitdb").is_dir():
        print(f"service_load: {DATA / 'mitdb'} not found (real data needed)", file=sys.stderr)
        return 2
    records = [DEFAULT_RECORDS[i % len(DEFAULT_RECORDS)] for i in range(args.analyses)]
    builtin = (REPO / "models" / "builtin.pt").exists()
    use_generated = args.model == "generated" or (args.model == "auto" and not builtin)
    tmp = Path(tempfile.mkdtemp(prefix="ecglens-load-model-"))
    model_file = generated_model(tmp) if use_generated else None
    model_label = "generated MLII power detector (TorchScript)" if use_generated else "builtin"
    wanted = [s.strip() for s in args.settings.split(",") if s.strip()]
    plan = {"in-process": None, "celery-1": 1, "celery-2": 2}
    if any(plan.get(s) for s in wanted) and not shutil.which("redis-server"):
        print("service_load: redis-server not installed; skipping the Celery settings", file=sys.stderr)
        wanted = [s for s in wanted if not plan.get(s)]
    results = []
    for setting in wanted:
        print(f"running {setting} ...", flush=True)
        results.append(run_setting(setting, plan[setting], args, records, model_file))
    shutil.rmtree(tmp, ignore_errors=True)
    text = render(results, args, model_label)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / f"service_load-{dt.date.today().isoformat()}.md"
    out.write_text(text)
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
