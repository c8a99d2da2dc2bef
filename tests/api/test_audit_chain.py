"""`ecglens audit verify` and ``GET /audit/verify`` catch an edited or deleted audit row (SQLite edited directly)."""

from __future__ import annotations

import json
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
            digest = hmac.new(
                key, (prev + "\n" + canonical({k: row[k] for k in HASHED_FIELDS})).encode(), hashlib.sha256
            ).hexdigest()
            conn.execute(
                "UPDATE audit_events SET actor_name = ?, prev_hash = ?, hash = ? WHERE seq = ?",
                (row["actor_name"], prev, digest, row["seq"]),
            )
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


@pytest.fixture
def checkpointed(tmp_path, wfdb_record, monkeypatch):
    """An app that checkpoints every 2 events, with 5 events in its log; the CLI on the same data directory."""
    from service_helpers import make_api

    gen = make_api(tmp_path, "", max_upload_mb=1, audit_checkpoint_every=2)
    api = next(gen)
    record = api.upload(wfdb_record).json()["data"][0]
    for _ in range(4):
        api.client.get(f"/api/v1/records/{record['id']}", headers=api.auth("clinician"))
    monkeypatch.setenv("ECGLENS_DATA_DIR", str(api.runtime.settings.data_dir))
    monkeypatch.delenv("ECGLENS_DATABASE_URL", raising=False)
    yield api, api.runtime.settings.data_dir / "ecglens.db"
    gen.close()


def test_checkpoints_are_written_at_start_and_every_n_events(checkpointed, capsys):
    api, _ = checkpointed
    lines = [json.loads(x) for x in api.runtime.settings.audit_checkpoint_file.read_text().splitlines()]
    assert [x["seq"] for x in lines] == [0, 2, 4]
    assert oct(api.runtime.settings.audit_checkpoint_file.stat().st_mode & 0o777) == "0o600"
    assert main(["audit", "verify"]) == 0 and "5 events" in capsys.readouterr().out


def test_a_cut_tail_with_the_head_moved_back_is_caught_by_the_checkpoint(checkpointed, capsys):
    api, db = checkpointed
    # Delete the newest three events and move the head row back onto the last one kept: links and head agree.
    with sqlite3.connect(db) as conn:
        seq, digest = conn.execute("SELECT seq, hash FROM audit_events WHERE seq = 2").fetchone()
        conn.execute("DELETE FROM audit_events WHERE seq > 2")
        conn.execute("UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1", (seq, digest))
    _assert_broken_at(api, capsys, 3, "names event 4 but the chain ends at 2")


def test_a_wiped_log_is_caught(checkpointed, capsys):
    api, db = checkpointed
    _sql(db, "DELETE FROM audit_events")
    _sql(db, "DELETE FROM audit_head")
    assert main(["audit", "verify"]) == 1
    assert "the log was wiped" in capsys.readouterr().err


def test_an_edited_or_removed_checkpoint_file_is_caught(checkpointed, capsys):
    api, _ = checkpointed
    path = api.runtime.settings.audit_checkpoint_file
    entries = [json.loads(x) for x in path.read_text().splitlines()]
    entries[-1]["seq"] = 1  # pretend the last checkpoint was earlier (so a cut would pass): its MAC breaks
    path.write_text("".join(json.dumps(e) + "\n" for e in entries))
    assert main(["audit", "verify"]) == 1
    assert "not signed by this audit key" in capsys.readouterr().err
    path.unlink()
    assert main(["audit", "verify"]) == 1
    assert "audit-checkpoints is missing" in capsys.readouterr().err


def test_a_checkpoint_kept_elsewhere_is_checked_too(checkpointed, capsys):
    api, db = checkpointed
    seq, digest = api.runtime.audit.head()
    assert main(["audit", "verify", "--checkpoint", f"{seq}:{digest}"]) == 0
    capsys.readouterr()
    assert main(["audit", "verify", "--checkpoint", f"{seq + 3}:{digest}"]) == 1
    assert f"names event {seq + 3}" in capsys.readouterr().err


def test_verify_needs_the_key_and_never_makes_one(checkpointed, capsys):
    api, _ = checkpointed
    key_file = api.runtime.settings.audit_key_file
    key_file.unlink()
    assert main(["audit", "verify"]) == 2
    assert "no audit key" in capsys.readouterr().err and not key_file.exists()
