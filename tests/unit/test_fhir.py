"""FHIR R4: the Observation reader and writer (round trips, lead codes, markers, bad input) and the export of a
real analysis as an Observation, checked against the R4 structure rules it must keep."""

from __future__ import annotations

import html
import json
import re

import numpy as np
import pytest

import ecglens
from ecglens.ecg import STANDARD_12, Ecg
from ecglens.errors import RecordError
from ecglens.formats import detect_format, read_fhir, read_record, write_fhir, write_json, write_record
from ecglens.formats.fhir import MDC_SYSTEM, lead_code, lead_from_code
from ecglens.reports.fhir import (
    CLASS_SYSTEM,
    COMPONENT_SYSTEM,
    PATIENT_ID_SYSTEM,
    RECORD_SHA256_SYSTEM,
    SEGMENT_SCORE_URL,
    analysis_observation,
)
from ecglens.robustness import robustness

FS = 500.0
OBSERVATION_STATUSES = {
    "registered",
    "preliminary",
    "final",
    "amended",
    "corrected",
    "cancelled",
    "entered-in-error",
    "unknown",
}
# FHIR R4 dateTime (with a time, a zone is required) and decimal.
DATETIME = re.compile(r"\d{4}(-\d{2}(-\d{2}(T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2}))?)?)?")
VALUE_KEYS = (
    "valueQuantity",
    "valueCodeableConcept",
    "valueString",
    "valueBoolean",
    "valueInteger",
    "valueRange",
    "valueRatio",
    "valueSampledData",
    "valueTime",
    "valueDateTime",
    "valuePeriod",
)


def _ecg(rng: np.random.Generator, leads=STANDARD_12, seconds: float = 2.0, fs: float = FS) -> Ecg:
    t = np.arange(int(seconds * fs)) / fs
    rows = [
        (0.4 + 0.1 * i) * np.sin(2 * np.pi * 1.1 * t + i) + 0.05 * rng.standard_normal(t.size)
        for i in range(len(leads))
    ]
    return Ecg(np.stack(rows).astype(np.float32), fs, leads, metadata={"date": "2023-04-05"}, name="rt")


def _observation(*components, **fields) -> bytes:
    return json.dumps(
        {"resourceType": "Observation", "status": "final", "component": list(components), **fields}
    ).encode()


def _component(code: str | None, data: str, *, period=10, origin=None, factor=None, **extra) -> dict:
    sampled = {
        "origin": origin if origin is not None else {"value": 0, "unit": "mV"},
        "period": period,
        "dimensions": 1,
        "data": data,
        **extra,
    }
    if factor is not None:
        sampled["factor"] = factor
    coding = {"coding": [{"system": MDC_SYSTEM, "code": code}]} if code else {"text": "lead"}
    return {"code": coding, "valueSampledData": sampled}


# --- reader / writer ------------------------------------------------------------------------------------
def test_twelve_lead_round_trip_keeps_leads_rate_and_samples_to_half_a_microvolt():
    ecg = _ecg(np.random.default_rng(0))
    back = read_fhir(write_fhir(ecg), "rt.json")
    assert back.leads == STANDARD_12 and back.fs == FS and back.signal.shape == ecg.signal.shape
    assert np.abs(back.signal - ecg.signal).max() <= 0.5e-3 + 1e-6
    assert back.metadata["format"] == "FHIR" and back.metadata["date"] == "2023-04-05"


def test_round_trip_with_coarser_resolution_is_exact_to_half_a_step():
    ecg = _ecg(np.random.default_rng(1), leads=("II", "V5"))
    back = read_record(write_fhir(ecg, resolution_uv=5.0), "coarse.json")
    assert np.abs(back.signal - ecg.signal).max() <= 2.5e-3 + 1e-6


@pytest.mark.parametrize("fs", [360.0, 128.0, 257.0, 1000.0])
def test_sampling_rates_survive_the_period_in_milliseconds(fs):
    ecg = _ecg(np.random.default_rng(6), leads=("I",), seconds=1.0, fs=fs)
    assert read_fhir(write_fhir(ecg)).fs == fs


