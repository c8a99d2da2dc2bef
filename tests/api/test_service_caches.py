"""What the request path keeps between requests, and that every security property survives it: the key cache
(revocation, expiry, failures never cached, every use audited), the cache of finished analyses' bodies (access
checked on every read), the audit log's group commit (one intact chain; a bad event fails alone) and the records
list's newest analysis per record."""

from __future__ import annotations

import threading
from concurrent.futures import Future

import pytest
from service_helpers import register_tiny, wfdb_files
from sqlalchemy import func, select, text

from ecglens.service import auth
from ecglens.service.audit import AuditLog, verify
from ecglens.service.auth import KeyCache
from ecglens.service.db import Analysis, ApiKey, AuditEvent, new_id


def _audit_count(api, action: str) -> int:
    with api.runtime.sessions() as session:
        return session.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.action == action))


def test_a_cached_key_is_audited_on_every_use_and_stops_at_once_when_revoked(sqlite_api):
    api = sqlite_api
    made = api.client.post("/api/v1/keys", headers=api.auth("admin"), json={"role": "clinician", "name": "dr c"})
    token, key_id = made.json()["token"], made.json()["id"]
    h = {"Authorization": f"Bearer {token}"}
    before = _audit_count(api, "record.list")
    for _ in range(5):
        assert api.client.get("/api/v1/records", headers=h).status_code == 200
    assert api.runtime.key_cache.get(token) is not None  # served from the cache ...
    assert _audit_count(api, "record.list") == before + 5  # ... and audited every time
    assert api.client.delete(f"/api/v1/keys/{key_id}", headers=api.auth("admin")).status_code == 204
    assert api.runtime.key_cache.get(token) is None
    refused = api.client.get("/api/v1/records", headers=h)
    assert refused.status_code == 401 and "revoked" in refused.json()["detail"]


def test_a_key_revoked_by_another_process_stops_once_its_cache_entry_expires(sqlite_api, monkeypatch):
    api = sqlite_api
    h = api.auth("clinician")
    now = [1000.0]
    monkeypatch.setattr(auth.time, "monotonic", lambda: now[0])
    assert api.client.get("/api/v1/records", headers=h).status_code == 200
    with api.runtime.engine.begin() as conn:  # what another API process's revocation leaves behind
        conn.execute(
            text("UPDATE api_keys SET revoked_at = '2026-01-01T00:00:00.000000Z' WHERE id = :id"),
            {"id": api.key_ids["clinician"]},
        )
    now[0] += auth.KEY_CACHE_S + 0.01
    assert api.client.get("/api/v1/records", headers=h).status_code == 401


def test_wrong_tokens_are_never_cached_and_stay_throttled(sqlite_api):
    api = sqlite_api
    wrong = api.tokens["clinician"][:-4] + "AAAA"
    codes = [
        api.client.get("/api/v1/records", headers={"Authorization": f"Bearer {wrong}"}).status_code for _ in range(12)
    ]
    assert codes[0] == 401 and codes[-1] == 429
    assert api.runtime.key_cache.get(wrong) is None
    assert len(api.runtime.key_cache) == 0  # no valid key used yet: nothing cached


def _key(key_id: str) -> ApiKey:
    return ApiKey(id=key_id, name="n", role="clinician", secret_hash="0" * 64)


def test_key_cache_expires_and_a_revoked_key_cannot_be_put_back(monkeypatch):
    now = [0.0]
    monkeypatch.setattr(auth.time, "monotonic", lambda: now[0])
    cache = KeyCache(ttl_s=2.0)
    cache.put("ecgl_aaaaaaaaaaaaaaaa_s1", _key("aaaaaaaaaaaaaaaa"))
    assert cache.get("ecgl_aaaaaaaaaaaaaaaa_s1").id == "aaaaaaaaaaaaaaaa"
    assert cache.get("ecgl_aaaaaaaaaaaaaaaa_other") is None  # keyed by the whole token
    now[0] = 2.0
    assert cache.get("ecgl_aaaaaaaaaaaaaaaa_s1") is None
    cache.put("ecgl_aaaaaaaaaaaaaaaa_s1", _key("aaaaaaaaaaaaaaaa"))
    cache.revoke("aaaaaaaaaaaaaaaa")
    assert cache.get("ecgl_aaaaaaaaaaaaaaaa_s1") is None
    # A check that read the row before the revocation committed cannot cache it afterwards.
    cache.put("ecgl_aaaaaaaaaaaaaaaa_s1", _key("aaaaaaaaaaaaaaaa"))
    assert cache.get("ecgl_aaaaaaaaaaaaaaaa_s1") is None
    assert all("s1" not in digest for digest in cache._entries)  # the token itself is never kept
    off = KeyCache(ttl_s=0)
    off.put("t", _key("bbbbbbbbbbbbbbbb"))
    assert off.get("t") is None


