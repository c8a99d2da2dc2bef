"""Every endpoint x every role: 401 without a key, 403 for a role not allowed, neither for a role allowed."""

from __future__ import annotations

import pytest

# The contract (README "Roles"), written out here rather than imported, so a change in deps.py must be a
# change here too.
ALL = {"clinician", "auditor", "admin", "service"}
MATRIX = [
    ("POST", "/api/v1/records", {"clinician", "admin", "service"}),
    ("GET", "/api/v1/records", ALL),
    ("GET", "/api/v1/records/{record_id}", ALL),
    ("GET", "/api/v1/records/{record_id}/signal", {"clinician", "admin", "service"}),
    ("GET", "/api/v1/records/{record_id}/annotations", {"clinician", "admin", "service"}),
    ("GET", "/api/v1/records/{record_id}/models", ALL),
    ("DELETE", "/api/v1/records/{record_id}", {"admin"}),
    ("POST", "/api/v1/analyses", {"clinician", "admin", "service"}),
    ("GET", "/api/v1/analyses", ALL),
    ("GET", "/api/v1/analyses/{analysis_id}", ALL),
    ("GET", "/api/v1/analyses/{analysis_id}/events", {"clinician", "admin", "service"}),
    ("GET", "/api/v1/analyses/{analysis_id}/fhir", {"clinician", "admin", "service"}),
    ("GET", "/api/v1/analyses/{analysis_id}/report.pdf", {"clinician", "admin", "service"}),
    ("GET", "/api/v1/distortions", ALL),
    ("GET", "/api/v1/models", ALL),
    ("POST", "/api/v1/models", {"admin"}),
    ("POST", "/api/v1/models/{name}/harden", {"admin"}),
    ("GET", "/api/v1/hardening-jobs/{job_id}", {"admin"}),
    ("GET", "/api/v1/audit", {"auditor", "admin"}),
    ("GET", "/api/v1/audit/verify", {"auditor", "admin"}),
    ("POST", "/api/v1/keys", {"admin"}),
    ("GET", "/api/v1/keys", {"admin"}),
    ("GET", "/api/v1/keys/me", ALL),
    ("DELETE", "/api/v1/keys/{key_id}", {"admin"}),
    ("GET", "/metrics", {"admin", "service"}),
    ("GET", "/api/v1/metrics", {"admin", "service"}),
]
OPEN = {("GET", "/healthz"), ("GET", "/api/v1/healthz")}


def _call(api, method: str, template: str, headers: dict[str, str]):
    path = template.format(record_id="0" * 32, analysis_id="0" * 32, key_id="0" * 16, name="builtin", job_id="0" * 32)
    if method == "POST" and path.endswith(("/records", "/models")):
        return api.client.post(path, headers=headers, files={"unused": ("", b"")}, data={"x": "1"})
    if method == "POST":  # an invalid body: an allowed role gets 422 and nothing is created
        return api.client.post(path, headers=headers, json={"role": "nobody"})
    return api.client.request(method, path, headers=headers)


def test_matrix_covers_every_route(sqlite_api):
    paths = sqlite_api.client.get("/openapi.json").json()["paths"]
    routes = {(m.upper(), p) for p, ops in paths.items() for m in ops}
    assert routes == {(m, p) for m, p, _ in MATRIX} | OPEN


@pytest.mark.parametrize("method,template,allowed", MATRIX, ids=[f"{m} {p}" for m, p, _ in MATRIX])
def test_role_matrix(sqlite_api, method, template, allowed):
    api = sqlite_api
    assert _call(api, method, template, {}).status_code == 401
    assert _call(api, method, template, {"Authorization": "Bearer ecgl_0000000000000000_wrong"}).status_code == 401
    for role in sorted(ALL):
        status = _call(api, method, template, api.auth(role)).status_code
        if role in allowed:
            assert status not in (401, 403) and status < 500, f"{role}: {status}"
        else:
            assert status == 403, f"{role}: {status}"


def test_refused_requests_are_audited_with_their_status(sqlite_api):
    api = sqlite_api
    api.client.delete("/api/v1/records/" + "0" * 32, headers=api.auth("clinician"))
    api.client.get("/api/v1/records/" + "0" * 32)
    events = api.client.get("/api/v1/audit", params={"action": "record.delete"}, headers=api.auth("admin")).json()
    assert [(e["role"], e["status"]) for e in events["data"]] == [("clinician", 403)]
    reads = api.client.get("/api/v1/audit", params={"action": "record.read"}, headers=api.auth("admin")).json()
    assert [(e["actor_key_id"], e["status"]) for e in reads["data"]] == [(None, 401)]
