"""The clinician's reading over REST: a record's clinical basics and patient fields (by role), an analysis's
plain-language ``summary``, and the FHIR Observation's ``subject``, narrative and notes saying the same."""

from __future__ import annotations

import numpy as np
import pytest
from service_helpers import register_tiny

COMMENTS = ["Age: 77", "Sex: Female", "Dx: 427084000,999999999", "Patient ID: PT-0042"]


def _wfdb(ecg, folder, comments) -> dict[str, bytes]:
    import wfdb

    folder.mkdir(parents=True, exist_ok=True)
    wfdb.wrsamp(
        "pt",
        fs=ecg.fs,
        units=["mV"] * ecg.n_leads,
        sig_name=list(ecg.leads),
        p_signal=ecg.signal.T.astype(np.float64),
        fmt=["16"] * ecg.n_leads,
        adc_gain=[200.0] * ecg.n_leads,
        baseline=[0] * ecg.n_leads,
        write_dir=str(folder),
        comments=comments,
    )
    return {name: (folder / name).read_bytes() for name in ("pt.hea", "pt.dat")}


@pytest.fixture
def record(sqlite_api, synthetic_ecg, tmp_path):
    response = sqlite_api.upload(_wfdb(synthetic_ecg, tmp_path / "pt", COMMENTS))
    assert response.status_code == 201, response.text
    return sqlite_api, response.json()["data"][0]


def test_a_record_read_gives_heart_rate_and_intervals_and_patient_fields_by_role(record):
    api, rec = record
    body = api.client.get(f"/api/v1/records/{rec['id']}", headers=api.auth("clinician")).json()
    assert body["heart_rate_bpm"] == pytest.approx(70, rel=0.06)  # the simulator's 70 bpm
    ms = body["intervals_ms"]
    assert ms["RR"] == pytest.approx(60000 / 70, rel=0.06) and 40 <= ms["QRS"] <= 160 and 250 <= ms["QT"] <= 550
    assert body["basics"]["lead"] == "MLII" and body["basics"]["beats"] >= 10
    assert body["patient"] == {
        "id": "PT-0042",
        "age": 77,
        "sex": "F",
        "diagnoses": [
            {"code": "427084000", "display": "sinus tachycardia", "system": "http://snomed.info/sct"},
            {"code": "999999999", "display": None, "system": "http://snomed.info/sct"},
        ],
    }
    assert api.client.get(f"/api/v1/records/{rec['id']}", headers=api.auth("admin")).json()["patient"]["age"] == 77
    # An auditor reads metadata only: no patient, nothing measured on the samples.
    audited = api.client.get(f"/api/v1/records/{rec['id']}", headers=api.auth("auditor")).json()
    assert audited["patient"] is None and audited["heart_rate_bpm"] is None and audited["intervals_ms"] is None
    # The list never carries them.
    listed = api.client.get("/api/v1/records", headers=api.auth("clinician")).json()["data"][0]
    assert listed["patient"] is None and listed["heart_rate_bpm"] is None


def test_an_analysis_carries_its_account_and_the_fhir_observation_says_the_same(record, tiny_model):
    api, rec = record
    assert register_tiny(api, tiny_model).status_code == 201
    created = api.client.post(
        "/api/v1/analyses",
        headers=api.auth("clinician"),
        json={
            "record_id": rec["id"],
            "model": "tiny",
            "query_budget": 40,
            "seed": 1,
            "distortions": ["gaussian", "baseline_wander"],
        },
    ).json()
    done = api.wait(created["id"])
    assert done["status"] == "done", done["error"]
    summary = done["summary"]
    assert [s["key"] for s in summary["statements"]] == ["diagnosis", "basis", "local_flip", "robustness", "caveat"]
    assert summary["label"] == done["explanation"]["diagnosis"]["label"]
    assert summary["headline"].startswith(summary["label"])
    assert summary["robustness"]["score"] == pytest.approx(done["robustness"]["score"])
    # Auditors get the job's metadata, not its account.
    audited = api.client.get(f"/api/v1/analyses/{done['id']}", headers=api.auth("auditor")).json()
    assert audited["summary"] is None and audited["explanation"] is None

    obs = api.client.get(f"/api/v1/analyses/{done['id']}/fhir", headers=api.auth("clinician")).json()
    assert obs["subject"]["identifier"]["value"] == "PT-0042"
    notes = [n["text"] for n in obs["note"]]
    for statement in summary["statements"]:
        assert f"{statement['title']}: {statement['text']}" in notes
    assert summary["headline"].split(" (")[0] in obs["text"]["div"]
