"""``POST /api/v1/models/{name}/harden`` and ``GET /api/v1/hardening-jobs/{id}``: admin-only hardening jobs, their
refusals, a real end-to-end job on MIT-BIH (tiny recipe), and the ``hardening_jobs`` migration up and down."""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa
from service_helpers import TINY_CARD, make_api, register_tiny
from shared_data import shared_path

from ecglens.datasets.mitdb import CLASS_NAMES, DS1

HARDEN = "/api/v1/models/{}/harden"
JOB = "/api/v1/hardening-jobs/{}"


running_api = contextmanager(make_api)  # the app on SQLite with Settings overrides, one key per role


@pytest.fixture
def fake_mitdb(tmp_path) -> Path:
    """A folder holding every DS1 file name hardening checks for, all empty: passes the route's check, fails the
    job when it reads the records."""
    folder = tmp_path / "fake-mitdb"
    folder.mkdir()
    for name in DS1:
        for ext in (".hea", ".dat", ".atr"):
            (folder / f"{name}{ext}").write_bytes(b"")
    return folder


@pytest.fixture
def harden_api(tmp_path, fake_mitdb):
    """The app on SQLite with ``ECGLENS_MITDB_DIR`` at the fake folder (the route's data check passes)."""
    with running_api(tmp_path, mitdb_dir=fake_mitdb) as api:
        yield api


def _jobs(api) -> list:
    from ecglens.service.db import HardeningJob

    with api.runtime.sessions() as session:
        return session.scalars(sa.select(HardeningJob)).all()


def _add_model(api, name: str, kind: str, spec: str) -> None:
    from ecglens.service.db import Model, utcnow

    with api.runtime.sessions() as session:
        session.add(Model(name=name, kind=kind, spec=spec, card={}, created_at=utcnow()))
        session.commit()


def _wait(api, job_id: str, timeout_s: float) -> tuple[dict, list[tuple[str, float]]]:
    """Poll the job until it ends; return its final body and the (status, progress) seen on the way."""
    seen, deadline = [], time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        body = api.client.get(JOB.format(job_id), headers=api.auth("admin")).json()
        seen.append((body["status"], body["progress"]))
        if body["status"] in ("done", "failed"):
            return body, seen
        time.sleep(0.2)
    raise AssertionError(f"hardening job {job_id} not finished after {timeout_s} s: {seen[-3:]}")


# ------------------------------------------------------------------------------------------------ refusals
def test_harden_unknown_model_is_404(harden_api):
    r = harden_api.client.post(HARDEN.format("absent"), headers=harden_api.auth("admin"), json={})
    assert r.status_code == 404
    assert "'absent' is not registered" in r.json()["detail"]
    assert _jobs(harden_api) == []


@pytest.mark.parametrize("kind", ["onnx", "http"])
def test_harden_onnx_or_http_model_is_422_with_the_reason(harden_api, kind):
    spec = "https://models.example/ecg" if kind == "http" else str(harden_api.runtime.settings.model_dir / "m.onnx")
    _add_model(harden_api, "remote", kind, spec)
    r = harden_api.client.post(HARDEN.format("remote"), headers=harden_api.auth("admin"), json={})
    assert r.status_code == 422
    assert r.json()["detail"] == (
        f"model 'remote' is {kind}: hardening fine-tunes weights, so it needs the "
        "built-in model or a TorchScript upload"
    )
    assert _jobs(harden_api) == []


def test_harden_torchscript_without_trainable_weights_is_422(harden_api, tiny_model):
    assert register_tiny(harden_api, tiny_model).status_code == 201  # arithmetic only: no parameters at all
    r = harden_api.client.post(HARDEN.format("tiny"), headers=harden_api.auth("admin"), json={})
    assert r.status_code == 422
    assert "no trainable floating-point parameters" in r.json()["detail"]
    assert _jobs(harden_api) == []


def test_harden_model_with_other_classes_than_mitdb_is_422(harden_api, tmp_path):
    import torch

    class Linear(torch.nn.Module):  # trainable, but its classes are not MIT-BIH's
        def __init__(self) -> None:
            super().__init__()
            self.fc = torch.nn.Linear(2, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x.mean(dim=2))

    torch.manual_seed(0)
    path = tmp_path / "lin.pt"
    torch.jit.script(Linear()).save(str(path))
    r = harden_api.client.post(
        "/api/v1/models",
        headers=harden_api.auth("admin"),
        data={"name": "lin", "card": json.dumps({**TINY_CARD, "name": "lin"})},
        files={"file": ("lin.pt", path.read_bytes())},
    )
    assert r.status_code == 201, r.text
    r = harden_api.client.post(HARDEN.format("lin"), headers=harden_api.auth("admin"), json={})
    assert r.status_code == 422
    assert f"needs the classes {list(CLASS_NAMES)}" in r.json()["detail"]


