"""Uploads as other databases ship them: grouped by record name and by header names (picker, drop or zip),
.mat signal files, reference annotations stored and covered by the analysis, reader warnings beside the record,
and the whole record screened by every analysis."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from service_helpers import register_tiny, wfdb_files


def _annotations(folder: Path, name: str, samples: list[int], symbols: list[str], aux=None, ext="atr") -> bytes:
    import wfdb

    wfdb.wrann(name, ext, np.array(samples), symbol=symbols, aux_note=aux, write_dir=str(folder))
    return (folder / f"{name}.{ext}").read_bytes()


def _mat_pair(ecg, name: str, folder: Path) -> dict[str, bytes]:
    """A CinC-style record: int16 ``val`` in a MATLAB v4 .mat, header format 16+24, checksum 0."""
    folder.mkdir(parents=True, exist_ok=True)
    digital = np.round(ecg.signal * 1000).astype(np.int16)
    scipy.io.savemat(str(folder / f"{name}.mat"), {"val": digital}, format="4")
    lines = [f"{name} {ecg.n_leads} {ecg.fs:g} {ecg.n_samples} 2014-04-15 05:05:05"]
    lines += [f"{name}.mat 16+24 1000/mV 16 0 {int(digital[i, 0])} 0 0 {lead}" for i, lead in enumerate(ecg.leads)]
    return {f"{name}.hea": ("\n".join(lines) + "\n").encode(), f"{name}.mat": (folder / f"{name}.mat").read_bytes()}


def test_hea_mat_and_atr_picked_together_are_one_record_with_warnings_and_annotations(
    sqlite_api, synthetic_ecg, tmp_path
):
    api = sqlite_api
    files = _mat_pair(synthetic_ecg, "A00001", tmp_path / "mat")
    files["A00001.atr"] = _annotations(
        tmp_path / "mat", "A00001", [10, 300, 700, 1500, 2000], ["+", "N", "V", "N", "A"], ["(N", "", "", "", ""]
    )
    response = api.upload(files)
    assert response.status_code == 201, response.text
    (record,) = response.json()["data"]
    assert record["name"] == "A00001" and record["leads"] == ["MLII", "V1"]
    roles = {f["filename"]: f["role"] for f in record["files"]}
    assert roles == {"A00001.hea": "header", "A00001.mat": "signal", "A00001.atr": "annotation"}
    atr = next(f for f in record["files"] if f["role"] == "annotation")
    assert atr["annotator"] == "atr" and atr["beats"] == 4 and atr["rhythm_episodes"] == 1
    assert atr["beat_counts"] == {"N": 2, "V": 1, "S": 1}
    assert len(record["warnings"]) == 2 and all("checksum is 0" in w for w in record["warnings"])
    body = api.client.get(f"/api/v1/records/{record['id']}/annotations", headers=api.auth("clinician")).json()
    (ann,) = body["files"]
    assert [(b["time_s"], b["symbol"]) for b in ann["beats"]] == [
        (pytest.approx(300 / 360, abs=1e-4), "N"),
        (pytest.approx(700 / 360, abs=1e-4), "V"),
        (pytest.approx(1500 / 360, abs=1e-4), "N"),
        (pytest.approx(2000 / 360, abs=1e-4), "A"),
    ]
    assert ann["rhythms"][0]["label"] == "N" and ann["rhythms"][0]["end_s"] == pytest.approx(10.0)


def test_a_zip_of_two_records_with_annotations_and_a_csv_is_grouped_by_record(sqlite_api, synthetic_ecg, tmp_path):
    api = sqlite_api
    a = wfdb_files(synthetic_ecg, "rec_a", tmp_path / "a")
    a["rec_a.qrs"] = _annotations(tmp_path / "a", "rec_a", [100, 400], ["N", "N"], ext="qrs")
    b = _mat_pair(synthetic_ecg, "rec_b", tmp_path / "b")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in {**a, **b}.items():
            zf.writestr(f"export/{name}", data)
    csv = "time_s,MLII,V1\n" + "\n".join(
        f"{k / 360:.6f},{x:.4f},{y:.4f}" for k, (x, y) in enumerate(synthetic_ecg.signal[:, :720].T)
    )
    response = api.upload({"batch.zip": buf.getvalue(), "strip.csv": csv.encode()})
    assert response.status_code == 201, response.text
    records = {r["name"]: r for r in response.json()["data"]}
    assert set(records) == {"rec_a", "rec_b", "strip"}
    assert {f["filename"]: f["role"] for f in records["rec_a"]["files"]} == {
        "rec_a.hea": "header",
        "rec_a.dat": "signal",
        "rec_a.qrs": "annotation",
    }
    assert [f["role"] for f in records["strip"]["files"]] == ["record"]


def test_a_header_takes_the_signal_file_it_names_whatever_its_name(sqlite_api, synthetic_ecg, tmp_path):
    api = sqlite_api
    files = wfdb_files(synthetic_ecg, "rec", tmp_path / "w")
    header = files.pop("rec.hea").decode().replace("rec.dat", "signals_2020.dat")
    files = {"rec.hea": header.encode(), "signals_2020.dat": files["rec.dat"]}
    response = api.upload(files)
    assert response.status_code == 201, response.text
    assert {f["role"] for f in response.json()["data"][0]["files"]} == {"header", "signal"}


@pytest.mark.parametrize(
    "extra, reason",
    [
        ({"notes.atr": b"not annotations"}, "notes.atr"),
        ({"rec.atr": b"garbage that is not a WFDB annotation file"}, "rec.atr: not a WFDB annotation file"),
        ({"other.dat": b"\x00" * 100}, "other.dat: not part of record rec"),
    ],
)
def test_files_that_belong_to_no_record_or_are_not_annotations_are_refused_by_name(
    sqlite_api, synthetic_ecg, tmp_path, extra, reason
):
    api = sqlite_api
    files = {**wfdb_files(synthetic_ecg, "rec", tmp_path / "w"), **extra}
    response = api.upload(files)
    assert response.status_code == 422
    assert reason in response.json()["detail"]
    assert api.client.get("/api/v1/records", headers=api.auth("clinician")).json()["count"] == 0


def test_annotations_past_the_records_end_are_kept_and_warned_about_beside_the_record(
    sqlite_api, synthetic_ecg, tmp_path
):
    files = wfdb_files(synthetic_ecg, "late", tmp_path / "w")
    files["late.atr"] = _annotations(tmp_path / "w", "late", [100, 360 * 40], ["N", "V"])
    response = sqlite_api.upload(files)
    assert response.status_code == 201, response.text
    (record,) = response.json()["data"]
    assert record["warnings"] == [
        "late.atr: 1 annotation after the record's end (10.0 s): the file may belong to another record"
    ]


def test_a_mat_file_without_its_header_is_refused_naming_the_header(sqlite_api, synthetic_ecg, tmp_path):
    files = _mat_pair(synthetic_ecg, "A00002", tmp_path / "m")
    response = sqlite_api.upload({"A00002.mat": files["A00002.mat"]})
    assert response.status_code == 422 and "A00002.hea" in response.json()["detail"]


def test_the_analysis_screens_the_record_and_says_which_annotated_beats_its_segments_cover(
    sqlite_api, synthetic_ecg, tmp_path, tiny_model
):
    api = sqlite_api
    assert register_tiny(api, tiny_model).status_code == 201
    files = wfdb_files(synthetic_ecg, "ann", tmp_path / "w")
    # a beat label every 0.1 s: whatever segments the search finds, it covers some of them
    samples = list(range(18, 3600, 36))
    files["ann.atr"] = _annotations(
        tmp_path / "w", "ann", samples, ["N" if i % 4 else "V" for i in range(len(samples))]
    )
    record = api.upload(files).json()["data"][0]
    created = api.client.post(
        "/api/v1/analyses",
        headers=api.auth("clinician"),
        json={"record_id": record["id"], "model": "tiny", "query_budget": 40, "seed": 1},
    )
    assert created.status_code == 202, created.text
    done = api.wait(created.json()["id"])
    assert done["status"] == "done", done["error"]
    screening = done["screening"]
    assert screening["classes"] == ["calm", "noisy"] and screening["window_s"] == 2.0
    assert screening["starts_s"] == [0.0, 2.0, 4.0, 6.0, 8.0]
    assert np.array(screening["probabilities"]).shape == (5, 2)
    assert set(screening["burden"]) == {"calm", "noisy"}
    windows = done["windows"]
    assert 1 <= len(windows) <= 3 and windows[0]["start_s"] == done["explanation"]["start_s"]
    assert windows[0]["explanation"] is None  # the first window's explanation is `explanation` itself
    coverage = done["annotations"]
    assert coverage["files"][0]["filename"] == "ann.atr"
    first = coverage["windows"][0]
    segments = done["explanation"]["segments"]
    assert len(first["segments"]) == len(segments) and segments
    for seg, covered in zip(segments, first["segments"]):
        assert all(seg["start_s"] <= b["time_s"] <= seg["end_s"] for b in covered["beats"])
    assert sum(first["beat_counts"].values()) > 0 and "annotated beat" in first["summary"]


def test_an_analysis_of_a_chosen_moment_explains_that_window_and_still_screens(sqlite_api, wfdb_record, tiny_model):
    api = sqlite_api
    assert register_tiny(api, tiny_model).status_code == 201
    record = api.upload(wfdb_record).json()["data"][0]
    created = api.client.post(
        "/api/v1/analyses",
        headers=api.auth("clinician"),
        json={"record_id": record["id"], "model": "tiny", "query_budget": 30, "start_s": 6.0},
    )
    done = api.wait(created.json()["id"])
    assert done["status"] == "done", done["error"]
    assert done["explanation"]["start_s"] == 6.0 and len(done["windows"]) == 1
    assert len(done["screening"]["starts_s"]) == 5 and "annotations" not in done or done["annotations"] is None
    late = api.client.post(
        "/api/v1/analyses",
        headers=api.auth("clinician"),
        json={"record_id": record["id"], "model": "tiny", "start_s": 60.0},
    )
    assert late.status_code == 422 and "past the end" in late.json()["detail"]
