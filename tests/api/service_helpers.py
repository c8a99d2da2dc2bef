"""Helpers for the REST API tests (imported by conftest.py and the test modules)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class Api:
    """A running app: ``client`` (TestClient), ``tokens`` per role, ``key_ids`` per role, ``runtime``."""

    client: Any
    app: Any
    tokens: dict[str, str]
    key_ids: dict[str, str]

    @property
    def runtime(self):
        return self.app.state.runtime

    def auth(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}

    def upload(self, files: dict[str, bytes], role: str = "clinician"):
        return self.client.post(
            "/api/v1/records", headers=self.auth(role), files=[("files", (name, data)) for name, data in files.items()]
        )

    def wait(self, analysis_id: str, role: str = "clinician", timeout_s: float = 120) -> dict[str, Any]:
        """Poll the analysis until done or failed."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            body = self.client.get(f"/api/v1/analyses/{analysis_id}", headers=self.auth(role)).json()
            if body["status"] in ("done", "failed"):
                return body
            time.sleep(0.1)
        raise AssertionError(f"analysis {analysis_id} not finished after {timeout_s} s")


def wfdb_files(ecg, name: str, folder: Path) -> dict[str, bytes]:
    """``ecg`` written as a WFDB record (format 16) by wfdb itself: ``{name.hea: bytes, name.dat: bytes}``."""
    import wfdb

    folder.mkdir(parents=True, exist_ok=True)
    wfdb.wrsamp(
        name,
        fs=ecg.fs,
        units=["mV"] * ecg.n_leads,
        sig_name=list(ecg.leads),
        p_signal=ecg.signal.T.astype(np.float64),
        fmt=["16"] * ecg.n_leads,
        adc_gain=[200.0] * ecg.n_leads,
        baseline=[0] * ecg.n_leads,
        write_dir=str(folder),
        comments=["Age: 61 Sex: F"],
    )
    return {f"{name}.hea": (folder / f"{name}.hea").read_bytes(), f"{name}.dat": (folder / f"{name}.dat").read_bytes()}


TINY_CARD = {
    "name": "tiny",
    "classes": ["calm", "noisy"],
    "sampling_rate": 360.0,
    "leads": ["MLII", "V1"],
    "window_s": 2.0,
    "output": "logits",
    "description": "test model: calls a window noisy when its MLII power is high",
}


def register_tiny(api: Api, tiny_model, name: str = "tiny"):
    data, card = tiny_model
    return api.client.post(
        "/api/v1/models",
        headers=api.auth("admin"),
        data={"name": name, "card": json.dumps({**card, "name": name})},
        files={"file": ("tiny.pt", data)},
    )


def make_api(tmp_path: Path, database_url: str = "", **overrides: Any) -> Iterator[Api]:
    """The app in ``tmp_path`` (SQLite unless ``database_url``; in-process jobs) with ``Settings`` overrides, and
    one API key per role; a generator (``yield from`` in a fixture, or `contextlib.contextmanager`)."""
    from fastapi.testclient import TestClient

    from ecglens.service import Settings, create_app
    from ecglens.service.auth import ROLES, create_key

    overrides.setdefault("broker_url", "")  # in-process jobs whatever the environment says
    settings = Settings(
        _env_file=None,
        data_dir=tmp_path / "var",
        database_url=database_url,
        frontend_dir=tmp_path / "no-frontend",
        **overrides,
    )
    app = create_app(settings)
    tokens, ids = {}, {}
    with app.state.runtime.sessions() as session:
        for role in ROLES:
            key = create_key(session, role, f"test {role}")
            tokens[role], ids[role] = key.token, key.id
    with TestClient(app, client=("10.1.2.3", 50000)) as client:
        yield Api(client, app, tokens, ids)
