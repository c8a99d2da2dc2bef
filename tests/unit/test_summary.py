"""The clinician's account of an analysis (`ecglens.reports.summary`), the clinical basics measured on the ECG
(`ecglens.reports.basics`), the header's patient fields (`ecglens.reports.patient`) and the adversarial result's
list of distorted stretches (`ecglens.explanation.noise_spans`)."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from ecglens.explanation import Adversarial, noise_spans
from ecglens.reports.basics import Beat, clinical_basics, delineate, intervals
from ecglens.reports.patient import patient_fields, patient_id
from ecglens.reports.summary import MINUS, covered, flip_text, shown_lead, summarize

LEVELS = [24.0, 18.0, 12.0, 6.0, 0.0, -6.0]
THRESHOLDS = {"normal": 0.654, "ventricular ectopy": 0.471, "supraventricular ectopy": 0.102}


def _result(
    *,
    adv_snr: float | None = 13.8,
    adv_label: str = "supraventricular ectopy",
    flips: tuple = (None, -9.0),
    score: float = 0.98,
) -> dict:
    """A finished multilabel analysis like E07503's: normal, also supraventricular ectopy above threshold."""
    adversarial = (
        None
        if adv_snr is None
        else {
            "snr_db": adv_snr,
            "l2": 2.3,
            "flipped": True,
            "label": adv_label,
            "distorted_s": 0.75,
            "span_snr_db": 2.5,
            "spans": [{"lead": "MLII", "start_s": 0.0, "end_s": 0.75, "noise_rms_mv": 0.11, "snr_db": 2.0}],
        }
    )
    rates = {str(lv): (0.34 if lv == -6.0 and score < 1 else 0.0) for lv in LEVELS}
    return {
        "explanation": {
            "diagnosis": {
                "label": "normal",
                "findings": ["normal", "supraventricular ectopy"],
                "probabilities": {"normal": 0.917, "ventricular ectopy": 0.187, "supraventricular ectopy": 0.138},
            },
            "segments": [
                {"lead": "MLII", "start_s": 7.75, "end_s": 9.25, "score": 1.0, "distortion": "muscle"},
                {"lead": "MLII", "start_s": 2.0, "end_s": 2.5, "score": 0.6, "distortion": "gaussian"},
            ],
            "adversarial": adversarial,
            "queries": 497,
            "start_s": 0.0,
            "fs": 360.0,
            "leads": ["MLII", "V1"],
        },
        "robustness": {
            "label": "normal",
            "score": score,
            "snr_levels_db": LEVELS,
            "distortions": [
                {
                    "distortion": kind,
                    "flip_snr_db": flip,
                    "probability_at_snr": {str(lv): 0.9 for lv in LEVELS},
                    "flip_rate_at_snr": rates,
                }
                for kind, flip in zip(("baseline_wander", "powerline"), flips)
            ],
            "extra": {"window_s": 10.0, "seeds": 3, "flip_rule": "probability of normal below 0.654"},
        },
    }


def _statement(account: dict, key: str) -> str:
    return next(s["text"] for s in account["statements"] if s["key"] == key)


def test_flip_snrs_beyond_the_tested_levels_say_only_which_side_they_lie_on():
    assert flip_text(None, LEVELS)[0] == "holds"
    assert flip_text(-9.0, LEVELS)[0] == f"< {MINUS}6 dB" and "9" not in flip_text(-9.0, LEVELS)[1]
    assert flip_text(31.0, LEVELS)[0] == "> 24 dB"
    assert flip_text(13.75, LEVELS)[0] == "13.8 dB" and flip_text(-6.0, LEVELS)[0] == f"{MINUS}6.0 dB"


def test_the_local_flip_and_the_whole_window_robustness_are_two_statements_with_their_numbers():
    account = summarize(_result(), thresholds=THRESHOLDS)
    local, whole = _statement(account, "local_flip"), _statement(account, "robustness")
    assert "13.8 dB SNR" in local and "2.5 dB inside the noisy stretches" in local and "fragile" in local
    assert "whole 10-s window" in whole and "98%" in whole and "0.98" in whole
    # The powerline flip at -9 dB lies beyond the lowest level: reported as below -6 dB, never as -9.0 dB.
    assert f"{MINUS}9.0" not in whole and "-9.0" not in account["text"]
    assert f"only below the strongest level tested ({MINUS}6 dB)" in whole
    assert [r["short"] for r in account["robustness"]["rows"]] == ["holds", f"< {MINUS}6 dB"]
    # The two tests are named apart in the joined text too.
    assert "Targeted test" in account["text"] and "Untargeted test" in account["text"]