def test_a_period_rounded_in_its_last_digits_is_still_the_whole_rate():
    assert read_fhir(_observation(_component("131329", "1 2 3", period=2.77777777778))).fs == 360.0


def test_leads_without_a_code_keep_their_names():
    ecg = _ecg(np.random.default_rng(2), leads=("MLII", "V1", "X"))
    doc = json.loads(write_fhir(ecg))
    assert "coding" not in doc["component"][0]["code"]  # MLII has no MDC / LOINC code: text only
    assert read_fhir(write_fhir(ecg)).leads == ("MLII", "V1", "X")


def test_writer_codes_leads_like_the_fhir_ecg_example():
    doc = json.loads(write_fhir(_ecg(np.random.default_rng(3))))
    lead_i, lead_iii = doc["component"][0]["code"]["coding"], doc["component"][2]["code"]["coding"]
    assert lead_i[0] == {"system": MDC_SYSTEM, "code": "131329", "display": "MDC_ECG_ELEC_POTL_I"}
    assert lead_iii[0]["code"] == "131389"  # MDC lead III is number 61
    assert {"system": "http://loinc.org", "code": "LP7386-8", "display": "Lead I"} in lead_i
    assert doc["component"][0]["valueSampledData"]["period"] == 2.0  # ms at 500 Hz


@pytest.mark.parametrize(
    "coding,lead",
    [
        ({"system": MDC_SYSTEM, "code": "131329"}, "I"),  # MDC_ECG_ELEC_POTL_I
        ({"system": MDC_SYSTEM, "code": "131074"}, "II"),  # MDC_ECG_LEAD_II
        ({"system": MDC_SYSTEM, "code": "131390"}, "aVR"),
        ({"system": MDC_SYSTEM, "code": "131336"}, "V6"),
        ({"system": MDC_SYSTEM, "code": "MDC_ECG_LEAD_AVF"}, "aVF"),
        ({"system": "http://loinc.org", "code": "LP7388-4"}, "III"),
        ({"system": "http://loinc.org", "code": "LP7391-8"}, "V3"),
        ({"display": "MDC_ECG_ELEC_POTL_V2"}, "V2"),
    ],
)
def test_lead_codes_from_mdc_and_loinc(coding, lead):
    assert lead_from_code({"coding": [coding]}) == lead


def test_every_standard_lead_code_reads_back_as_its_lead():
    for lead in STANDARD_12:
        assert lead_from_code(lead_code(lead)) == lead


def test_origin_factor_and_period_as_in_the_specification():
    data = _observation(
        _component(
            "131330", "2041 2043 2039 2050", period=10, origin={"value": 2048, "unit": "uV", "code": "uV"}, factor=1.612
        )
    )
    ecg = read_record(data, "ekg.json")
    assert ecg.fs == 100.0 and ecg.leads == ("II",)
    expected = (2048 + 1.612 * np.array([2041, 2043, 2039, 2050])) / 1000.0  # uV -> mV
    np.testing.assert_allclose(ecg.signal[0], expected, rtol=1e-6)


def test_error_marker_is_interpolated_and_limit_markers_take_the_limits():
    data = _observation(_component("131329", "1 2 E 4 U 6 L", lowerLimit=-3, upperLimit=9))
    ecg = read_fhir(data, "markers.json")
    np.testing.assert_allclose(ecg.signal[0], [1, 2, 3, 4, 9, 6, -3])
    assert ecg.metadata["missing_samples"] == {"I": 1} and ecg.metadata["limit_markers"] == {"I": 2}


def test_limit_markers_without_limits_count_as_missing():
    ecg = read_fhir(_observation(_component("131329", "0 U 2 L 4")), "nolimits.json")
    np.testing.assert_allclose(ecg.signal[0], [0, 1, 2, 3, 4])
    assert ecg.metadata["missing_samples"] == {"I": 2}


