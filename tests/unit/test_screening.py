"""`ecglens.screen`: every window of a whole recording, in batched calls, with any classifier's window and rate."""

from __future__ import annotations

import numpy as np
import pytest

import ecglens
from ecglens import Ecg, RecordError
from ecglens.screening import Screening


class SpikeDetector:
    """A small real classifier: 'ectopy' is the share of a 3-mV spike's height reached in the window, on MLII at
    100 Hz over 10-s windows; it counts its calls, so batching is observable."""

    class_names = ("normal", "ectopy")
    sampling_rate = 100.0
    lead_names = ("MLII",)
    window_s = 10.0
    multilabel = True
    thresholds = {"normal": 0.5, "ectopy": 0.5}

    def __init__(self) -> None:
        self.calls: list[int] = []

    def predict_proba(self, batch: np.ndarray) -> np.ndarray:
        assert batch.shape[1:] == (1, 1000), batch.shape
        self.calls.append(batch.shape[0])
        peak = np.clip(np.abs(batch).max(axis=(1, 2)) / 3.0, 0.0, 1.0)
        return np.stack([1.0 - peak, peak], axis=1)


class ArgmaxSpikes(SpikeDetector):
    multilabel = False
    thresholds: dict[str, float] = {}


def _record(seconds: float, spikes_s: list[float], fs: float = 250.0) -> Ecg:
    t = np.arange(int(seconds * fs)) / fs
    x = 0.2 * np.sin(2 * np.pi * 1.2 * t)
    for s in spikes_s:  # 40 ms wide, so resampling to 100 Hz keeps its height
        x[int(s * fs) : int(s * fs) + int(0.04 * fs)] = 3.0
    return Ecg(signal=x[None].astype(np.float32), fs=fs, leads=("II",), name="spiky")


def test_a_whole_recording_is_screened_window_by_window_at_the_classifiers_rate_and_lead():
    clf = SpikeDetector()
    result = ecglens.screen(_record(60.0, [35.0]), clf, batch_size=4)
    assert isinstance(result, Screening)
    assert result.classes == ("normal", "ectopy") and result.window_s == 10.0
    np.testing.assert_allclose(result.starts_s, [0, 10, 20, 30, 40, 50])
    assert result.probabilities.shape == (6, 2)
    assert clf.calls == [4, 2] and result.queries == 6  # batched: two calls for six windows
    assert result.present[:, 1].tolist() == [False, False, False, True, False, False]
    assert result.burden == {"normal": pytest.approx(5 / 6), "ectopy": pytest.approx(1 / 6)}
    assert result.findings() == ["ectopy"] and result.peak("ectopy")[0] == 30.0
    assert result.windows_to_explain() == [("ectopy", 30.0)]


def test_the_last_window_is_aligned_to_the_records_end_and_short_records_are_padded():
    result = ecglens.screen(_record(65.0, [62.0]), SpikeDetector())
    np.testing.assert_allclose(result.starts_s, [0, 10, 20, 30, 40, 50, 55])
    assert result.present[:, 1].tolist() == [False] * 6 + [True]
    short = ecglens.screen(_record(4.0, [2.0]), SpikeDetector())
    assert short.n_windows == 1 and short.present[0, 1]


def test_no_finding_anywhere_still_names_one_window_to_explain():
    result = ecglens.screen(_record(30.0, []), SpikeDetector())
    assert result.findings() == [] and result.burden["ectopy"] == 0.0
    ((label, start),) = result.windows_to_explain()
    assert label == "normal" and start in (0.0, 10.0, 20.0)


def test_mutually_exclusive_classes_are_present_where_they_are_the_most_probable():
    result = ecglens.screen(_record(40.0, [5.0, 25.0]), ArgmaxSpikes())
    assert result.present.sum(axis=1).tolist() == [1, 1, 1, 1]
    assert result.burden == {"normal": 0.5, "ectopy": 0.5}
    assert [s for _, s in result.windows_to_explain()] == [0.0]  # earliest most probable window


def test_several_findings_are_explained_each_at_its_most_probable_window():
    class TwoFindings(SpikeDetector):
        class_names = ("normal", "ectopy", "tall")
        thresholds = {"normal": 0.5, "ectopy": 0.5, "tall": 0.5}

        def predict_proba(self, batch):
            peak = np.abs(batch).max(axis=(1, 2))
            return np.stack(
                [
                    np.where(peak < 1, 0.9, 0.1),
                    np.clip((peak - 1.0) / 2.0, 0, 1),
                    np.where((peak > 1.2) & (peak < 2.0), 0.8, 0.0),
                ],
                axis=1,
            )

    ecg = _record(50.0, [15.0])
    ecg.signal[0, int(42 * 250) : int(42 * 250) + 10] = 1.5
    result = ecglens.screen(ecg, TwoFindings())
    assert result.findings() == ["ectopy", "tall"]  # equal burden: the higher peak probability first
    assert result.windows_to_explain() == [("ectopy", 10.0), ("tall", 40.0)]
    as_json = result.to_dict()
    assert as_json["findings"] == ["ectopy", "tall"] and len(as_json["probabilities"]) == 5


def test_a_record_without_the_classifiers_lead_is_a_record_error_naming_it():
    ecg = _record(20.0, []).replace(leads=("V1",))
    with pytest.raises(RecordError, match="MLII"):
        ecglens.screen(ecg, SpikeDetector())


def test_a_30_minute_two_lead_record_with_the_builtin_model():
    from shared_data import shared_path

    folder = shared_path("mitdb")
    ecg = ecglens.read_record(folder / "208.hea")
    clf = ecglens.load_classifier("builtin")
    result = ecglens.screen(ecg, clf)
    assert result.n_windows == 181 and result.queries == 181
    assert result.starts_s[-1] == pytest.approx(ecg.duration_s - clf.window_s, abs=1 / clf.sampling_rate)
    # record 208 holds 992 PVCs: ventricular ectopy is found in most of its windows
    assert "ventricular ectopy" in result.findings() and result.burden["ventricular ectopy"] > 0.5


def test_the_screen_command_prints_burden_windows_and_the_readers_warnings(tmp_path, capsys):
    import wfdb

    from ecglens.cli import main

    x = _record(30.0, [12.0], fs=360.0).signal[0]
    wfdb.wrsamp(
        "holter",
        fs=360,
        units=["mV", "mV"],
        sig_name=["MLII", "V1"],
        p_signal=np.stack([x, 0.5 * x], 1),
        fmt=["16", "16"],
        write_dir=str(tmp_path),
    )
    header = (tmp_path / "holter.hea").read_text().splitlines()
    header[1] = " ".join(header[1].split()[:6] + ["0"] + header[1].split()[7:])  # the CinC placeholder checksum
    (tmp_path / "holter.hea").write_text("\n".join(header) + "\n")
    assert main(["screen", str(tmp_path / "holter.hea")]) == 0
    out, err = capsys.readouterr()
    assert "holter: 3 windows of 10 s over 30.0 s (builtin)" in out and "burden" in out
    assert "windows to explain:" in out
    assert err.startswith("warning: signal MLII (holter.dat): the header's checksum is 0")
    assert main(["screen", str(tmp_path / "holter.hea"), "--strict"]) == 2
    assert "checksum mismatch" in capsys.readouterr().err
