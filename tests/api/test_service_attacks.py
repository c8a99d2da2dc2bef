"""The findings of issue 21, one test each: zip bombs and odd archives, data-file modes, security headers,
failed-auth throttling, revocation of open streams, deleted records' analyses, plausibility limits, and an
audit append that fails refusing its request."""

from __future__ import annotations

import io
import json
import stat
import struct
import tracemalloc
import zipfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from service_helpers import make_api, register_tiny
from sqlalchemy import text


def _zip(files: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", method) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return out.getvalue()


def _lying_bomb(real_mib: int, declared: int = 1000) -> bytes:
    """A deflate zip of ``real_mib`` MiB of zeros whose local and central headers declare ``declared`` bytes."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        with zf.open("zeros.csv", "w") as fh:
            block = bytes(1 << 20)
            for _ in range(real_mib):
                fh.write(block)
    data = bytearray(out.getvalue())
    struct.pack_into("<I", data, 22, declared)  # local header: uncompressed size
    struct.pack_into("<I", data, data.find(b"PK\x01\x02") + 24, declared)  # central directory entry
    return bytes(data)


@contextmanager
def _peak_python_bytes():
    """Peak bytes allocated by Python objects (decompressed data is a bytes object) inside the block."""
    tracemalloc.start()
    box = {}
    try:
        yield box
    finally:
        box["peak"] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()


def test_zip_whose_header_understates_its_size_is_refused_without_inflating_it(sqlite_api):
    bomb = _lying_bomb(200)  # ~200 KiB on the wire, 200 MiB inflated
    with _peak_python_bytes() as mem:
        response = sqlite_api.upload({"bomb.zip": bomb})
    assert response.status_code in (413, 422), response.text
    assert "zeros.csv" in response.json()["detail"]
    assert mem["peak"] < 32 << 20, mem  # the old code inflated all 200 MiB first


def test_zip_expanding_past_the_limit_is_413_counted_while_it_streams(sqlite_api):
    big = _zip({"a.csv": bytes(3 << 20)})  # 3 MiB of zeros, 1 MiB limit, honest header
    response = sqlite_api.upload({"big.zip": big})
    assert response.status_code == 413 and "upload limit" in response.json()["detail"]


def test_zip_with_many_members_is_refused_by_its_count(sqlite_api):
    many = _zip({f"{i}.txt": b"" for i in range(5000)}, zipfile.ZIP_STORED)
    response = sqlite_api.upload({"many.zip": many})
    assert response.status_code == 422 and "5000 entries (limit 512)" in response.json()["detail"]


@pytest.mark.parametrize("name", ["\x00abc.csv", "a\nb.csv", "x/\x01.csv", "\x7fab.csv"])
def test_zip_member_with_a_control_character_in_its_name_is_422(sqlite_api, name):
    raw = _zip({"Xabc.csv": b"MLII\n1\n2\n"}, zipfile.ZIP_STORED)
    placeholder = "Xabc.csv"
    # zipfile itself refuses to write such names: patch them into the bytes (same length keeps offsets).
    crafted = name.encode("utf-8")
    padded = crafted + b"_" * (len(placeholder) - len(crafted)) if len(crafted) <= len(placeholder) else None
    assert padded is not None and len(padded) == len(placeholder)
    response = sqlite_api.upload({"n.zip": raw.replace(placeholder.encode(), padded)})
    assert response.status_code == 422, response.text
    assert "control character" in response.json()["detail"]


def test_nested_zip_is_422(sqlite_api, wfdb_record):
    response = sqlite_api.upload({"outer.zip": _zip({"inner.zip": _zip(wfdb_record)})})
    assert response.status_code == 422 and "nested zip" in response.json()["detail"]


def test_data_files_and_folders_are_private(sqlite_api, wfdb_record):
    assert sqlite_api.upload(wfdb_record).status_code == 201
    data_dir = sqlite_api.runtime.settings.data_dir
    modes = {
        p.relative_to(data_dir).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in [data_dir, *data_dir.rglob("*")]
    }
    assert any(k.startswith("blobs/") and not Path(k).name.startswith(".") for k in modes if len(k) > 60)
    assert any(k.startswith("cache/") for k in modes) and "ecglens.db" in modes
    loose = {k: oct(m) for k, m in modes.items() if m & 0o077}
    assert not loose, loose


def test_security_headers_and_no_store_on_health_data(api, wfdb_record):
    created = api.upload(wfdb_record)
    rid = created.json()["data"][0]["id"]
    for path in (f"/api/v1/records/{rid}/signal", f"/api/v1/records/{rid}", "/api/v1/records"):
        response = api.client.get(path, headers=api.auth("clinician"))
        assert response.status_code == 200
        h = response.headers
        assert h["cache-control"] == "no-store", path
        assert h["x-content-type-options"] == "nosniff" and h["x-frame-options"] == "DENY"
        assert h["referrer-policy"] == "no-referrer"
        assert "default-src 'self'" in h["content-security-policy"]
        assert "script-src 'self';" in h["content-security-policy"]  # no inline or eval'd scripts
    docs = api.client.get("/docs")
    assert "cdn.jsdelivr.net" in docs.headers["content-security-policy"]  # Swagger UI still loads


def test_failed_authentication_is_throttled_per_key_id_and_client(sqlite_api):
    api = sqlite_api
    key_id = api.key_ids["clinician"]
    wrong = {"Authorization": f"Bearer ecgl_{key_id}_not-the-secret"}
    statuses = [api.client.get("/api/v1/records", headers=wrong).status_code for _ in range(15)]
    assert statuses[:10] == [401] * 10 and set(statuses[10:]) == {429}, statuses
    throttled = api.client.get("/api/v1/records", headers=wrong)
    assert int(throttled.headers["retry-after"]) >= 1
    # The same key's owner, from another address, is not locked out; other keys from this address neither.
    from fastapi.testclient import TestClient

    with TestClient(api.app, client=("10.9.9.9", 1234)) as other:
        assert other.get("/api/v1/records", headers=api.auth("clinician")).status_code == 200
    assert api.client.get("/api/v1/records", headers=api.auth("admin")).status_code == 200


def test_failed_authentication_is_throttled_per_client_across_key_ids(sqlite_api):
    statuses = [
        sqlite_api.client.get("/api/v1/records", headers={"Authorization": f"Bearer ecgl_{i:016x}_guess"}).status_code
        for i in range(60)
    ]
    assert statuses[:50] == [401] * 50 and set(statuses[50:]) == {429}


def _queued_analysis(api, record_id: str, role: str = "clinician") -> str:
    """An analysis row left queued (not submitted to a worker), so its progress stream stays open."""
    from ecglens.service.db import QUEUED, Analysis, new_id, utcnow

    with api.runtime.sessions() as session:
        row = Analysis(
            id=new_id(),
            record_id=record_id,
            model="builtin",
            query_budget=10,
            seed=0,
            status=QUEUED,
            progress=0.0,
            queries=0,
            attempts=0,
            created_by=api.key_ids[role],
            created_at=utcnow(),
        )
        session.add(row)
        session.commit()
        return row.id


def test_revoking_a_key_ends_its_open_progress_stream(sqlite_api, wfdb_record):
    api = sqlite_api
    rid = api.upload(wfdb_record).json()["data"][0]["id"]
    aid = _queued_analysis(api, rid)
    with api.client.stream("GET", f"/api/v1/analyses/{aid}/events", headers=api.auth("clinician")) as stream:
        assert stream.status_code == 200 and stream.headers["cache-control"] == "no-store"
        lines = stream.iter_lines()
        assert next(lines) == "event: progress"
        revoke = api.client.delete(f"/api/v1/keys/{api.key_ids['clinician']}", headers=api.auth("admin"))
        assert revoke.status_code == 204
        rest = list(lines)  # ends: the stream closes instead of running on
    assert "event: revoked" in rest


def test_analysis_of_a_deleted_record_is_404(api, wfdb_record, tiny_model):
    assert register_tiny(api, tiny_model).status_code == 201
    rid = api.upload(wfdb_record).json()["data"][0]["id"]
    aid = api.client.post(
        "/api/v1/analyses", headers=api.auth("clinician"), json={"record_id": rid, "model": "tiny", "query_budget": 20}
    ).json()["id"]
    assert api.wait(aid)["status"] == "done"
    assert api.client.delete(f"/api/v1/records/{rid}", headers=api.auth("admin")).status_code == 204
    for path in (
        f"/api/v1/analyses/{aid}",
        f"/api/v1/analyses/{aid}/fhir",
        f"/api/v1/analyses/{aid}/report.pdf",
        f"/api/v1/analyses/{aid}/events",
    ):
        response = api.client.get(path, headers=api.auth("clinician"))
        assert response.status_code == 404, (path, response.status_code)
        assert "diagnosis" not in response.text and "saliency" not in response.text
    listed = api.client.get("/api/v1/analyses", headers=api.auth("clinician")).json()
    assert aid not in [a["id"] for a in listed["data"]]


def _json_record(fs: float, leads: dict) -> bytes:
    return json.dumps({"fs": fs, "leads": leads}).encode()


@pytest.mark.parametrize(
    "body,reason",
    [
        (_json_record(0.0016, {"II": [0.1, 0.2, 0.1] * 10}), "sampling rate 0.0016 Hz is implausible"),
        (_json_record(50000, {"II": [0.1, 0.2, 0.1] * 10}), "sampling rate 50000 Hz is implausible"),
        (_json_record(360, {"II": [2.0**70, 0.0] * 200}), "samples reach"),
        (_json_record(360, {"II": [0.0, 400.0] * 200}), "swing 200 mV around their baseline"),
        (json.dumps({"fs": 360, "leads": [{"name": None, "samples": [0.1, 0.2] * 200}]}).encode(), "'None'"),
    ],
)
def test_implausible_records_are_422_with_the_reason(sqlite_api, body, reason):
    response = sqlite_api.upload({"r.json": body})
    assert response.status_code == 422, response.text
    assert reason in response.json()["detail"]


def test_a_plausible_json_record_still_uploads(sqlite_api):
    t = np.arange(3600) / 360
    body = _json_record(360, {"II": np.round(np.sin(2 * np.pi * t), 4).tolist()})
    assert sqlite_api.upload({"ok.json": body}).status_code == 201


def test_a_read_whose_audit_event_cannot_be_written_is_refused(tmp_path, wfdb_record, caplog):
    for api in make_api(tmp_path, "", max_upload_mb=1):
        rid = api.upload(wfdb_record).json()["data"][0]["id"]
        with api.runtime.engine.begin() as conn:  # the audit table becomes unwritable under the running app
            conn.execute(text("ALTER TABLE audit_events RENAME TO audit_events_moved"))
        response = api.client.get(f"/api/v1/records/{rid}/signal", headers=api.auth("clinician"))
        assert response.status_code == 503
        assert "audit" in response.json()["detail"] and "values" not in response.text  # no samples served
        assert any("could not append event record.signal" in r.getMessage() for r in caplog.records)
        with api.runtime.engine.begin() as conn:
            conn.execute(text("ALTER TABLE audit_events_moved RENAME TO audit_events"))
        assert api.client.get(f"/api/v1/records/{rid}/signal", headers=api.auth("clinician")).status_code == 200