def test_harden_to_a_registered_name_is_409(harden_api):
    r = harden_api.client.post(HARDEN.format("builtin"), headers=harden_api.auth("admin"), json={"new_name": "builtin"})
    assert r.status_code == 409
    assert "'builtin' is already registered" in r.json()["detail"]
    assert _jobs(harden_api) == []


def test_harden_to_a_name_a_pending_job_will_take_is_409(harden_api):
    from ecglens.service.db import QUEUED, HardeningJob, new_id, utcnow

    with harden_api.runtime.sessions() as session:
        session.add(
            HardeningJob(
                id=new_id(),
                parent_model="builtin",
                new_model="b2",
                status=QUEUED,
                progress=0.0,
                params={"seed": 0},
                attempts=0,
                created_at=utcnow(),
            )
        )
        session.commit()
    r = harden_api.client.post(HARDEN.format("builtin"), headers=harden_api.auth("admin"), json={"new_name": "b2"})
    assert r.status_code == 409
    assert "is being made by hardening job" in r.json()["detail"]
    assert len(_jobs(harden_api)) == 1


@pytest.mark.parametrize(
    "body,field",
    [
        ({"new_name": "../escape"}, "new_name"),
        ({"new_name": ""}, "new_name"),
        ({"epochs": 0}, "epochs"),
        ({"agent_windows": -1}, "agent_windows"),
        ({"soup": 0}, "soup"),
        ({"seed": -1}, "seed"),
        ({"steps": 5}, "steps"),
    ],
)
def test_harden_bad_body_is_422_naming_the_field(harden_api, body, field):
    r = harden_api.client.post(HARDEN.format("builtin"), headers=harden_api.auth("admin"), json=body)
    assert r.status_code == 422
    assert any(field in e["loc"] for e in r.json()["detail"]), r.json()
    assert _jobs(harden_api) == []


def test_harden_without_the_mitdb_folder_is_503_naming_the_setting(tmp_path):
    with running_api(tmp_path, mitdb_dir=tmp_path / "nowhere") as api:
        r = api.client.post(HARDEN.format("builtin"), headers=api.auth("admin"), json={})
        assert r.status_code == 503
        assert "nowhere" in r.json()["detail"] and "ECGLENS_MITDB_DIR" in r.json()["detail"]
        assert _jobs(api) == []


def test_harden_with_an_incomplete_mitdb_folder_is_503_listing_what_is_missing(tmp_path):
    folder = tmp_path / "partial"
    folder.mkdir()
    (folder / "101.hea").write_text("101 2 360 650000\n")
    with running_api(tmp_path, mitdb_dir=folder) as api:
        r = api.client.post(HARDEN.format("builtin"), headers=api.auth("admin"), json={})
        assert r.status_code == 503
        assert "101.dat" in r.json()["detail"] and "101.hea" not in r.json()["detail"]


def test_read_unknown_hardening_job_is_404(harden_api):
    r = harden_api.client.get(JOB.format("0" * 32), headers=harden_api.auth("admin"))
    assert r.status_code == 404


# ------------------------------------------------------------------------------------------ jobs and audit
def test_harden_queues_a_job_that_fails_with_the_reason_when_the_records_are_unreadable(harden_api):
    api = harden_api
    r = api.client.post(HARDEN.format("builtin"), headers=api.auth("admin"), json={"epochs": 1, "agent_windows": 0})
    assert r.status_code == 202, r.text
    job = r.json()
    assert r.headers["location"] == JOB.format(job["id"])
    assert (job["parent_model"], job["new_model"], job["status"]) == ("builtin", "builtin-hardened-s0", "queued")
    assert job["params"] == {"seed": 0, "epochs": 1, "agent_windows": 0, "soup": None}
    assert job["created_by"] == api.key_ids["admin"]
    assert api.app.state.executor.wait(job["id"], timeout=120) == "failed"
    body = api.client.get(JOB.format(job["id"]), headers=api.auth("admin")).json()
    assert body["status"] == "failed" and body["result"] is None and body["attempts"] == 1
    # the reader fails on the empty records; the reason names the folder it read
    assert body["error"] and f"MIT-BIH records in {api.runtime.settings.mitdb_dir}" in body["error"]
    names = [m["name"] for m in api.client.get("/api/v1/models", headers=api.auth("admin")).json()["data"]]
    assert "builtin-hardened-s0" not in names