def test_headline_and_flip_agree_on_a_multilabel_diagnosis():
    account = summarize(_result(), thresholds=THRESHOLDS)
    assert account["headline"] == "normal (also reported: supraventricular ectopy)"
    local = _statement(account, "local_flip")
    # Supraventricular ectopy was already reported: the flip drops normal, it does not "change to" it.
    assert "normal is no longer reported; supraventricular ectopy, already reported, remains" in local
    assert "changes to" not in account["text"]
    dx = _statement(account, "diagnosis")
    assert "normal (probability 0.92; reported from 0.65)" in dx
    assert "supraventricular ectopy (probability 0.14; reported from 0.10)" in dx
    # A finding that was not reported before is "reported instead".
    other = _result(adv_label="ventricular ectopy")
    assert "reported instead" in _statement(summarize(other), "local_flip")


def test_a_flip_needing_noise_as_strong_as_the_ecg_means_robust_to_realistic_noise():
    account = summarize(_result(adv_snr=-0.1, flips=(None, None), score=1.0))
    local = _statement(account, "local_flip")
    assert f"{MINUS}0.1 dB SNR" in local and "robust to realistic noise" in local
    assert account["local_flip"]["robust_to_realistic_noise"] is True
    whole = _statement(account, "robustness")
    # Both statements hold at once, and the account says why they do not contradict each other.
    assert "held in 100%" in whole and "although the targeted noise above changes it" in whole


def test_no_flip_within_the_budget_is_said_plainly():
    account = summarize(_result(adv_snr=None))
    assert "No noise the search tried within its query budget (497 classifier queries) changed normal" in _statement(
        account, "local_flip"
    )
    assert account["local_flip"]["flipped"] is False


def test_the_basis_names_leads_as_the_record_does_and_what_each_segment_covers():
    beats = [
        Beat(
            r_s=t,
            qrs_on_s=t - 0.04,
            qrs_off_s=t + 0.05,
            p_on_s=t - 0.2,
            p_off_s=t - 0.1,
            t_off_s=t + 0.35,
            rr_before_s=rr,
            premature=premature,
            wide=wide,
        )
        for t, rr, premature, wide in ((7.3, 0.8, False, False), (8.0, 0.55, True, True), (8.8, 0.8, False, False))
    ]
    account = summarize(_result(), record_leads=["I", "II", "V1"], beats=beats)
    basis = _statement(account, "basis")
    assert "1.50 s of lead II at 7.75" in basis and "MLII" not in basis
    assert "among them a premature, wide-QRS beat at 8.0 s" in basis
    assert account["basis"][0]["lead"] == "II" and account["basis"][0]["model_lead"] == "MLII"
    assert account["local_flip"]["spans"][0]["lead"] == "II"
    assert shown_lead("MLII", ["MLII", "V1"]) == "MLII" and shown_lead("V9", ["II"]) == "V9"
    assert covered(beats, 7.45, 7.6) == "the T wave of the beat at 7.3 s"
    assert covered(beats, 7.75, 7.82) == "the P wave before a premature, wide-QRS beat at 8.0 s"
    assert covered([], 1.0, 2.0) is None


def test_the_account_is_deterministic_and_does_not_change_its_input():
    result = _result()
    before = copy.deepcopy(result)
    assert summarize(result) == summarize(result)
    assert result == before


