"""Hospital formats over REST: a FHIR Observation uploaded as ``application/fhir+json`` goes through the normal
upload pipeline, and a finished analysis comes back as a FHIR Observation and as a one-page PDF report."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess

import numpy as np
import pytest
from service_helpers import register_tiny, wfdb_files

from ecglens.formats import write_fhir

FHIR = {"Content-Type": "application/fhir+json"}


def _post_fhir(api, body: bytes, role: str = "clinician", content_type: str = "application/fhir+json"):
    return api.client.post("/api/v1/records", headers={**api.auth(role), "Content-Type": content_type}, content=body)


def _events(api, action: str) -> list[dict]:
    return api.client.get("/api/v1/audit", params={"action": action}, headers=api.auth("auditor")).json()["data"]


@pytest.fixture
def finished(sqlite_api, synthetic_ecg, tiny_model) -> tuple:
    """A done analysis of the synthetic record uploaded as FHIR: ``(api, record, analysis)``."""
    api = sqlite_api
    assert register_tiny(api, tiny_model).status_code == 201
    record = _post_fhir(api, write_fhir(synthetic_ecg)).json()["data"][0]
    created = api.client.post(
        "/api/v1/analyses",
        headers=api.auth("clinician"),
        json={
            "record_id": record["id"],
            "model": "tiny",
            "query_budget": 40,
            "seed": 1,
            "distortions": ["gaussian", "baseline_wander"],
        },
    ).json()
    done = api.wait(created["id"])
    assert done["status"] == "done", done["error"]
    return api, record, done


def test_fhir_observation_upload_is_a_record_with_its_blob_and_audit(api, synthetic_ecg):
    body = write_fhir(synthetic_ecg)
    response = _post_fhir(api, body)
    assert response.status_code == 201, response.text
    record = response.json()["data"][0]
    assert record["format"] == "FHIR" and record["leads"] == ["MLII", "V1"] and record["fs"] == 360.0
    assert record["n_samples"] == synthetic_ecg.n_samples
    assert record["files"][0]["sha256"] == hashlib.sha256(body).hexdigest()
    assert api.runtime.blobs.get(record["files"][0]["sha256"]) == body
    signal = api.client.get(
        f"/api/v1/records/{record['id']}/signal", params={"leads": "V1", "end_s": 1.0}, headers=api.auth("clinician")
    ).json()
    np.testing.assert_allclose(signal["values"]["V1"], synthetic_ecg.signal[1, :360], atol=1e-3)
    events = _events(api, "record.create")
    assert [(e["object_id"], e["status"]) for e in events] == [(record["id"], 201)]


def test_fhir_upload_with_a_charset_parameter_is_accepted(sqlite_api, synthetic_ecg):
    response = _post_fhir(sqlite_api, write_fhir(synthetic_ecg), content_type="application/fhir+json; charset=utf-8")
    assert response.status_code == 201, response.text


@pytest.mark.parametrize(
    "body,reason",
    [
        (b'{"resourceType": "Patient", "id": "p"}', "resourceType 'Patient'"),
        (
            json.dumps(
                {
                    "resourceType": "Observation",
                    "component": [
                        {
                            "code": {"text": "I"},
                            "valueSampledData": {
                                "origin": {"value": 0, "unit": "mV"},
                                "period": 0,
                                "dimensions": 1,
                                "data": "1 2 3",
                            },
                        }
                    ],
                }
            ).encode(),
            "period must be positive",
        ),
        (
            json.dumps(
                {
                    "resourceType": "Observation",
                    "component": [
                        {
                            "code": {"text": "I"},
                            "valueSampledData": {
                                "origin": {"value": 0, "unit": "mV"},
                                "period": 2,
                                "dimensions": 1,
                                "data": "1 2 oops",
                            },
                        }
                    ],
                }
            ).encode(),
            "'oops'",
        ),
        (b'{"fs": 250, "leads": {"I": [1, 2, 3]}}', "not a FHIR resource"),
        (b'{"resourceType": "Observation", ', "invalid JSON"),
    ],
)
def test_bad_fhir_upload_is_422_with_the_reason_and_stores_nothing(sqlite_api, body, reason):
    api = sqlite_api
    response = _post_fhir(api, body)
    assert response.status_code == 422, response.text
    assert reason in response.json()["detail"]
    assert api.client.get("/api/v1/records", headers=api.auth("clinician")).json()["count"] == 0
    assert not [p for p in api.runtime.settings.blob_dir.rglob("*") if p.is_file()]
    assert [e["status"] for e in _events(api, "record.create")] == [422]


def test_oversized_fhir_upload_is_413(sqlite_api, synthetic_ecg):
    big = write_fhir(synthetic_ecg.replace(signal=np.tile(synthetic_ecg.signal, (1, 40))))
    assert len(big) > 2**20  # the sqlite_api limit is 1 MiB
    response = _post_fhir(sqlite_api, big)
    assert response.status_code == 413


def test_fhir_upload_needs_an_uploader_role(sqlite_api, synthetic_ecg):
    assert _post_fhir(sqlite_api, write_fhir(synthetic_ecg), role="auditor").status_code == 403
    assert sqlite_api.client.post("/api/v1/records", headers=FHIR, content=b"{}").status_code == 401


def _assert_observation(obs: dict) -> None:
    """R4 structure: resourceType, status, code, and components that each carry a code and one value[x] or a
    dataAbsentReason."""
    assert obs["resourceType"] == "Observation"
    assert obs["status"] in ("registered", "preliminary", "final", "amended")
    assert obs["code"]["coding"][0]["system"] and obs["code"]["coding"][0]["code"]
    assert obs["component"]
    for component in obs["component"]:
        assert component["code"]["coding"] or component["code"]["text"]
        values = [k for k in component if k.startswith("value")]
        assert len(values) + ("dataAbsentReason" in component) == 1, component


def test_fhir_export_of_a_finished_analysis(finished):
    api, record, done = finished
    response = api.client.get(f"/api/v1/analyses/{done['id']}/fhir", headers=api.auth("clinician"))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/fhir+json")
    obs = response.json()
    _assert_observation(obs)
    label = done["explanation"]["diagnosis"]["label"]
    assert obs["id"] == done["id"] and obs["valueCodeableConcept"]["text"] == label
    assert obs["issued"] == done["finished_at"]
    assert {"system": "urn:ecglens:fhir:record-sha256", "value": record["files"][0]["sha256"]} == {
        k: v for k, v in obs["identifier"][1].items() if k != "type"
    }
    assert obs["device"]["identifier"]["value"] == "tiny" and "version 1" in obs["device"]["display"]
    kinds = [c["code"]["coding"][0]["code"] for c in obs["component"]]
    assert kinds.count("critical-segment") == len(done["explanation"]["segments"])
    assert kinds.count("flip-snr") == len(done["robustness"]["distortions"]) == 2
    score = next(c for c in obs["component"] if c["code"]["coding"][0]["code"] == "robustness-score")
    assert score["valueQuantity"]["value"] == pytest.approx(done["robustness"]["score"])
    events = _events(api, "analysis.fhir")
    assert [(e["object_id"], e["record_id"], e["status"]) for e in events] == [(done["id"], record["id"], 200)]


@pytest.mark.skipif(
    shutil.which("pdftoppm") is None or shutil.which("pdftotext") is None,
    reason="poppler-utils (pdftoppm, pdftotext) not installed",
)
def test_pdf_report_of_a_finished_analysis_renders_and_is_not_blank(finished, tmp_path):
    from PIL import Image

    api, record, done = finished
    response = api.client.get(f"/api/v1/analyses/{done['id']}/report.pdf", headers=api.auth("clinician"))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/pdf" and response.content.startswith(b"%PDF")
    pdf = tmp_path / "report.pdf"
    pdf.write_bytes(response.content)
    subprocess.run(["pdftoppm", "-r", "50", "-png", str(pdf), str(tmp_path / "page")], check=True, timeout=60)
    pages = sorted(tmp_path.glob("page*.png"))
    assert len(pages) == 1
    image = np.asarray(Image.open(pages[0]).convert("L"))
    assert (image < 200).mean() > 0.05  # grid, two traces, curves and text
    text = subprocess.run(["pdftotext", str(pdf), "-"], check=True, capture_output=True, timeout=60).stdout.decode()
    assert done["explanation"]["diagnosis"]["label"] in text
    assert record["files"][0]["sha256"] in text and "Model tiny, version 1" in text
    assert [e["status"] for e in _events(api, "analysis.report")] == [200]


def test_exports_are_refused_to_auditors_and_unknown_callers(finished):
    api, _, done = finished
    for path in (f"/api/v1/analyses/{done['id']}/fhir", f"/api/v1/analyses/{done['id']}/report.pdf"):
        assert api.client.get(path, headers=api.auth("auditor")).status_code == 403
        assert api.client.get(path).status_code == 401
        assert api.client.get(path, headers=api.auth("admin")).status_code == 200
        assert api.client.get(path.replace(done["id"], "0" * 32), headers=api.auth("admin")).status_code == 404
        # A service key sees only its own analyses.
        assert api.client.get(path, headers=api.auth("service")).status_code == 404


def test_exports_of_a_failed_analysis_are_409_with_the_reason(sqlite_api, synthetic_ecg, tiny_model, tmp_path):
    api = sqlite_api
    assert register_tiny(api, tiny_model).status_code == 201
    v1_only = wfdb_files(synthetic_ecg.select_leads(["V1"]), "v1only", tmp_path / "v1")
    record = api.upload(v1_only).json()["data"][0]
    # POST /analyses refuses this pair up front; a job queued before (or by another route) still fails in words
    from ecglens.service.db import QUEUED, Analysis, new_id, utcnow
    from ecglens.service.jobs import run_analysis

    created = {"id": new_id()}
    with api.runtime.sessions() as session:
        session.add(
            Analysis(
                id=created["id"],
                record_id=record["id"],
                model="tiny",
                distortions=None,
                query_budget=20,
                seed=0,
                start_s=None,
                status=QUEUED,
                progress=0.0,
                queries=0,
                attempts=0,
                created_by=api.key_ids["clinician"],
                created_at=utcnow(),
            )
        )
        session.commit()
    assert run_analysis(created["id"], api.runtime) == "failed"
    failed = api.wait(created["id"])
    assert failed["error"].startswith("v1only: record has no lead 'MLII'") and "Error" not in failed["error"]
    for suffix in ("fhir", "report.pdf"):
        response = api.client.get(f"/api/v1/analyses/{created['id']}/{suffix}", headers=api.auth("clinician"))
        assert response.status_code == 409 and "failed" in response.json()["detail"]
        assert "MLII" in response.json()["detail"]