def test_failed_job_on_a_model_that_became_unhardenable_records_the_classifier_error(harden_api):
    from ecglens.service.db import QUEUED, HardeningJob, new_id, utcnow
    from ecglens.service.jobs import run_hardening

    _add_model(harden_api, "remote", "http", "https://models.example/ecg")
    job_id = new_id()
    with harden_api.runtime.sessions() as session:
        session.add(
            HardeningJob(
                id=job_id,
                parent_model="remote",
                new_model="remote-h",
                status=QUEUED,
                progress=0.0,
                params={"seed": 0},
                attempts=0,
                created_at=utcnow(),
            )
        )
        session.commit()
    assert run_hardening(job_id, harden_api.runtime) == "failed"
    assert run_hardening(job_id, harden_api.runtime) == "failed"  # an ended job is left alone
    body = harden_api.client.get(JOB.format(job_id), headers=harden_api.auth("admin")).json()
    assert body["error"].startswith("ClassifierError: model 'remote' is http")
    assert body["attempts"] == 1


def test_hardening_requests_are_audited_refused_ones_too(harden_api):
    api = harden_api
    api.client.post(HARDEN.format("builtin"), headers=api.auth("clinician"), json={})
    api.client.post(HARDEN.format("absent"), headers=api.auth("admin"), json={})
    api.client.get(JOB.format("f" * 32), headers=api.auth("admin"))
    audit = api.client.get("/api/v1/audit", params={"action": "model.harden"}, headers=api.auth("auditor")).json()
    got = sorted((e["role"], e["object_type"], e["object_id"], e["status"]) for e in audit["data"])
    assert got == [("admin", "model", "absent", 404), ("clinician", "model", "builtin", 403)]
    reads = api.client.get("/api/v1/audit", params={"action": "hardening.read"}, headers=api.auth("auditor")).json()
    assert [(e["object_id"], e["status"]) for e in reads["data"]] == [("f" * 32, 404)]


def test_celery_worker_registers_the_hardening_task_acknowledged_late():
    from ecglens.service.broker import HARDEN_CELERY_TASK
    from ecglens.service.worker import app

    task = app.tasks[HARDEN_CELERY_TASK]
    assert task.acks_late and task.reject_on_worker_lost


# --------------------------------------------------------------------------------------------- end to end
@pytest.mark.slow
@pytest.mark.realdata
def test_hardening_job_registers_the_new_model_with_its_parent(tmp_path):
    """A real job on MIT-BIH DS1, tiny recipe (1 epoch, 1 agent window): the hardened model is listed by
    GET /models with its parent in its card, and its file is the one the job reports."""
    mitdb = shared_path("mitdb")
    with running_api(tmp_path, mitdb_dir=mitdb) as api:
        r = api.client.post(
            HARDEN.format("builtin"),
            headers=api.auth("admin"),
            json={"seed": 3, "epochs": 1, "agent_windows": 1, "soup": 1},
        )
        assert r.status_code == 202, r.text
        job, seen = _wait(api, r.json()["id"], timeout_s=600)
        assert job["status"] == "done", job["error"]
        assert any(s == "running" for s, _ in seen)
        progress = [p for _, p in seen]
        assert progress == sorted(progress) and job["progress"] == 100.0
        result = job["result"]
        assert (result["name"], result["kind"], result["parent"]) == ("builtin-hardened-s3", "torchscript", "builtin")
        assert "spec" not in result  # no server paths in the API
        assert result["card"]["training"]["seed"] == 3 and result["card"]["training"]["epochs"] == 1

        models = {m["name"]: m for m in api.client.get("/api/v1/models", headers=api.auth("clinician")).json()["data"]}
        new, parent = models["builtin-hardened-s3"], models["builtin"]
        assert new["kind"] == "torchscript" and new["sha256"] == result["sha256"]
        assert new["created_by"] == api.key_ids["admin"]
        assert new["card"]["parent"] == f"{parent['card']['name']}@{parent['card']['version']}"
        assert new["card"]["training"]["parent"]["name"] == "builtin"
        assert new["card"]["training"]["hardening_job"] == job["id"]  # a retry of this job finds it
        assert new["card"]["classes"] == list(CLASS_NAMES)
        files = list(api.runtime.settings.model_dir.glob("builtin-hardened-s3-*.pt"))
        assert [f.name for f in files] == [f"builtin-hardened-s3-{result['sha256'][:12]}.pt"]

        again = api.client.post(HARDEN.format("builtin"), headers=api.auth("admin"), json={"seed": 3})
        assert again.status_code == 409  # the default name is now taken


