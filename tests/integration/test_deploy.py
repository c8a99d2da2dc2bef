"""Deployment recipe: what can be checked without a Docker engine.

Static checks read the Dockerfile, docker-compose.yml, .dockerignore and .env.example and hold them against the
code (console scripts, CLI subcommands, Settings fields, routes). The native test then runs the processes the
compose file would run, from the same entrypoint script: PostgreSQL and Redis on 127.0.0.1 free ports in temporary
folders, the one-shot migrate step, the API and one Celery worker, and sends one analysis through them.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import pwd
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
COMPOSE = REPO / "docker-compose.yml"
DOCKERIGNORE = REPO / ".dockerignore"
ENV_EXAMPLE = REPO / ".env.example"
ENTRYPOINT = REPO / "deploy" / "entrypoint.sh"
HEALTHCHECK = REPO / "deploy" / "healthcheck.py"


# --- helpers: reading the recipes ------------------------------------------------------------------------------


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` pairs of a Dockerfile, continuation lines joined, comments dropped."""
    lines, current = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):  # a comment inside a continued instruction
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        lines.append(current)
        current = ""
    out = []
    for line in lines:
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def _ignore_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as a regex: ``**/`` = any folders (or none), ``*`` and ``?`` stop at ``/``."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[" and "]" in pattern[i:]:
            j = pattern.index("]", i)
            out, i = out + pattern[i : j + 1], j + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out + r"\Z")


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Whether Docker leaves ``path`` (relative, ``/``-separated) out of the build context.

    Docker's rules: patterns in order, the last one matching wins; ``!`` re-includes; a pattern matching a
    folder covers everything under it.
    """
    parts = path.strip("/").split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        regex = _ignore_regex(pattern.lstrip("!").strip("/"))
        if any(regex.match(prefix) for prefix in prefixes):
            excluded = not negate
    return excluded


def ignore_patterns() -> list[str]:
    return [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def app_services(spec: dict) -> dict[str, dict]:
    """Compose services built from this repository's Dockerfile (api, workers, migrate)."""
    return {name: svc for name, svc in spec["services"].items() if "build" in svc}


def entrypoint_roles() -> set[str]:
    """The roles ``deploy/entrypoint.sh`` dispatches on (its ``case`` labels, the catch-all excluded)."""
    text = ENTRYPOINT.read_text()
    body = text[text.index('case "$role" in') : text.index("esac")]
    return {m.group(1) for m in re.finditer(r"^\s*([a-z][a-z0-9-]*)\)\s*$", body, re.M)}


def env_example_names() -> set[str]:
    """``ECGLENS_*`` names set in .env.example, active or shown commented out (``# ECGLENS_X=default``)."""
    return set(re.findall(r"^#?\s*(ECGLENS_[A-Z0-9_]+)=", ENV_EXAMPLE.read_text(), re.M))


# --- compose --------------------------------------------------------------------------------------------------


def test_compose_file_parses_and_has_every_service():
    spec = compose()
    assert {"api", "worker", "worker-gpu0", "redis", "postgres", "migrate"} <= set(spec["services"])
    assert "postgres-data" in spec["volumes"]
    pg_volumes = spec["services"]["postgres"]["volumes"]
    assert any(v.startswith("postgres-data:/var/lib/postgresql/data") for v in pg_volumes)


def test_gpu_workers_reserve_one_nvidia_device_each():
    services = compose()["services"]
    gpu = {name: svc for name, svc in services.items() if name.startswith("worker-gpu")}
    assert gpu, "no GPU worker in docker-compose.yml"
    seen: list[str] = []
    for name, svc in gpu.items():
        devices = svc["deploy"]["resources"]["reservations"]["devices"]
        assert len(devices) == 1 and devices[0]["driver"] == "nvidia", name
        assert "gpu" in devices[0]["capabilities"], name
        assert len(devices[0]["device_ids"]) == 1, f"{name}: one worker per GPU"
        seen += devices[0]["device_ids"]
        assert svc["environment"]["WORKER_CONCURRENCY"] == "1", f"{name}: one process per GPU"
        assert "cu" in svc["build"]["args"]["TORCH_INDEX_URL"], f"{name}: must be built from a CUDA torch index"
    assert len(seen) == len(set(seen)), "two GPU workers share a device"