def test_interleaved_dimensions_become_separate_channels():
    ecg = read_fhir(_observation(_component("131329", "1 10 2 20 3 30", dimensions=2)), "dims.json")
    np.testing.assert_allclose(ecg.signal, [[1, 2, 3], [10, 20, 30]])
    assert ecg.leads == ("I:1", "I:2")


def test_components_without_samples_are_skipped_and_listed():
    heart_rate = {"code": {"text": "heart rate"}, "valueQuantity": {"value": 70, "unit": "/min"}}
    ecg = read_fhir(_observation(_component("131329", "1 2 3"), heart_rate), "hr.json")
    assert ecg.leads == ("I",) and ecg.metadata["skipped_components"] == ["component[1]"]


def test_detection_tells_fhir_from_our_json_records():
    ecg = _ecg(np.random.default_rng(4), leads=("I", "II"))
    assert detect_format(write_fhir(ecg), "upload.json") == "fhir"
    assert detect_format(write_fhir(ecg), None) == "fhir"
    assert detect_format(write_json(ecg), "upload.json") == "json"
    assert list(write_record(ecg, "fhir", name="rec")) == ["rec.fhir.json"]


@pytest.mark.parametrize(
    "body,reason",
    [
        (b'{"resourceType": "Patient", "id": "p1"}', "resourceType 'Patient'"),
        (b'{"resourceType": "Observation", "status": "final"}', "no component"),
        (b'{"resourceType": "Observation", "component": []}', "component is empty"),
        (
            b'{"resourceType": "Observation", "component": [{"code": {"text": "hr"}}]}',
            "no component has valueSampledData",
        ),
        (b'{"resourceType": "Observation", "component": [1]', "invalid JSON"),
        (_observation(_component("131329", "1 2 x 4")), "'x'"),
        (_observation(_component("131329", "1 nan 4")), "'nan' is not a finite decimal"),
        (_observation(_component("131329", "1 2 3", period=0)), "period must be positive"),
        (_observation(_component("131329", "1 2 3", period="fast")), "period must be a number"),
        (_observation(_component("131329", "")), "has no data"),
        (_observation(_component("131329", "1 2 3", dimensions=2)), "not a multiple of dimensions=2"),
        (_observation(_component("131329", "1 2 3", origin={"value": "zero"})), "origin value must be a number"),
        (_observation(_component("131329", "1 2 3", origin={"value": 0, "unit": "mmHg"})), "unknown units 'mmHg'"),
        (_observation(_component("131329", "1 2 3"), _component("131330", "1 2 3", period=4)), "one sampling rate"),
        (_observation(_component("131329", "1 2 3"), _component("131330", "1 2")), "different lengths"),
    ],
)
def test_bad_observations_raise_record_error_naming_file_and_reason(body, reason):
    with pytest.raises(RecordError) as info:
        read_record(body, "bad.json")
    assert str(info.value).startswith("bad.json: ") and reason in str(info.value)


def test_a_json_list_is_not_a_resource():
    with pytest.raises(RecordError, match="list.json: a FHIR resource must be a JSON object"):
        read_fhir(b'[{"resourceType": "Observation"}]', "list.json")


def test_mutated_observations_raise_only_record_error():
    rng = np.random.default_rng(5)
    valid = write_fhir(_ecg(rng, leads=("I", "II"), seconds=0.2))
    for _ in range(150):
        buf = bytearray(valid)
        for _ in range(int(rng.integers(1, 4))):
            i = int(rng.integers(0, len(buf)))
            if rng.random() < 0.5:
                buf[i] = int(rng.choice(list(b'{}[]":,0123456789ELU -.eA')))
            else:
                del buf[i : i + int(rng.integers(1, 40))]
        try:
            ecg = read_fhir(bytes(buf), "mutant.json")
        except RecordError as exc:
            assert str(exc).startswith("mutant.json: ")
        else:
            assert np.isfinite(ecg.signal).all()