def test_a_finished_analysis_is_served_from_its_cached_body_after_every_access_check(
    sqlite_api, wfdb_record, tiny_model
):
    api = sqlite_api
    assert register_tiny(api, tiny_model).status_code == 201
    rid = api.upload(wfdb_record).json()["data"][0]["id"]
    aid = api.client.post(
        "/api/v1/analyses", headers=api.auth("clinician"), json={"record_id": rid, "model": "tiny", "query_budget": 20}
    ).json()["id"]
    assert api.wait(aid)["status"] == "done"
    first = api.client.get(f"/api/v1/analyses/{aid}", headers=api.auth("clinician"))
    again = api.client.get(f"/api/v1/analyses/{aid}", headers=api.auth("clinician"))
    assert first.status_code == again.status_code == 200 and first.content == again.content
    assert first.json()["explanation"] and first.json()["summary"]
    assert len(api.runtime.analysis_bodies) >= 1
    audited = api.client.get(f"/api/v1/analyses/{aid}", headers=api.auth("auditor")).json()
    assert audited["status"] == "done" and audited["explanation"] is None and audited["summary"] is None
    assert api.client.get(f"/api/v1/analyses/{aid}", headers=api.auth("service")).status_code == 404  # not its own
    before = _audit_count(api, "analysis.read")
    api.client.get(f"/api/v1/analyses/{aid}", headers=api.auth("clinician"))
    assert _audit_count(api, "analysis.read") == before + 1


def test_audit_appends_from_many_threads_make_one_intact_chain(sqlite_api):
    api = sqlite_api
    log = api.runtime.audit
    seqs: list[int] = []
    lock = threading.Lock()

    def worker(i: int) -> None:
        for j in range(10):
            seq = log.append(action="test.append", status=200, object_id=f"{i}-{j}")
            with lock:
                seqs.append(seq)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(seqs) == len(set(seqs)) == 60
    with api.runtime.sessions() as session:
        assert verify(session, api.runtime.audit_key, checkpoint_file=api.runtime.settings.audit_checkpoint_file).ok


def test_an_audit_event_that_cannot_be_written_fails_alone_in_its_batch(sqlite_api):
    api = sqlite_api
    log: AuditLog = api.runtime.audit
    batch = [
        ({"action": "test.ok", "status": 200}, Future()),
        ({"action": "test.bad", "status": 2**70}, Future()),  # no database integer holds it
        ({"action": "test.ok", "status": 200}, Future()),
    ]
    log._write(batch)
    assert batch[0][1].result() + 1 == batch[2][1].result()
    with pytest.raises(OverflowError):
        batch[1][1].result()
    with api.runtime.sessions() as session:
        assert verify(session, api.runtime.audit_key, checkpoint_file=api.runtime.settings.audit_checkpoint_file).ok


def test_records_list_shows_the_newest_of_many_analyses_and_a_service_key_only_its_own(sqlite_api, wfdb_record):
    api = sqlite_api
    rid = api.upload(wfdb_record).json()["data"][0]["id"]
    rows = [
        ("2026-01-01T00:00:03.000000Z", api.key_ids["clinician"], "done"),
        ("2026-01-01T00:00:09.000000Z", api.key_ids["clinician"], "running"),
        ("2026-01-01T00:00:05.000000Z", api.key_ids["service"], "failed"),
        ("2026-01-01T00:00:01.000000Z", api.key_ids["service"], "done"),
    ]
    ids = []
    with api.runtime.sessions() as session:
        for at, by, state in rows:
            ids.append(new_id())
            session.add(
                Analysis(
                    id=ids[-1],
                    record_id=rid,
                    model="builtin",
                    query_budget=10,
                    seed=0,
                    status=state,
                    progress=50.0,
                    queries=0,
                    attempts=1,
                    created_by=by,
                    created_at=at,
                    result='{"explanation": {}}' if state == "done" else None,
                )
            )
        session.commit()
    seen = api.client.get("/api/v1/records", headers=api.auth("clinician")).json()["data"][0]["latest_analysis"]
    assert seen == {"id": ids[1], "status": "running", "progress": 50.0, "created_at": rows[1][0]}
    # The service key's own upload lists nothing (no analyses of its own); give it the record to see.
    with api.runtime.engine.begin() as conn:
        conn.execute(text("UPDATE records SET created_by = :k WHERE id = :r"), {"k": api.key_ids["service"], "r": rid})
    own = api.client.get("/api/v1/records", headers=api.auth("service")).json()["data"][0]["latest_analysis"]
    assert own["id"] == ids[2] and own["status"] == "failed"


def test_records_list_counts_every_match_on_every_page(sqlite_api, synthetic_ecg, tmp_path):
    api = sqlite_api
    for name in ("p1", "p2", "p3"):
        assert api.upload(wfdb_files(synthetic_ecg, name, tmp_path / name)).status_code == 201
    h = api.auth("clinician")
    for skip, limit, shown in ((0, 2, 2), (2, 2, 1), (0, 5, 3), (3, 2, 0), (9, 2, 0)):
        page = api.client.get("/api/v1/records", params={"skip": skip, "limit": limit}, headers=h).json()
        assert (len(page["data"]), page["count"]) == (shown, 3), (skip, limit)