def test_noise_spans_list_every_distorted_stretch_with_its_snr():
    fs, n = 100.0, 400
    t = np.arange(n) / fs
    clean = np.stack([np.sin(2 * np.pi * t), 0.5 * np.sin(2 * np.pi * t)]).astype(np.float32)
    noise = np.zeros_like(clean)
    noise[0, 50:100] = 0.1  # cells 2 and 3 (0.25 s cells): one stretch
    noise[0, 175:200] = 0.5  # cell 7, apart
    noise[1, 300:325] = 0.2  # lead 2, cell 12
    adv = Adversarial(signal=clean + noise, noise=noise, snr_db=5.0, l2=1.0, flipped=True, label="x")
    bounds = [[i * 0.25, (i + 1) * 0.25] for i in range(16)]
    out = noise_spans(adv, fs, ("II", "V1"), 100.0, bounds)
    assert [(s["lead"], s["start_s"], s["end_s"]) for s in out["spans"]] == [
        ("II", 100.5, 101.0),
        ("II", 101.75, 102.0),
        ("V1", 103.0, 103.25),
    ]
    assert out["distorted_s"] == pytest.approx(1.0)
    first = out["spans"][0]
    centred = clean[0] - clean[0].mean()
    expected = 10 * np.log10(np.sum(centred[50:100] ** 2) / np.sum(noise[0, 50:100] ** 2))
    assert first["snr_db"] == pytest.approx(expected, abs=0.01) and first["noise_rms_mv"] == pytest.approx(0.1)
    # Without a grid, runs of non-zero samples.
    assert len(noise_spans(adv, fs, ("II", "V1"), 0.0)["spans"]) == 3
    silent = Adversarial(signal=clean, noise=np.zeros_like(clean), snr_db=np.inf, l2=0.0, flipped=False, label="x")
    assert noise_spans(silent, fs, ("II", "V1"), 0.0, bounds) == {"spans": [], "distorted_s": 0.0, "span_snr_db": None}


@pytest.fixture(scope="module")
def simulated():
    import neurokit2 as nk

    return nk.ecg_simulate(duration=20, sampling_rate=500, heart_rate=72, method="ecgsyn", random_state=5)


def test_basics_measure_rate_and_intervals_of_a_simulated_ecg(simulated):
    signal = np.stack([simulated * 0.5, simulated]).astype(np.float32)
    basics = clinical_basics(signal, 500.0, ("V1", "II"))
    assert basics["lead"] == "II" and basics["beats"] >= 20
    assert basics["heart_rate_bpm"] == pytest.approx(72, rel=0.05)
    ms = basics["intervals_ms"]
    assert ms["RR"] == pytest.approx(60000 / 72, rel=0.05)
    assert 60 <= ms["PR"] <= 300 and 40 <= ms["QRS"] <= 160 and 250 <= ms["QT"] <= 550
    assert ms["QTc"] == pytest.approx(ms["QT"] / np.sqrt(ms["RR"] / 1000), abs=0.2)
    assert basics["qtc_formula"] == "Bazett"


def test_basics_of_a_flat_or_short_strip_are_not_invented():
    flat = clinical_basics(np.zeros((1, 5000), np.float32), 500.0, ("II",))
    assert flat["heart_rate_bpm"] is None and set(flat["intervals_ms"].values()) == {None}
    assert delineate(np.ones(100), 500.0) == []
    assert intervals([]) == (None, {"RR": None, "PR": None, "QRS": None, "QT": None, "QTc": None})


def test_patient_fields_from_cinc_mitbih_and_free_text_headers():
    cinc = {"age": 77, "sex": "F", "dx": ["253352002", "427084000"], "comments": ["Age: 77", "Sex: Female"]}
    fields = patient_fields(cinc)
    assert (fields["age"], fields["sex"], fields["id"]) == (77, "F", None)
    assert fields["diagnoses"][1] == {
        "code": "427084000",
        "display": "sinus tachycardia",
        "system": "http://snomed.info/sct",
    }
    assert fields["diagnoses"][0]["display"] is None  # an unlisted code stays a code
    mitbih = patient_fields({"comments": ["51 F 1129 654 x2", "Pronestyl"]})
    assert (mitbih["age"], mitbih["sex"]) == (51, "F")
    assert patient_id({"header_fields": {"Patient ID": "PT-7"}}) == "PT-7"
    assert patient_id({"header_fields": {"MRN": "unknown"}}) is None and patient_id(None) is None
    assert patient_fields({"dx": ["Sinus rhythm"]})["diagnoses"] == [
        {"code": "Sinus rhythm", "display": "Sinus rhythm", "system": None}
    ]