# --- export of an analysis ------------------------------------------------------------------------------
class SmoothClassifier:
    """p("sinus rhythm") from the share of lead II's power between 0.5 and 20 Hz: noise lowers it and flips the
    diagnosis to "artefact" (a real, fixed rule, so the explanation and the robustness curves are genuine)."""

    class_names = ("sinus rhythm", "artefact")
    sampling_rate = 250.0
    lead_names = ("I", "II")
    window_s = 2.0
    multilabel = False
    thresholds = {"sinus rhythm": 0.5, "artefact": 0.5}

    def predict_proba(self, batch: np.ndarray) -> np.ndarray:
        x = np.asarray(batch, dtype=np.float64)[:, 1]
        x = x - x.mean(axis=1, keepdims=True)
        power = np.abs(np.fft.rfft(x, axis=1)) ** 2
        f = np.fft.rfftfreq(x.shape[1], 1.0 / self.sampling_rate)
        share = power[:, (f >= 0.5) & (f <= 20)].sum(1) / np.maximum(power[:, f >= 0.5].sum(1), 1e-12)
        p = 1.0 / (1.0 + np.exp(-100.0 * (share - 0.97)))
        return np.stack([p, 1.0 - p], axis=1)


@pytest.fixture(scope="module")
def analysis() -> tuple[Ecg, dict]:
    """A real explain + robustness result on a 4-s simulated 2-lead ECG."""
    import neurokit2 as nk

    a = nk.ecg_simulate(duration=4, sampling_rate=250, heart_rate=72, random_state=7)
    b = nk.ecg_simulate(duration=4, sampling_rate=250, heart_rate=72, random_state=8) * 0.7
    ecg = Ecg(np.stack([a, b]).astype(np.float32), 250.0, ("I", "II"), name="sim")
    clf = SmoothClassifier()
    explanation = ecglens.explain(ecg, clf, query_budget=80, seed=0)
    report = robustness(ecg, clf, seed=0, seeds=2, start_s=explanation.start_s, label=explanation.diagnosis.label)
    return ecg, {"explanation": explanation.to_dict(), "robustness": report.to_dict()}


def assert_valid_observation(obs: dict) -> None:
    """The R4 structure rules an exported Observation must keep (cardinalities, value[x] choice, codings)."""
    json.dumps(obs, allow_nan=False)
    assert obs["resourceType"] == "Observation"
    assert obs["status"] in OBSERVATION_STATUSES
    assert obs["code"]["coding"] and all(c["system"] and c["code"] for c in obs["code"]["coding"])
    for key in ("effectiveDateTime", "issued"):
        if key in obs:
            assert DATETIME.fullmatch(obs[key]), obs[key]
    for ident in obs.get("identifier", []):
        assert ident["system"] and ident["value"]
    assert sum(k in obs for k in VALUE_KEYS) <= 1
    assert obs["component"]
    for component in obs["component"]:
        assert component["code"].get("coding") or component["code"].get("text")
        for coding in component["code"].get("coding", []):
            assert ":" in coding["system"] and coding["code"]  # an absolute URI and a code
        values = [k for k in VALUE_KEYS if k in component]
        # obs-6: dataAbsentReason only when there is no value
        assert len(values) + ("dataAbsentReason" in component) == 1, component
        if "valueQuantity" in component:
            q = component["valueQuantity"]
            assert isinstance(q["value"], (int, float)) and q["system"] == "http://unitsofmeasure.org" and q["code"]
        for ext in component.get("extension", []):
            assert ext["url"] and sum(k.startswith("value") for k in ext) == 1


