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


def _assert_broken_at(api, capsys, seq: int, reason: str) -> None:
    """Both the CLI and the API name event ``seq`` as the first bad one."""
    assert main(["audit", "verify"]) == 1
    assert reason in capsys.readouterr().err
    body = api.client.get("/api/v1/audit/verify", headers=api.auth("auditor")).json()
    assert body["ok"] is False and body["first_bad_seq"] == seq


def test_intact_chain_verifies(audited, capsys):
    assert main(["audit", "verify"]) == 0
    assert "4 events" in capsys.readouterr().out


def test_edited_row_is_named(audited, capsys):
    api, db = audited
    _sql(db, "UPDATE audit_events SET status = 200 WHERE seq = 1")  # hide that it was a create (201)
    _assert_broken_at(api, capsys, 1, "event 1")


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
    api, db = audited
    # An editor who recomputes the edited row's hash still breaks the next row's prev_hash link.
    from ecglens.service.audit import HASHED_FIELDS, chain_hash

    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        row = dict(conn.execute("SELECT * FROM audit_events WHERE seq = 2").fetchone())
        row["actor_name"] = "someone else"
        new_hash = chain_hash(row["prev_hash"], {k: row[k] for k in HASHED_FIELDS}, api.runtime.audit_key)
        conn.execute("UPDATE audit_events SET actor_name = ?, hash = ? WHERE seq = 2", ("someone else", new_hash))
    assert main(["audit", "verify"]) == 1
    assert "event 3" in capsys.readouterr().err


def _rewrite_chain(db, key: bytes, edit: dict) -> None:
    """Rewrite every link from the first event on under ``key``, with ``edit`` applied to event 2."""
    import hashlib
    import hmac

    from ecglens.service.audit import HASHED_FIELDS, canonical

    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        rows = [dict(r) for r in conn.execute("SELECT * FROM audit_events ORDER BY seq")]
        prev = hmac.new(key, b"ecglens audit genesis", hashlib.sha256).hexdigest()
        for row in rows:
            if row["seq"] == 2:
                row.update(edit)
            digest = hmac.new(key, (prev + "\n" + canonical({k: row[k] for k in HASHED_FIELDS})).encode(),
                              hashlib.sha256).hexdigest()
            conn.execute("UPDATE audit_events SET actor_name = ?, prev_hash = ?, hash = ? WHERE seq = ?",
                         (row["actor_name"], prev, digest, row["seq"]))
            prev = digest
        conn.execute("UPDATE audit_head SET hash = ? WHERE id = 1", (prev,))


def test_a_whole_chain_rewritten_without_the_key_is_caught(audited, capsys):
    # The forger re-signs every event from the first on, as a plain SHA-256 chain would have let them.
    api, db = audited
    _rewrite_chain(db, b"a key the forger guessed", {"actor_name": "someone else"})
    _assert_broken_at(api, capsys, 1, "not started under this audit key")


def test_the_same_rewrite_under_the_real_key_verifies_so_the_key_is_what_protects(audited, capsys):
    api, db = audited
    _rewrite_chain(db, api.runtime.audit_key, {"actor_name": "someone else"})
    assert main(["audit", "verify"]) == 0


def test_audit_key_comes_from_the_setting_else_a_private_file_made_once(tmp_path, monkeypatch):
    import os
    import stat

    from ecglens.service.config import Settings
    from ecglens.service.runtime import Runtime

    monkeypatch.delenv("ECGLENS_AUDIT_KEY", raising=False)
    first = Runtime(Settings(data_dir=tmp_path)).audit_key
    assert len(first) == 64 and Runtime(Settings(data_dir=tmp_path)).audit_key == first
    assert stat.S_IMODE(os.stat(tmp_path / "audit-key").st_mode) == 0o600
    assert Runtime(Settings(data_dir=tmp_path, audit_key="x" * 20)).audit_key == b"x" * 20
    with pytest.raises(ValueError, match="at least 16"):
        Settings(data_dir=tmp_path, audit_key="short")