def test_migrations_run_once_before_api_and_workers_start():
    services = compose()["services"]
    assert services["migrate"]["command"] == ["migrate"]
    assert services["migrate"]["restart"] == "no"
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("api", "worker", "worker-gpu0"):
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully", name


def test_every_app_service_command_is_an_entrypoint_role():
    roles = entrypoint_roles()
    assert {"api", "worker", "migrate"} <= roles
    for name, svc in app_services(compose()).items():
        command = svc.get("command") or ["api"]  # the image's CMD
        assert command[0] in roles, f"service {name}: command {command} is not a role of deploy/entrypoint.sh"


def test_app_services_share_database_broker_and_data_volume():
    services = app_services(compose())
    envs = [svc["environment"] for svc in services.values()]
    for key in ("ECGLENS_DATABASE_URL", "ECGLENS_BROKER_URL", "ECGLENS_DATA_DIR"):
        assert len({env[key] for env in envs}) == 1, f"{key} differs between app services"
    assert envs[0]["ECGLENS_DATABASE_URL"].startswith("postgresql+psycopg://")
    assert envs[0]["ECGLENS_BROKER_URL"].startswith("redis://redis:")
    for name, svc in services.items():
        assert f"ecglens-data:{envs[0]['ECGLENS_DATA_DIR']}" in svc["volumes"], name


def test_every_compose_variable_is_documented_in_env_example():
    text = COMPOSE.read_text().replace("$$", "")  # $$ escapes a literal $ for the container's shell
    used = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", text))
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", ENV_EXAMPLE.read_text(), re.M))
    assert used, "no ${VAR} in docker-compose.yml"
    assert used - documented == set(), "docker-compose.yml reads these but .env.example does not document them"


# --- image recipe ---------------------------------------------------------------------------------------------