def test_export_of_a_real_analysis_is_a_valid_observation(analysis):
    _, result = analysis
    files = [{"filename": "sim.hea", "sha256": "a" * 64}, {"filename": "sim.dat", "sha256": "b" * 64}]
    obs = analysis_observation(
        result,
        analysis_id="an1",
        model_name="smooth",
        model_version="3",
        record_files=files,
        issued="2024-05-01T12:00:00.000000Z",
    )
    assert_valid_observation(obs)
    explanation, report = result["explanation"], result["robustness"]
    label = explanation["diagnosis"]["label"]
    assert obs["valueCodeableConcept"]["coding"][0] == {"system": CLASS_SYSTEM, "code": label, "display": label}
    assert obs["interpretation"][0]["text"].startswith(label)
    assert "version 3" in obs["device"]["display"] and obs["device"]["identifier"]["value"] == "smooth"
    hashes = [i["value"] for i in obs["identifier"] if i["system"] == RECORD_SHA256_SYSTEM]
    assert hashes == ["a" * 64, "b" * 64]

    def kind(component):
        return next(c["code"] for c in component["code"]["coding"] if c["system"] == COMPONENT_SYSTEM)

    by_kind: dict[str, list] = {}
    for component in obs["component"]:
        by_kind.setdefault(kind(component), []).append(component)
    probabilities = {c["code"]["coding"][1]["code"]: c["valueQuantity"]["value"] for c in by_kind["class-probability"]}
    assert probabilities == pytest.approx(explanation["diagnosis"]["probabilities"], abs=1e-6)
    assert by_kind["robustness-score"][0]["valueQuantity"]["value"] == pytest.approx(report["score"], abs=1e-6)
    assert len(by_kind["flip-snr"]) == len(report["distortions"])
    segments = by_kind.get("critical-segment", [])
    assert len(segments) == len(explanation["segments"]) > 0
    first, seg = segments[0], explanation["segments"][0]
    assert first["valueRange"]["low"]["value"] == pytest.approx(seg["start_s"])
    assert first["valueRange"]["high"]["value"] == pytest.approx(seg["end_s"])
    assert lead_from_code(first["code"]) == seg["lead"]
    assert next(e for e in first["extension"] if e["url"] == SEGMENT_SCORE_URL)["valueDecimal"] == pytest.approx(
        seg["score"], abs=1e-4
    )


def test_flip_snr_absent_when_the_diagnosis_always_held(analysis):
    _, result = analysis
    held = {
        **result["robustness"],
        "distortions": [{"distortion": "gaussian", "flip_snr_db": None, "probability_at_snr": {"24.0": 0.9}}],
    }
    obs = analysis_observation(
        {**result, "robustness": held},
        analysis_id="an2",
        model_name="m",
        model_version=None,
        record_files=[{"filename": "x", "sha256": "c" * 64}],
    )
    assert_valid_observation(obs)
    flip = [c for c in obs["component"] if c["code"]["coding"][0]["code"] == "flip-snr"]
    assert "valueQuantity" not in flip[0] and flip[0]["dataAbsentReason"]["coding"][0]["code"] == "not-applicable"
    assert "extension" not in obs and obs["device"]["display"] == "classifier m"


def test_export_of_an_unfinished_analysis_is_refused():
    with pytest.raises(ValueError, match="not finished|no explanation"):
        analysis_observation({}, analysis_id="x", model_name="m", model_version=None, record_files=[])


def test_export_carries_the_account_as_narrative_and_notes_and_the_patient_as_subject(analysis):
    from ecglens.reports.summary import summarize

    _, result = analysis
    account = summarize(result)
    obs = analysis_observation(
        result,
        analysis_id="an3",
        model_name="m",
        model_version="1",
        record_files=[{"filename": "x", "sha256": "d" * 64}],
        patient_id="PT-0042",
    )
    assert_valid_observation(obs)
    assert obs["subject"]["identifier"] == {"system": PATIENT_ID_SYSTEM, "value": "PT-0042"}
    assert obs["text"]["status"] == "generated"
    assert obs["text"]["div"].startswith('<div xmlns="http://www.w3.org/1999/xhtml">')
    notes = [n["text"] for n in obs["note"]]
    for statement in account["statements"]:
        assert f"{statement['title']}: {statement['text']}" in notes
    # The narrative says the same, escaped for XHTML.
    assert html.escape(account["statements"][0]["text"]) in obs["text"]["div"]
    # A stored account is used as it is, not rebuilt.
    stored = {**account, "statements": [{"key": "diagnosis", "title": "Diagnosis", "text": "stored <text>"}]}
    obs = analysis_observation(
        {**result, "summary": stored}, analysis_id="an4", model_name="m", model_version=None, record_files=[]
    )
    assert "stored &lt;text&gt;" in obs["text"]["div"] and "subject" not in obs
