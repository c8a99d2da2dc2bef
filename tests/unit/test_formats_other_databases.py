"""Records shaped like other databases' files (written with wfdb, then the header text edited as those databases
write it): readable faults are warnings, ``strict=True`` refuses them; reference annotations are read."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.io

from ecglens.errors import RecordError
from ecglens.formats import read_annotations, read_record


def _beats(n: int, fs: float, leads: int = 1) -> np.ndarray:
    """[samples, leads] in mV: a spike train at 75 bpm on a small sine, different per lead."""
    t = np.arange(n) / fs
    x = 0.05 * np.sin(2 * np.pi * 0.3 * t)
    spikes = np.exp(-((((t % 0.8) - 0.4) / 0.012) ** 2))
    return np.stack([x + (1.0 - 0.3 * i) * spikes for i in range(leads)], axis=1)


def _write(folder: Path, name: str, signal: np.ndarray, fs: float, leads: list[str]) -> dict[str, bytes]:
    import wfdb

    wfdb.wrsamp(
        name,
        fs=fs,
        units=["mV"] * len(leads),
        sig_name=leads,
        p_signal=signal,
        fmt=["16"] * len(leads),
        write_dir=str(folder),
    )
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.stem == name}


def _edit(files: dict[str, bytes], name: str, edit) -> dict[str, bytes]:
    lines = files[name].decode().splitlines()
    files = dict(files)
    files[name] = ("\n".join(edit(lines)) + "\n").encode()
    return files


def _signal_field(line: str, index: int, value: str) -> str:
    fields = line.split()
    fields[index] = value
    return " ".join(fields)


@pytest.fixture
def cinc2017(tmp_path):
    """A CinC 2017-style single-lead "ECG" record at 300 Hz: checksum 0 and an ISO date on the record line."""
    files = _write(tmp_path, "A00001", _beats(3000, 300.0), 300.0, ["ECG"])
    return _edit(
        files, "A00001.hea", lambda lines: [lines[0] + " 2014-04-15 05:05:05", _signal_field(lines[1], 6, "0")]
    )


def test_placeholder_checksum_and_iso_date_read_with_a_warning(cinc2017):
    ecg = read_record(cinc2017)
    assert ecg.leads == ("ECG",) and ecg.fs == 300.0 and ecg.n_samples == 3000
    assert ecg.metadata["date"] == "2014-04-15" and ecg.metadata["time"] == "05:05:05"
    (warning,) = ecg.metadata["warnings"]
    assert "checksum is 0" in warning and "ECG" in warning and "A00001.dat" in warning


def test_strict_reading_refuses_the_placeholder_checksum(cinc2017):
    with pytest.raises(RecordError, match="checksum mismatch"):
        read_record(cinc2017, strict=True)


def test_a_clean_record_has_no_warnings(tmp_path):
    ecg = read_record(_write(tmp_path, "clean", _beats(2000, 200.0, 2), 200.0, ["I", "II"]), strict=True)
    assert "warnings" not in ecg.metadata and ecg.leads == ("I", "II")


def test_a_real_checksum_mismatch_is_a_warning_naming_both_sums(tmp_path):
    files = _write(tmp_path, "hol", _beats(2000, 200.0, 2), 200.0, ["I", "II"])
    files = _edit(files, "hol.hea", lambda lines: [lines[0], _signal_field(lines[1], 6, "1234"), lines[2]])
    ecg = read_record(files)
    (warning,) = ecg.metadata["warnings"]
    assert "signal I" in warning and "header 1234" in warning and "another record" in warning


def test_unknown_date_spelling_is_a_warning_and_kept_as_written(tmp_path):
    files = _write(tmp_path, "odd", _beats(1000, 250.0), 250.0, ["II"])
    files = _edit(files, "odd.hea", lambda lines: [lines[0] + " 10:00:00 Tuesday", *lines[1:]])
    ecg = read_record(files)
    assert ecg.metadata["time"] == "10:00:00" and "date" not in ecg.metadata
    assert ecg.metadata["raw_datetime"] == "10:00:00 Tuesday"
    assert any("'Tuesday'" in w for w in ecg.metadata["warnings"])
    with pytest.raises(RecordError, match="Tuesday"):
        read_record(files, strict=True)


def test_an_iso_date_time_in_one_token_is_read(tmp_path):
    files = _write(tmp_path, "iso", _beats(1000, 250.0), 250.0, ["II"])
    files = _edit(files, "iso.hea", lambda lines: [lines[0] + " 2019-12-25T12:30:05", *lines[1:]])
    ecg = read_record(files, strict=True)
    assert ecg.metadata["date"] == "2019-12-25" and ecg.metadata["time"] == "12:30:05"


def test_signal_lines_without_initial_value_read_with_a_warning_and_channel_names(tmp_path):
    files = _write(tmp_path, "short", _beats(2000, 200.0, 2), 200.0, ["I", "II"])
    # file, format, gain, ADC resolution, ADC zero: the initial value, checksum, block size and name are gone
    files = _edit(files, "short.hea", lambda lines: [lines[0], *(" ".join(ln.split()[:5]) for ln in lines[1:])])
    ecg = read_record(files)
    assert ecg.leads == ("ch1", "ch2")  # not "None": the lines name no lead
    assert len(ecg.metadata["warnings"]) == 2 and "initial value" in ecg.metadata["warnings"][0]
    np.testing.assert_allclose(ecg.signal[0], _beats(2000, 200.0, 2)[:, 0], atol=1e-3)
    with pytest.raises(RecordError, match="initial value"):
        read_record(files, strict=True)


def _mat_record(
    folder: Path, name: str, signal: np.ndarray, fs: float, leads: list[str], date: str = ""
) -> dict[str, bytes]:
    """A CinC 2017 / 2021-style pair: ``val`` (int16 [leads, samples]) in a MATLAB v4 .mat, format 16+24."""
    digital = np.round(signal.T * 1000).astype(np.int16)
    scipy.io.savemat(str(folder / f"{name}.mat"), {"val": digital}, format="4")
    lines = [f"{name} {len(leads)} {fs:g} {signal.shape[0]}{date}"]
    for i, lead in enumerate(leads):
        lines.append(f"{name}.mat 16+24 1000/mV 16 0 {int(digital[i, 0])} 0 0 {lead}")
    (folder / f"{name}.hea").write_text("\n".join(lines) + "\n")
    return {f"{name}.hea": (folder / f"{name}.hea").read_bytes(), f"{name}.mat": (folder / f"{name}.mat").read_bytes()}


def test_mat_pair_single_lead_reads(tmp_path):
    x = _beats(9000, 300.0)
    files = _mat_record(tmp_path, "A00011", x, 300.0, ["ECG"], " 05:05:05 2014-04-15")
    ecg = read_record(files)
    assert ecg.leads == ("ECG",) and ecg.n_samples == 9000 and ecg.metadata["date"] == "2014-04-15"
    np.testing.assert_allclose(ecg.signal[0], x[:, 0], atol=1e-3)
    assert "checksum is 0" in ecg.metadata["warnings"][0]


def test_mat_pair_twelve_leads_reads_every_lead(tmp_path):
    names = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]
    x = _beats(5000, 500.0, 12) * np.linspace(1, 0.2, 12)
    ecg = read_record(_mat_record(tmp_path, "E00001", x, 500.0, names))
    assert ecg.leads == tuple(names)
    np.testing.assert_allclose(ecg.signal, x.T, atol=1e-3)


# ------------------------------------------------------------------------------------------------- annotations
def _write_annotations(
    folder: Path,
    name: str,
    samples: list[int],
    symbols: list[str],
    aux: list[str] | None = None,
    extension: str = "atr",
) -> bytes:
    import wfdb

    wfdb.wrann(name, extension, np.array(samples), symbol=symbols, aux_note=aux, write_dir=str(folder))
    return (folder / f"{name}.{extension}").read_bytes()


def test_annotations_give_beats_with_aami_classes_and_rhythm_episodes(tmp_path):
    data = _write_annotations(
        tmp_path, "rec", [10, 100, 300, 500, 700, 900], ["+", "N", "V", "+", "A", "N"], ["(N", "", "", "(AFIB", "", ""]
    )
    ann = read_annotations(data, "rec.atr", fs=100.0, duration_s=12.0)
    assert [(b["time_s"], b["symbol"], b["aami"]) for b in ann.beats] == [
        (1.0, "N", "N"),
        (3.0, "V", "V"),
        (7.0, "A", "S"),
        (9.0, "N", "N"),
    ]
    assert ann.rhythms == [
        {"start_s": 0.1, "end_s": 5.0, "label": "N", "name": "normal sinus rhythm"},
        {"start_s": 5.0, "end_s": 12.0, "label": "AFIB", "name": "atrial fibrillation"},
    ]
    assert ann.beat_counts() == {"N": 2, "V": 1, "S": 1} and ann.warnings == []
    assert [b["symbol"] for b in ann.beats_between(2.0, 8.0)] == ["V", "A"]


def test_annotations_past_the_record_end_are_a_warning(tmp_path):
    data = _write_annotations(tmp_path, "rec", [100, 5000], ["N", "N"], extension="qrs")
    ann = read_annotations(data, "rec.qrs", fs=100.0, duration_s=10.0)
    assert ann.annotator == "qrs" and "1 annotation after the record's end" in ann.warnings[0]


@pytest.mark.parametrize("data", [b"not annotations at all!", b"", b"\x00\x00"])
def test_bytes_that_are_not_annotations_are_refused(data):
    with pytest.raises(RecordError) as err:
        read_annotations(data, "x.atr", fs=360.0)
    assert err.value.filename == "x.atr"
