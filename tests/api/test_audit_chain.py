"""`ecglens audit verify` and ``GET /audit/verify`` catch an edited or deleted audit row (SQLite edited directly)."""
from __future__ import annotations

import sqlite3

import pytest

from ecglens.cli import main


@pytest.fixture
def audited(sqlite_api, wfdb_record, monkeypatch):
    """An app whose audit log holds a few events; the CLI pointed at the same data directory."""
    api = sqlite_api
    record = api.upload(wfdb_record).json()["data"][0]
    for _ in range(3):
        api.client.get(f"/api/v1/records/{record['id']}", headers=api.auth("clinician"))
    monkeypatch.setenv("ECGLENS_DATA_DIR", str(api.runtime.settings.data_dir))
    monkeypatch.delenv("ECGLENS_DATABASE_URL", raising=False)
    return api, api.runtime.settings.data_dir / "ecglens.db"


def _sql(db, statement: str) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute(statement)


def test_intact_chain_verifies(audited, capsys):
    assert main(["audit", "verify"]) == 0
    assert "4 events" in capsys.readouterr().out


def test_edited_row_is_named(audited, capsys):
    api, db = audited
    _sql(db, "UPDATE audit_events SET status = 200 WHERE seq = 1")  # hide that it was a create (201)
    assert main(["audit", "verify"]) == 1
    assert "event 1" in capsys.readouterr().err
    body = api.client.get("/api/v1/audit/verify", headers=api.auth("auditor")).json()
    assert body["ok"] is False and body["first_bad_seq"] == 1


def test_deleted_middle_row_is_named(audited, capsys):
    _, db = audited
    _sql(db, "DELETE FROM audit_events WHERE seq = 2")
    assert main(["audit", "verify"]) == 1
    assert "event 2" in capsys.readouterr().err


def test_deleted_last_row_is_noticed(audited, capsys):
    _, db = audited
    _sql(db, "DELETE FROM audit_events WHERE seq = (SELECT MAX(seq) FROM audit_events)")
    assert main(["audit", "verify"]) == 1
    assert "event 4" in capsys.readouterr().err


def test_rehashed_edit_still_breaks_the_next_link(audited, capsys):
    _, db = audited
    # An editor who recomputes the edited row's hash still breaks the next row's prev_hash link.
    from ecglens.service.audit import HASHED_FIELDS, chain_hash

    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        row = dict(conn.execute("SELECT * FROM audit_events WHERE seq = 2").fetchone())
        row["actor_name"] = "someone else"
        new_hash = chain_hash(row["prev_hash"], {k: row[k] for k in HASHED_FIELDS})
        conn.execute("UPDATE audit_events SET actor_name = ?, hash = ? WHERE seq = 2", ("someone else", new_hash))
    assert main(["audit", "verify"]) == 1
    assert "event 3" in capsys.readouterr().err