# ---------------------------------------------------------------------------------------------- migration
def test_migration_0002_adds_hardening_jobs_and_downgrades_to_0001_cleanly(tmp_path):
    from alembic import command

    from ecglens.migrations import alembic_config, upgrade

    url = f"sqlite:///{tmp_path / 'm.db'}"
    upgrade(url, "0001")
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:  # a row from before the migration survives it both ways
            conn.execute(
                sa.text(
                    "INSERT INTO models (name, kind, spec, card, created_at) "
                    "VALUES ('builtin', 'builtin', 'builtin', '{}', 'now')"
                )
            )
        assert "hardening_jobs" not in sa.inspect(engine).get_table_names()

        upgrade(url, "0002")
        inspector = sa.inspect(engine)
        assert "hardening_jobs" in inspector.get_table_names()
        columns = {c["name"] for c in inspector.get_columns("hardening_jobs")}
        assert {
            "id",
            "parent_model",
            "new_model",
            "status",
            "progress",
            "error",
            "params",
            "result",
            "created_by",
            "created_at",
            "started_at",
            "finished_at",
        } <= columns
        assert [fk["referred_table"] for fk in inspector.get_foreign_keys("hardening_jobs")] == ["models"]
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO hardening_jobs (id, parent_model, new_model, status, progress, params, "
                    "attempts, created_at) VALUES ('j1', 'builtin', 'b2', 'queued', 0, '{}', 0, 'now')"
                )
            )
            assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar() == "0002"

        command.downgrade(alembic_config(url), "0001")
        inspector = sa.inspect(engine)
        assert "hardening_jobs" not in inspector.get_table_names()
        assert not [
            i for t in inspector.get_table_names() for i in inspector.get_indexes(t) if "hardening" in (i["name"] or "")
        ]
        with engine.begin() as conn:
            assert conn.execute(sa.text("SELECT name FROM models")).scalars().all() == ["builtin"]
            assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar() == "0001"

        upgrade(url)  # and up again
        assert "hardening_jobs" in sa.inspect(engine).get_table_names()
    finally:
        engine.dispose()


def test_hardening_job_left_running_by_a_stopped_server_is_resumed_at_start(tmp_path, fake_mitdb):
    from ecglens.service.config import Settings
    from ecglens.service.db import RUNNING, HardeningJob, Model, new_id, utcnow
    from ecglens.service.runtime import Runtime

    job_id = new_id()
    before = Runtime(Settings(_env_file=None, data_dir=tmp_path / "var", database_url="", broker_url=""))
    try:
        with before.sessions() as session:  # what a server killed mid-job leaves behind
            session.add(
                Model(name="remote", kind="http", spec="https://models.example/ecg", card={}, created_at=utcnow())
            )
            session.flush()
            session.add(
                HardeningJob(
                    id=job_id,
                    parent_model="remote",
                    new_model="remote-h",
                    status=RUNNING,
                    progress=42.0,
                    params={"seed": 0},
                    attempts=1,
                    created_at=utcnow(),
                    heartbeat_at=utcnow(),
                )
            )
            session.commit()
    finally:
        before.close()
    with running_api(tmp_path, mitdb_dir=fake_mitdb) as api:
        assert api.app.state.executor.wait(job_id, timeout=60) == "failed"
        body = api.client.get(JOB.format(job_id), headers=api.auth("admin")).json()
    assert body["attempts"] == 2 and "ClassifierError: model 'remote' is http" in body["error"]


def test_a_retried_job_returns_the_model_it_registered_before_its_worker_stopped(harden_api):
    """A worker that stopped after registering the hardened model but before marking the job done: the retry
    finds the model its own job registered (the card names the job) and finishes; another job's model with the
    same name is still refused."""
    from ecglens.service.db import Model, utcnow
    from ecglens.service.hardening_job import run_hardening_job

    with harden_api.runtime.sessions() as session:
        session.add(
            Model(
                name="builtin-h",
                kind="torchscript",
                spec="/models/builtin-h-abc.pt",
                sha256="ab" * 32,
                card={"name": "builtin-h", "training": {"hardening_job": "job-1"}},
                created_at=utcnow(),
            )
        )
        session.commit()
    again = run_hardening_job(harden_api.runtime, "builtin", new_name="builtin-h", job_id="job-1")
    assert (again["name"], again["sha256"], again["parent"]) == ("builtin-h", "ab" * 32, "builtin")
    with pytest.raises(ValueError, match="already registered"):
        run_hardening_job(harden_api.runtime, "builtin", new_name="builtin-h", job_id="job-2")
    with pytest.raises(ValueError, match="already registered"):
        run_hardening_job(harden_api.runtime, "builtin", new_name="builtin-h")