def test_dockerfile_is_multi_stage_and_runs_as_an_unprivileged_user():
    steps = dockerfile_instructions(DOCKERFILE.read_text())
    stages = [args for word, args in steps if word == "FROM"]
    assert len(stages) >= 2
    users = [args for word, args in steps if word == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert any(word == "COPY" and args.startswith("--from=build") for word, args in steps)


def test_torch_comes_from_the_index_build_argument():
    steps = dockerfile_instructions(DOCKERFILE.read_text())
    assert any(
        word == "ARG" and args.startswith("TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu")
        for word, args in steps
    )
    torch_installs = [args for word, args in steps if word == "RUN" and "torch==" in args]
    assert torch_installs and '--index-url "${TORCH_INDEX_URL}"' in torch_installs[0]
    # The pin matches pyproject's, so installing the project afterwards never swaps the torch build.
    pin = next(
        d
        for d in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
        if d.startswith("torch==")
    )
    assert any(word == "ARG" and args == f"TORCH_VERSION={pin.split('==')[1]}" for word, args in steps)


def test_entrypoint_and_healthcheck_are_copied_into_the_image():
    steps = dockerfile_instructions(DOCKERFILE.read_text())
    entry = next(args for word, args in steps if word == "ENTRYPOINT")
    health = next(args for word, args in steps if word == "HEALTHCHECK")
    assert entry == '["/app/deploy/entrypoint.sh"]'
    assert "/app/deploy/healthcheck.py" in health
    runtime = steps[max(i for i, (word, _) in enumerate(steps) if word == "FROM") :]
    copies = [shlex.split(args) for word, args in runtime if word == "COPY" and not args.startswith("--from")]
    sources = {src.rstrip("/") for parts in copies for src in parts[:-1]}
    assert {"deploy", "backend", "models", "frontend"} <= sources
    for src in sources:
        assert (REPO / src).exists(), f"COPY {src}: not in the repository"
        assert not dockerignored(src, ignore_patterns()), f"COPY {src}: excluded by .dockerignore"
    assert ENTRYPOINT.stat().st_mode & 0o111, "deploy/entrypoint.sh is not executable"


def test_what_the_entrypoint_runs_is_installed_by_the_image():
    """``ecglens`` is this project's console script, ``celery`` the celery distribution's; the subcommands and
    the Celery app module the entrypoint names exist."""
    text = ENTRYPOINT.read_text()
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["ecglens"] == "ecglens.cli:main"
    celery_scripts = {
        e.name for e in importlib.metadata.distribution("celery").entry_points if e.group == "console_scripts"
    }
    assert "celery" in celery_scripts
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    assert any(d.startswith("celery") for d in deps)

    from ecglens.cli import build_parser

    parser = build_parser()
    for argv in (["serve", "--host", "0.0.0.0", "--port", "8000"], ["db", "upgrade"]):
        assert re.search(r"\becglens " + re.escape(argv[0]), text), argv
        try:
            parser.parse_args(argv)
        except SystemExit:  # argparse exits when the subcommand or an option does not exist
            pytest.fail(f"`ecglens {' '.join(argv)}` (run by deploy/entrypoint.sh) is not a valid command")
    assert "celery -A ecglens.service.worker worker" in text
    import ecglens.service.worker

    assert ecglens.service.worker.app.main == "ecglens"


def test_healthcheck_asks_the_apps_healthz_route(tmp_path):
    from ecglens.service.app import create_app
    from ecglens.service.config import Settings

    assert "/api/v1/healthz" in HEALTHCHECK.read_text()
    from fastapi.testclient import TestClient

    app = create_app(Settings(data_dir=tmp_path, database_url="", broker_url="", _env_file=None))
    with TestClient(app) as client:
        response = client.get("/api/v1/healthz")
    assert response.status_code == 200 and response.json()["status"] == "ok"


def test_no_secret_reaches_an_image_layer():
    patterns = ignore_patterns()
    for path in (
        ".env",
        "backend/.env",
        "var/ecglens.db",
        ".git/config",
        ".venv/bin/python",
        "tests/conftest.py",
        "deploy/.env.local",
        "models/server.key",
    ):
        assert dockerignored(path, patterns), f"{path} would be sent to the Docker build"
    for path in (
        "backend/ecglens/__init__.py",
        "models/builtin.pt",
        "frontend/index.html",
        "deploy/entrypoint.sh",
        "pyproject.toml",
    ):
        assert not dockerignored(path, patterns), f"{path} is needed in the image but ignored"
    steps = dockerfile_instructions(DOCKERFILE.read_text())
    for word, args in steps:
        if word in ("ARG", "ENV"):
            assert not re.search(r"PASSWORD|SECRET|TOKEN|API_KEY|_KEY\b", args, re.I), f"{word} {args}"


def build_context(dest: Path) -> Path:
    """Copy what ``docker build .`` would send (tracked files minus .dockerignore) into ``dest``; return it."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    patterns = ignore_patterns()
    for name in files.decode().split("\0"):
        if name and not dockerignored(name, patterns) and (REPO / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, dest / name)
    return dest


def test_build_context_alone_runs_the_migrate_step_and_finds_models_and_frontend(tmp_path):
    """The image's /app is the build context: with only those files on the path the one-shot step runs, and the
    code finds models/ and frontend/ beside itself (as the editable install in the image does)."""
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    app = build_context(tmp_path / "app")
    assert not (app / "tests").exists() and not (app / ".env.example").exists()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ECGLENS_")}
    env.update(
        PYTHONPATH=str(app / "backend"),
        ECGLENS_DATA_DIR=str(tmp_path / "data"),
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
    )
    done = subprocess.run(
        [str(app / "deploy" / "entrypoint.sh"), "migrate"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert re.search(r"\becgl_[0-9a-f]{16}_", done.stdout)
    probe = (
        "import ecglens, ecglens.classifiers as c, ecglens.service.app as a; "
        "print(ecglens.__file__); print(c.models_dir()); print(a.REPO_FRONTEND)"
    )
    where = subprocess.run(
        [sys.executable, "-c", probe], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60, check=True
    ).stdout.split()
    assert where == [str(app / "backend" / "ecglens" / "__init__.py"), str(app / "models"), str(app / "frontend")]


# --- settings -------------------------------------------------------------------------------------------------


def test_env_example_lists_exactly_the_settings_fields():
    from ecglens.service.config import Settings

    fields = {f"ECGLENS_{name.upper()}" for name in Settings.model_fields}
    documented = env_example_names()
    assert documented - fields == set(), "in .env.example but not a Settings field"
    assert fields - documented == set(), "a Settings field missing from .env.example"


def test_env_example_values_load_into_settings(tmp_path, monkeypatch):
    from ecglens.service.config import Settings

    (tmp_path / ".env").write_text(ENV_EXAMPLE.read_text())
    monkeypatch.chdir(tmp_path)
    for name in env_example_names():
        monkeypatch.delenv(name, raising=False)
    settings = Settings()
    assert settings.broker_url == "" and settings.max_upload_mb == 100.0
    assert settings.data_dir == (tmp_path / "var").resolve()


# --- native: the processes compose would run, on 127.0.0.1 ----------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _postgres_tool(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    return str(candidates[-1]) if candidates else None


def _wait_until(check, timeout_s: float, what: str, proc: subprocess.Popen | None = None, log: Path | None = None):
    """Poll ``check()`` until it is truthy; fail naming ``what`` (and the process log) on timeout or exit."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"{what}: exited with {proc.returncode}\n{_tail(log)}")
        try:
            value = check()
        except Exception:  # noqa: BLE001 - not up yet
            value = None
        if value:
            return value
        time.sleep(0.2)
    pytest.fail(f"{what}: not ready after {timeout_s:.0f} s\n{_tail(log)}")


def _tail(log: Path | None, lines: int = 40) -> str:
    if log is None or not log.exists():
        return ""
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


@pytest.fixture(scope="module")
def unprivileged_dir():
    """A scratch folder outside pytest's root-only tmp tree, writable by the user PostgreSQL runs as."""
    path = Path(tempfile.mkdtemp(prefix="ecglens-deploy-"))
    user = None
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root: run it as the `postgres` system user
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(path)
            pytest.skip("running as root and there is no unprivileged `postgres` user to run PostgreSQL")
        os.chown(path, user.pw_uid, user.pw_gid)
    yield path, user
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def postgres_url(unprivileged_dir):
    """A throw-away PostgreSQL cluster on a free 127.0.0.1 port; yields its SQLAlchemy URL."""
    initdb, pg_ctl = _postgres_tool("initdb"), _postgres_tool("pg_ctl")
    if not (initdb and pg_ctl):
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not installed")
    root, user = unprivileged_dir
    run_as = {"user": user.pw_uid, "group": user.pw_gid} if user else {}
    data, log, port = root / "pg", root / "pg.log", free_port()
    subprocess.run(
        [initdb, "-D", str(data), "-U", "ecglens", "--auth=trust", "-E", "UTF8", "--no-sync"],
        check=True,
        capture_output=True,
        timeout=120,
        **run_as,
    )
    subprocess.run(
        [
            pg_ctl,
            "-D",
            str(data),
            "-l",
            str(log),
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
        import psycopg

        with psycopg.connect(f"host=127.0.0.1 port={port} user=ecglens dbname=postgres", autocommit=True) as conn:
            conn.execute("CREATE DATABASE ecglens")
        yield f"postgresql+psycopg://ecglens@127.0.0.1:{port}/ecglens"
    finally:
        subprocess.run([pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop"], capture_output=True, timeout=60, **run_as)


@pytest.fixture(scope="module")
def redis_url(unprivileged_dir):
    """A redis-server on a free 127.0.0.1 port without persistence (as compose runs it); yields its URL."""
    server = shutil.which("redis-server")
    if not server:
        pytest.skip("redis-server not installed")
    root, _ = unprivileged_dir
    port, log = free_port(), root / "redis.log"
    proc = subprocess.Popen(
        [
            server,
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(root),
            "--logfile",
            str(log),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    import redis

    client = redis.Redis(host="127.0.0.1", port=port)
    try:
        _wait_until(client.ping, 20, "redis-server", proc, log)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        client.close()
        _stop(proc)


def _stop(proc: subprocess.Popen, timeout_s: float = 20) -> None:
    """SIGTERM the process we started (by its pid), then SIGKILL when it lingers."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


# A hospital's own classifier, registered through the API: a real TorchScript model whose logits follow the power
# of lead MLII, so realistic noise flips "calm" to "noisy". The API stores it in the data directory and the worker
# must load it from there, as it would from the shared volume under compose.
POWER_CARD = {
    "name": "power",
    "classes": ["calm", "noisy"],
    "sampling_rate": 360.0,
    "leads": ["MLII", "V1"],
    "window_s": 2.0,
    "output": "logits",
    "description": "deploy test: noisy when MLII power is high",
}


def power_model(folder: Path) -> bytes:
    """TorchScript bytes of the MLII-power classifier described by `POWER_CARD`."""
    import torch

    class Power(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            centred = x[:, 0, :] - x[:, 0, :].mean(dim=1, keepdim=True)
            power = (centred**2).mean(dim=1)
            return torch.stack([2.0 - 12.0 * power, 12.0 * power - 2.0], dim=1)

    path = folder / "power.pt"
    torch.jit.script(Power()).save(str(path))
    return path.read_bytes()


def wfdb_upload(ecg, folder: Path) -> list[tuple[str, tuple[str, bytes, str]]]:
    """``ecg`` written by wfdb as a .hea + .dat pair, as multipart ``files`` parts."""
    import wfdb

    wfdb.wrsamp(
        "deploy",
        fs=ecg.fs,
        units=["mV"] * ecg.n_leads,
        sig_name=list(ecg.leads),
        p_signal=ecg.signal.T.astype("float64"),
        fmt=["16"] * ecg.n_leads,
        write_dir=str(folder),
    )
    return [
        ("files", (name, (folder / name).read_bytes(), "application/octet-stream"))
        for name in ("deploy.hea", "deploy.dat")
    ]


def _entrypoint_env(**extra: str) -> dict[str, str]:
    """The environment compose gives the app containers, pointed at native services; no stray settings."""
    from ecglens.service.config import Settings

    settings = {f"ECGLENS_{name.upper()}" for name in Settings.model_fields}
    env = {k: v for k, v in os.environ.items() if k not in settings}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", **extra)
    return env


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.redis
def test_compose_processes_run_one_analysis_natively(postgres_url, redis_url, synthetic_ecg, tmp_path):
    """migrate (once) -> API + one Celery worker, on PostgreSQL and Redis: one analysis goes through the worker."""
    import httpx
    import psycopg

    budget, port = 40, free_port()
    env = _entrypoint_env(
        ECGLENS_DATA_DIR=str(tmp_path / "data"),
        ECGLENS_DATABASE_URL=postgres_url,
        ECGLENS_BROKER_URL=redis_url,
        ECGLENS_DEVICE="cpu",
        API_HOST="127.0.0.1",
        API_PORT=str(port),
        WORKER_CONCURRENCY="1",
        WORKER_NAME="deploytest",
    )
    run = dict(env=env, cwd=tmp_path, capture_output=True, text=True, timeout=180)

    # The one-shot step: migrations, then the first admin key, printed once only.
    first = subprocess.run([str(ENTRYPOINT), "migrate"], **run)
    assert first.returncode == 0, first.stderr
    keys = re.findall(r"\becgl_[0-9a-f]{16}_[A-Za-z0-9_-]{20,}", first.stdout)
    assert len(keys) == 1, first.stdout
    second = subprocess.run([str(ENTRYPOINT), "migrate"], **run)
    assert second.returncode == 0, second.stderr
    assert "ecgl_" not in second.stdout + second.stderr
    headers = {"Authorization": f"Bearer {keys[0]}"}

    logs = {name: tmp_path / f"{name}.log" for name in ("api", "worker")}
    procs: dict[str, subprocess.Popen] = {}
    try:
        for name in ("api", "worker"):
            with logs[name].open("w") as log:
                procs[name] = subprocess.Popen(
                    [str(ENTRYPOINT), name], env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT
                )
        # The image's healthcheck script is what tells compose the API is up.
        health = [sys.executable, str(HEALTHCHECK)]
        _wait_until(
            lambda: subprocess.run(health, env=env, capture_output=True, timeout=10).returncode == 0,
            90,
            "API (deploy/entrypoint.sh api)",
            procs["api"],
            logs["api"],
        )
        base = f"http://127.0.0.1:{port}/api/v1"
        with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
            healthz = client.get("/healthz").json()
            assert healthz["database"] is True and healthz["executor"] == "CeleryExecutor"
            if (REPO / "models" / "builtin.pt").is_file():  # the shipped model is offered without registration
                assert "builtin" in {m["name"] for m in client.get("/models").json()["data"]}
            registered = client.post(
                "/models",
                data={"name": "power", "card": json.dumps(POWER_CARD)},
                files={"file": ("power.pt", power_model(tmp_path))},
            )
            assert registered.status_code == 201, f"{registered.text}\n{_tail(logs['api'])}"
            uploaded = client.post("/records", files=wfdb_upload(synthetic_ecg, tmp_path))
            assert uploaded.status_code == 201, f"{uploaded.text}\n{_tail(logs['api'])}"
            record_id = uploaded.json()["data"][0]["id"]
            created = client.post(
                "/analyses", json={"record_id": record_id, "model": "power", "query_budget": budget, "seed": 0}
            )
            assert created.status_code == 202, f"{created.text}\n{_tail(logs['api'])}"
            analysis_id = created.json()["id"]

            def finished():
                if procs["worker"].poll() is not None:
                    pytest.fail(f"worker exited with {procs['worker'].returncode}\n{_tail(logs['worker'])}")
                body = client.get(f"/analyses/{analysis_id}").json()
                return body if body["status"] in ("done", "failed") else None

            result = _wait_until(finished, 300, f"analysis {analysis_id}", procs["api"], logs["api"])
        assert result["status"] == "done", f"{result['error']}\n{_tail(logs['worker'])}"
        explanation = result["explanation"]
        assert explanation["diagnosis"]["label"] in POWER_CARD["classes"]
        assert 0 < explanation["queries"] <= budget
        assert result["robustness"] is not None

        # It ran in the Celery worker process (solo pool: the process the entrypoint exec'd), not in the API.
        with psycopg.connect(postgres_url.replace("postgresql+psycopg://", "postgresql://")) as conn:
            worker, attempts = conn.execute(
                "SELECT worker, attempts FROM analyses WHERE id = %s", (analysis_id,)
            ).fetchone()
        assert worker.startswith(f"{socket.gethostname()}:{procs['worker'].pid}:"), worker
        assert attempts == 1
    finally:
        for proc in procs.values():  # SIGTERM both first, so their graceful shutdowns overlap
            if proc.poll() is None:
                proc.terminate()
        for proc in procs.values():
            _stop(proc)
