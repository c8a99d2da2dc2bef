"""Record readers on generated files (always run): every format, uploads, round trips, and malformed input."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

import ecglens
from ecglens.errors import RecordError
from ecglens.formats import (
    detect_format,
    read_aecg,
    read_csv,
    read_dicom,
    read_edf,
    read_json,
    read_record,
    read_wfdb,
    write_aecg,
    write_csv,
    write_dicom,
    write_edf,
    write_json,
    write_record,
    write_wfdb,
)

FS = 250.0


def _signal(rng: np.random.Generator, n_leads: int = 2, seconds: float = 4.0, fs: float = FS) -> np.ndarray:
    """[leads, samples] in mV: a 1.2 Hz 'heartbeat' sine per lead plus a little noise, amplitude ~1 mV."""
    t = np.arange(int(seconds * fs)) / fs
    rows = [
        (0.5 + 0.2 * i) * np.sin(2 * np.pi * 1.2 * t + i) + 0.02 * rng.standard_normal(t.size) for i in range(n_leads)
    ]
    return np.stack(rows)


def _wrsamp(
    folder: Path,
    name: str,
    signal_mv: np.ndarray,
    leads: list[str],
    units: list[str] | None = None,
    fs: float = FS,
    comments: list[str] | None = None,
) -> dict[str, bytes]:
    """A WFDB record written by wfdb itself; returns its files as {name: bytes}."""
    import wfdb

    units = units or ["mV"] * len(leads)
    scale = np.array([{"mV": 1.0, "uV": 1000.0, "V": 1e-3}.get(u, 1.0) for u in units])
    wfdb.wrsamp(
        name,
        fs=fs,
        units=units,
        sig_name=leads,
        p_signal=(signal_mv * scale[:, None]).T,
        fmt=["16"] * len(leads),
        comments=comments,
        write_dir=str(folder),
    )
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.stem == name}


# ---------------------------------------------------------------------------------------------------- WFDB
def test_wfdb_record_in_microvolts_is_read_in_millivolts(tmp_path):
    rng = np.random.default_rng(0)
    x = _signal(rng)
    _wrsamp(tmp_path, "uvrec", x, ["lead ii", "v1"], units=["uV", "uV"])
    ecg = read_record(tmp_path / "uvrec.hea")
    assert ecg.signal.dtype == np.float32 and ecg.signal.shape == x.shape
    assert ecg.fs == FS and ecg.leads == ("II", "V1")
    np.testing.assert_allclose(ecg.signal, x, atol=2e-3)
    assert ecg.metadata["original_units"] == {"II": "uV", "V1": "uV"}
    assert ecg.metadata["format"] == "WFDB" and ecg.metadata["record_name"] == "uvrec"


def test_wfdb_upload_mapping_matches_pair_by_record_name_and_ignores_other_files(tmp_path):
    files = _wrsamp(tmp_path, "rec1", _signal(np.random.default_rng(1)), ["I", "II"])
    files["rec1.atr"] = b"\x00\x01"  # annotations travel with records; not needed to read the signal
    ecg = read_record(files)
    assert ecg.leads == ("I", "II") and ecg.metadata["source_files"] == ["rec1.dat", "rec1.hea"]
    # the header as bytes with its signal file beside it
    same = read_record(files["rec1.hea"], "rec1.hea", files={"rec1.dat": files["rec1.dat"]})
    np.testing.assert_array_equal(same.signal, ecg.signal)


def test_wfdb_zip_upload_reads_the_record_inside(tmp_path):
    files = _wrsamp(tmp_path, "zipped", _signal(np.random.default_rng(2)), ["I", "II"])
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(f"export/{name}", data)
        archive.writestr("__MACOSX/export/._zipped.hea", b"junk")
    ecg = read_record(buffer.getvalue(), "upload.zip")
    assert ecg.n_leads == 2 and ecg.n_samples == 1000 and ecg.name == "zipped"


def test_wfdb_mismatched_pair_is_record_error_naming_both_files(tmp_path):
    a = _wrsamp(tmp_path, "rec_a", _signal(np.random.default_rng(3)), ["I", "II"])
    b = _wrsamp(tmp_path, "rec_b", _signal(np.random.default_rng(4)), ["I", "II"])
    with pytest.raises(RecordError) as err:
        read_record({"rec_a.hea": a["rec_a.hea"], "rec_b.dat": b["rec_b.dat"]})
    assert err.value.filename == "rec_a.hea"
    assert "rec_a.dat" in str(err.value) and "rec_b.dat" in str(err.value)


def test_wfdb_signal_file_from_another_record_fails_the_checksum(tmp_path):
    a = _wrsamp(tmp_path, "rec_a", _signal(np.random.default_rng(5)), ["I", "II"])
    b = _wrsamp(tmp_path, "rec_b", _signal(np.random.default_rng(6)), ["I", "II"])
    swapped = {"rec_a.hea": a["rec_a.hea"], "rec_a.dat": b["rec_b.dat"]}
    with pytest.raises(RecordError, match="checksum mismatch"):
        read_record(swapped, strict=True)
    warnings = read_record(swapped).metadata["warnings"]
    assert len(warnings) == 2 and all("checksum mismatch" in w for w in warnings)


def test_wfdb_truncated_signal_file_is_record_error(tmp_path):
    files = _wrsamp(tmp_path, "short", _signal(np.random.default_rng(7)), ["I", "II"])
    files["short.dat"] = files["short.dat"][:1000]
    with pytest.raises(RecordError) as err:
        read_record(files)
    assert err.value.filename == "short.hea"


def test_wfdb_nonstandard_header_date_is_parsed_and_kept(tmp_path):
    files = _wrsamp(tmp_path, "A00011", _signal(np.random.default_rng(8), n_leads=1, fs=300.0), ["I"], fs=300.0)
    header = files["A00011.hea"].decode().splitlines()
    assert header[0].split()[:4] == ["A00011", "1", "300", "1200"]
    header[0] = "A00011 1 300 1200 2014-04-15 03:04:41"
    files["A00011.hea"] = ("\n".join(header) + "\n").encode()
    ecg = read_record(files)
    assert ecg.fs == 300.0 and ecg.n_samples == 1200
    assert ecg.metadata["date"] == "2014-04-15" and ecg.metadata["time"] == "03:04:41"
    assert ecg.metadata["raw_datetime"] == "2014-04-15 03:04:41"


def test_wfdb_standard_header_date_is_iso_in_metadata(tmp_path):
    files = _wrsamp(tmp_path, "dated", _signal(np.random.default_rng(9), n_leads=1), ["II"])
    header = files["dated.hea"].decode().splitlines()
    header[0] += " 12:30:05 25/12/2019"
    files["dated.hea"] = ("\n".join(header) + "\n").encode()
    ecg = read_record(files)
    assert (ecg.metadata["date"], ecg.metadata["time"]) == ("2019-12-25", "12:30:05")


def test_wfdb_header_comments_become_age_sex_and_dx(tmp_path):
    files = _wrsamp(
        tmp_path,
        "cinc",
        _signal(np.random.default_rng(10)),
        ["I", "II"],
        comments=["Age: 61", "Sex: Female", "Dx: 164889003,59118001", "Rx: Unknown"],
    )
    meta = read_record(files).metadata
    assert meta["age"] == 61 and meta["sex"] == "F" and meta["dx"] == ["164889003", "59118001"]
    assert "Rx: Unknown" in meta["comments"] and meta["header_fields"]["Rx"] == "Unknown"


def test_wfdb_multifrequency_record_is_resampled_to_the_highest_rate(tmp_path):
    import wfdb

    n = 1000
    t_slow = np.arange(n) / FS
    t_fast = np.arange(2 * n) / (2 * FS)
    slow, fast = np.sin(2 * np.pi * 3 * t_slow), 0.5 * np.sin(2 * np.pi * 7 * t_fast)
    wfdb.wrsamp(
        "multi",
        fs=FS,
        units=["mV", "mV"],
        sig_name=["I", "II"],
        e_p_signal=[slow, fast],
        samps_per_frame=[1, 2],
        fmt=["16", "16"],
        write_dir=str(tmp_path),
    )
    ecg = read_record(tmp_path / "multi.hea")
    assert ecg.fs == 2 * FS and ecg.signal.shape == (2, 2 * n)
    np.testing.assert_allclose(ecg.signal[1], fast, atol=1e-3)
    inner = slice(100, -100)  # the polyphase filter's edges are not the claim
    np.testing.assert_allclose(ecg.signal[0][inner], np.sin(2 * np.pi * 3 * t_fast)[inner], atol=0.02)
    assert ecg.metadata["resampled_channels"] == {"I": "250 Hz -> 500 Hz"}


def test_wfdb_invalid_samples_are_interpolated_and_counted(tmp_path):
    import wfdb

    digital = np.tile(np.arange(0, 1000, 10, dtype=np.int64), 5)[:, None]
    digital[[10, 11, 12], 0] = -32768  # WFDB's invalid-sample value for format 16
    wfdb.wrsamp(
        "gaps",
        fs=FS,
        units=["mV"],
        sig_name=["II"],
        d_signal=digital,
        fmt=["16"],
        adc_gain=[100.0],
        baseline=[0],
        write_dir=str(tmp_path),
    )
    ecg = read_record(tmp_path / "gaps.hea")
    assert np.isfinite(ecg.signal).all()
    assert ecg.metadata["missing_samples"] == {"II": 3}
    np.testing.assert_allclose(ecg.signal[0, 9:14], [0.9, 1.0, 1.1, 1.2, 1.3], atol=1e-5)


def test_wfdb_lead_that_is_mostly_missing_is_refused(tmp_path):
    import wfdb

    digital = np.full((100, 1), -32768, dtype=np.int64)
    digital[:10, 0] = 5
    wfdb.wrsamp(
        "empty",
        fs=FS,
        units=["mV"],
        sig_name=["II"],
        d_signal=digital,
        fmt=["16"],
        adc_gain=[100.0],
        baseline=[0],
        write_dir=str(tmp_path),
    )
    with pytest.raises(RecordError, match="90 of 100 samples are missing"):
        read_record(tmp_path / "empty.hea")


def test_wfdb_non_voltage_channel_is_dropped_and_listed(tmp_path):
    x = _signal(np.random.default_rng(11))
    x[1] = 80 + 40 * x[1]  # a blood-pressure-like channel
    _wrsamp(tmp_path, "mixed", x, ["II", "ABP"], units=["mV", "mmHg"])
    ecg = read_record(tmp_path / "mixed.hea")
    assert ecg.leads == ("II",) and ecg.metadata["dropped_channels"] == ["ABP (mmHg)"]


def test_wfdb_header_without_its_signal_file_is_record_error(tmp_path):
    files = _wrsamp(tmp_path, "lonely", _signal(np.random.default_rng(12)), ["I", "II"])
    with pytest.raises(RecordError, match="lonely.dat, which is not in the upload"):
        read_record(files["lonely.hea"], "lonely.hea")
    with pytest.raises(RecordError, match="needs its .hea header"):
        read_record(files["lonely.dat"], "lonely.dat")


def test_wfdb_multisegment_record_joins_its_segments(tmp_path):
    x = _signal(np.random.default_rng(15), seconds=8)
    _wrsamp(tmp_path, "seg_1", x[:, :1000], ["I", "II"])
    _wrsamp(tmp_path, "seg_2", x[:, 1000:], ["I", "II"])
    (tmp_path / "joined.hea").write_text("joined/2 2 250 2000\nseg_1 1000\nseg_2 1000\n")
    ecg = read_wfdb(tmp_path / "joined.hea")
    assert ecg.signal.shape == (2, 2000) and ecg.leads == ("I", "II")
    np.testing.assert_allclose(ecg.signal, x, atol=1e-3)
    files = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    del files["seg_2.dat"]
    with pytest.raises(RecordError, match="seg_2.dat, which is not in the upload"):
        read_wfdb(files)


def test_wfdb_signal_file_path_finds_its_header(tmp_path):
    _wrsamp(tmp_path, "bydat", _signal(np.random.default_rng(16)), ["I", "II"])
    assert read_wfdb(tmp_path / "bydat.dat").name == "bydat"
    assert read_record(tmp_path / "bydat").name == "bydat"  # a record name, as wfdb takes it


def test_wfdb_upload_with_two_records_is_refused(tmp_path):
    files = _wrsamp(tmp_path, "one", _signal(np.random.default_rng(13)), ["I", "II"])
    files.update(_wrsamp(tmp_path, "two", _signal(np.random.default_rng(14)), ["I", "II"]))
    with pytest.raises(RecordError, match="2 WFDB records"):
        read_record(files)


@pytest.mark.parametrize(
    "line, reason",
    [
        ("rec x 250 100", "number of signals"),
        ("rec 2 fast 100", "sampling frequency"),
        ("rec 2 25000 100", "implausible"),
        ("rec 2 0 100", "positive"),
        ("rec 99 250 100", "limit 64"),
        ("rec 2 250 100000000", "implausible"),
    ],
)
def test_wfdb_malformed_record_line_is_record_error(line, reason):
    header = f"{line}\nrec.dat 16 200 16 0 0 0 0 I\nrec.dat 16 200 16 0 0 0 0 II\n".encode()
    with pytest.raises(RecordError, match=reason) as err:
        read_record({"rec.hea": header, "rec.dat": b"\x00" * 400})
    assert err.value.filename == "rec.hea"


def test_wfdb_signal_file_name_with_a_path_is_refused():
    header = b"rec 1 250 10\n../../etc/passwd 16 200 16 0 0 0 0 I\n"
    with pytest.raises(RecordError, match="plain file name"):
        read_record({"rec.hea": header})


def test_write_wfdb_round_trip_keeps_signal_leads_and_metadata(synthetic_ecg, tmp_path):
    ecg = synthetic_ecg.replace(metadata={"age": 70, "sex": "M", "dx": ["426783006"]})
    files = write_wfdb(ecg, tmp_path)
    assert sorted(files) == ["synthetic.dat", "synthetic.hea"] and (tmp_path / "synthetic.hea").exists()
    back = read_record(files)
    assert back.leads == ecg.leads and back.fs == ecg.fs
    peak = np.abs(ecg.signal).max()
    np.testing.assert_allclose(back.signal, ecg.signal, atol=peak / 2**15)
    assert (back.metadata["age"], back.metadata["sex"], back.metadata["dx"]) == (70, "M", ["426783006"])


# ----------------------------------------------------------------------------------------------------- EDF
def _edf_bytes(
    tmp_path: Path, channels: list[tuple[str, str, float, np.ndarray]], annotations: list[tuple[float, float, str]] = ()
) -> bytes:
    """An EDF+ file written by pyedflib: channels are (label, dimension, fs, physical samples)."""
    import pyedflib

    path = tmp_path / "gen.edf"
    writer = pyedflib.EdfWriter(str(path), len(channels), file_type=pyedflib.FILETYPE_EDFPLUS)
    writer.setSignalHeaders(
        [
            {
                "label": label,
                "dimension": dim,
                "sample_frequency": fs,
                "physical_min": float(np.floor(x.min())) - 1,
                "physical_max": float(np.ceil(x.max())) + 1,
                "digital_min": -32768,
                "digital_max": 32767,
                "transducer": "",
                "prefilter": "",
            }
            for label, dim, fs, x in channels
        ]
    )
    for onset, duration, text in annotations:
        writer.writeAnnotation(onset, duration, text)
    writer.writeSamples([x for *_, x in channels])
    writer.close()
    return path.read_bytes()


def test_edf_units_labels_and_annotations(tmp_path):
    x = _signal(np.random.default_rng(20), seconds=4)
    data = _edf_bytes(
        tmp_path, [("ECG II", "mV", FS, x[0]), ("EKG V1", "uV", FS, x[1] * 1000)], annotations=[(1.5, 0.0, "PVC")]
    )
    ecg = read_record(data, "upload.edf")
    assert ecg.leads == ("II", "V1") and ecg.fs == FS and ecg.signal.shape == x.shape
    np.testing.assert_allclose(ecg.signal, x, atol=1e-3)
    assert ecg.metadata["original_units"] == {"II": "mV", "V1": "uV"}
    assert {"onset_s": 1.5, "duration_s": 0.0, "text": "PVC"} in ecg.metadata["annotations"]


def test_edf_lower_rate_channel_is_resampled_and_non_voltage_dropped(tmp_path):
    t_fast, t_slow = np.arange(1000) / FS, np.arange(500) / (FS / 2)
    data = _edf_bytes(
        tmp_path,
        [
            ("II", "uV", FS, 800 * np.sin(2 * np.pi * 2 * t_fast)),
            ("V1", "uV", FS / 2, 600 * np.sin(2 * np.pi * 2 * t_slow)),
            ("Temp", "degC", FS / 2, 36 + 0 * t_slow),
        ],
    )
    ecg = read_edf(data, "mixed.edf")
    assert ecg.leads == ("II", "V1") and ecg.fs == FS and ecg.n_samples == 1000
    np.testing.assert_allclose(ecg.signal[1][100:-100], 0.6 * np.sin(2 * np.pi * 2 * t_fast)[100:-100], atol=0.01)
    assert ecg.metadata["dropped_channels"] == ["Temp (degC)"]
    assert ecg.metadata["resampled_channels"] == {"V1": "125 Hz -> 250 Hz"}


def test_edf_latin1_micro_sign_in_header_is_repaired(tmp_path):
    x = _signal(np.random.default_rng(21), n_leads=1)
    data = bytearray(_edf_bytes(tmp_path, [("ECG I", "uV", FS, x[0] * 1000)]))
    n_signals = int(data[252:256])
    at = 256 + n_signals * 96  # first physical-dimension field
    assert data[at : at + 2] == b"uV"
    data[at : at + 2] = b"\xb5V"  # what many devices write, and pyedflib refuses
    ecg = read_edf(bytes(data), "latin1.edf")
    np.testing.assert_allclose(ecg.signal[0], x[0], atol=1e-3)
    assert ecg.metadata["header_repaired"] is True


def test_bdf_24_bit_file_is_read(tmp_path):
    import pyedflib

    x = _signal(np.random.default_rng(22), n_leads=1)[0] * 1000
    path = tmp_path / "rec.bdf"
    writer = pyedflib.EdfWriter(str(path), 1, file_type=pyedflib.FILETYPE_BDFPLUS)
    writer.setSignalHeaders(
        [
            {
                "label": "ECG aVL",
                "dimension": "uV",
                "sample_frequency": FS,
                "physical_min": -2000.0,
                "physical_max": 2000.0,
                "digital_min": -8388608,
                "digital_max": 8388607,
                "transducer": "",
                "prefilter": "",
            }
        ]
    )
    writer.writeSamples([x])
    writer.close()
    ecg = read_record(path.read_bytes(), "upload")  # found by the BDF signature, not the name
    assert ecg.leads == ("aVL",)
    np.testing.assert_allclose(ecg.signal[0], x / 1000, atol=1e-5)


def test_edf_with_only_annotations_is_refused(tmp_path):
    import pyedflib

    path = tmp_path / "ann.edf"
    writer = pyedflib.EdfWriter(str(path), 0, file_type=pyedflib.FILETYPE_EDFPLUS)
    writer.writeAnnotation(0.0, 1.0, "lights off")
    writer.close()
    with pytest.raises(RecordError, match="no signal channels"):
        read_record(path)


def test_write_edf_round_trip(synthetic_ecg):
    back = read_record(write_edf(synthetic_ecg), "export.edf")
    assert back.leads == synthetic_ecg.leads and back.fs == synthetic_ecg.fs
    np.testing.assert_allclose(back.signal, synthetic_ecg.signal, atol=1e-3)


# ----------------------------------------------------------------------------------------------------- CSV
def test_csv_time_column_in_ms_gives_the_sampling_rate():
    text = "time_ms,I,II\n" + "".join(f"{2 * i},{i * 0.01:.3f},{-i * 0.01:.3f}\n" for i in range(50))
    ecg = read_record(text.encode(), "rec.csv")
    assert ecg.fs == pytest.approx(500.0) and ecg.leads == ("I", "II") and ecg.n_samples == 50
    assert ecg.metadata["time_column"] == "time_ms"


def test_csv_time_rounded_to_milliseconds_still_gives_the_rate():
    rows = "".join(f"{i / 360:.3f},{np.sin(i / 10):.4f}\n" for i in range(720))
    assert read_csv(("time,MLII\n" + rows).encode(), "holter.csv").fs == pytest.approx(360.0, rel=1e-3)


def test_csv_unit_suffix_converts_to_millivolts():
    text = "t,II (uV),V1 [V]\n0,1000,0.001\n0.004,-500,0.002\n0.008,250,0.003\n"
    ecg = read_record(text.encode(), "units.csv")
    np.testing.assert_allclose(ecg.signal, [[1.0, -0.5, 0.25], [1.0, 2.0, 3.0]], rtol=1e-6)
    assert ecg.metadata["original_units"] == {"II": "uV", "V1": "V"}


def test_csv_fs_argument_wins_over_time_column_and_is_required_without_one():
    text = b"I;II\n0.1;0.2\n0.3;0.4\n"
    assert read_record(text, "semi.csv", fs=128).fs == 128.0
    with pytest.raises(RecordError, match="no sampling rate"):
        read_record(text, "semi.csv")


def test_csv_tab_separated_with_sample_index_column_and_fs_comment():
    text = b"# fs: 200\nsample\tV1\tV2\n0\t0.1\t0.2\n1\t0.3\t0.4\n"
    ecg = read_record(text, "rec.tsv")
    assert ecg.fs == 200.0 and ecg.leads == ("V1", "V2") and ecg.n_samples == 2


def test_csv_bad_cell_names_line_and_column():
    text = b"time,I,II\n0,0.1,0.2\n0.002,0.3,abc\n"
    with pytest.raises(RecordError, match=r"bad\.csv: line 3, column 'II': 'abc' is not a number"):
        read_record(text, "bad.csv")


def test_csv_short_row_names_its_line():
    text = b"time,I,II\n0,0.1,0.2\n0.002,0.3\n"
    with pytest.raises(RecordError, match="line 3: expected 3 values, got 2"):
        read_record(text, "short.csv")


def test_csv_uneven_time_column_is_refused():
    text = "time,I\n" + "".join(f"{t},{0.1}\n" for t in (0, 0.002, 0.004, 0.02, 0.022))
    with pytest.raises(RecordError, match="not evenly spaced"):
        read_record(text.encode(), "gap.csv")


def test_csv_header_row_is_required():
    with pytest.raises(RecordError, match="line 1: expected a header row of lead names"):
        read_record(b"0.1,0.2\n0.3,0.4\n", "noheader.csv", fs=250)


def test_csv_empty_cells_are_interpolated_and_counted():
    ecg = read_record(b"I,II\n0,1\n,2\n2,\n3,4\n", "holes.csv", fs=100)
    np.testing.assert_allclose(ecg.signal, [[0, 1, 2, 3], [1, 2, 3, 4]])
    assert ecg.metadata["missing_samples"] == {"I": 1, "II": 1}


def test_write_csv_round_trip(synthetic_ecg):
    back = read_record(write_csv(synthetic_ecg), "export.csv")
    assert back.leads == synthetic_ecg.leads and back.fs == pytest.approx(synthetic_ecg.fs)
    np.testing.assert_allclose(back.signal, synthetic_ecg.signal, atol=1e-6)


# ---------------------------------------------------------------------------------------------------- JSON
def test_json_contract_document_is_read_with_units_and_metadata():
    doc = {
        "fs": 500,
        "leads": {"I": [100, 200, 300], "aVR": [-100, 0, 100]},
        "units": "uV",
        "metadata": {"age": 55, "sex": "F", "format": "spoofed"},
    }
    ecg = read_record(json.dumps(doc).encode(), "rec.json")
    np.testing.assert_allclose(ecg.signal, [[0.1, 0.2, 0.3], [-0.1, 0.0, 0.1]], rtol=1e-6)
    assert ecg.fs == 500.0 and ecg.leads == ("I", "aVR")
    assert ecg.metadata["age"] == 55 and ecg.metadata["format"] == "JSON"


def test_json_leads_as_list_of_named_objects_and_files_as_pairs():
    doc = {
        "sampling_rate": 100,
        "leads": [{"name": "V5", "samples": [0, 1]}, {"name": "V6", "samples": [2, 3]}],
        "units": {"V5": "mV", "V6": "uV"},
    }
    ecg = read_record(files=[("rec.json", json.dumps(doc).encode())])
    assert ecg.leads == ("V5", "V6") and ecg.fs == 100.0
    np.testing.assert_allclose(ecg.signal, [[0, 1], [0.002, 0.003]], rtol=1e-6)


def test_json_leads_of_different_lengths_are_refused():
    doc = {"fs": 500, "leads": {"I": [1, 2, 3], "II": [1, 2]}}
    with pytest.raises(RecordError, match=r"different lengths \(I: 3, II: 2\)"):
        read_json(json.dumps(doc).encode(), "uneven.json")


def test_json_null_samples_are_interpolated_but_infinity_is_refused():
    ecg = read_json(b'{"fs": 100, "leads": {"II": [0, null, 2, 3]}}', "nulls.json")
    np.testing.assert_allclose(ecg.signal[0], [0, 1, 2, 3])
    assert ecg.metadata["missing_samples"] == {"II": 1}
    with pytest.raises(RecordError, match="lead II: sample 1 is infinite"):
        read_json(b'{"fs": 100, "leads": {"II": [0, Infinity, 2]}}', "inf.json")


def test_json_syntax_error_names_line_and_column():
    with pytest.raises(RecordError, match=r"broken\.json: line 2, column \d+: invalid JSON"):
        read_record(b'{"fs": 100,\n "leads": {"I": [1, 2,]}}', "broken.json")


def test_json_string_sample_is_refused():
    with pytest.raises(RecordError, match="lead 'I': '1' is not a number"):
        read_json(b'{"fs": 100, "leads": {"I": ["1", 2]}}', "str.json")


def test_write_json_round_trip(synthetic_ecg):
    back = read_record(write_json(synthetic_ecg), "export.json")
    assert back.leads == synthetic_ecg.leads and back.fs == synthetic_ecg.fs and back.name == "synthetic"
    np.testing.assert_allclose(back.signal, synthetic_ecg.signal, atol=1e-6)


# --------------------------------------------------------------------------------------------------- DICOM
def _twelve_lead(rng: np.random.Generator, seconds: float = 2.0, fs: float = 500.0) -> ecglens.Ecg:
    return ecglens.Ecg(
        signal=_signal(rng, 12, seconds, fs),
        fs=fs,
        leads=ecglens.ecg.STANDARD_12,
        name="twelve",
        metadata={"sex": "F", "date": "2021-03-04", "time": "10:11:12"},
    )


def test_dicom_round_trip_keeps_leads_rate_and_amplitude(tmp_path):
    ecg = _twelve_lead(np.random.default_rng(30))
    data = write_dicom(ecg, tmp_path / "ecg.dcm")
    back = read_record(tmp_path / "ecg.dcm")
    assert back.leads == ecg.leads and back.fs == 500.0 and back.signal.shape == ecg.signal.shape
    step = np.abs(ecg.signal).max(axis=1, keepdims=True) / 32000  # the writer's per-lead resolution
    assert (np.abs(back.signal - ecg.signal) <= step / 2 + 1e-6).all()
    assert back.metadata["sex"] == "F" and back.metadata["date"] == "2021-03-04"
    assert back.metadata["original_units"]["V6"] == "uV"
    assert read_record(data, "upload.bin").leads == ecg.leads  # found by its DICM preamble


def test_dicom_sensitivity_correction_baseline_and_scp_codes_are_applied():
    import pydicom

    ecg = _twelve_lead(np.random.default_rng(31), seconds=0.1)
    ds = pydicom.dcmread(io.BytesIO(write_dicom(ecg)))
    group = ds.WaveformSequence[0]
    raw = np.frombuffer(group.WaveformData, dtype="<i2").reshape(-1, 12)
    channel = group.ChannelDefinitionSequence[3]  # aVR
    channel.ChannelSensitivity = "0.0005"  # small enough to stay a plausible ECG (within 50 mV)
    channel.ChannelSensitivityCorrectionFactor = "2"
    channel.ChannelBaseline = "0.25"
    channel.ChannelSensitivityUnitsSequence[0].CodeValue = "mV"
    source = channel.ChannelSourceSequence[0]
    source.CodeValue, source.CodingSchemeDesignator, source.CodeMeaning = "5.6.3-9-62", "SCPECG", "Lead aVR"
    buffer = io.BytesIO()
    ds.save_as(buffer)
    back = read_dicom(buffer.getvalue(), "edited.dcm")
    assert back.leads[3] == "aVR"
    np.testing.assert_allclose(back.signal[3], raw[:, 3] * 0.0005 * 2 + 0.25, rtol=1e-5)


def test_dicom_without_waveform_is_refused():
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.file_meta.MediaStorageSOPInstanceUID = "1.2.3"
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = "1.2.840.10008.5.1.4.1.1.7", "1.2.3", "OT"
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    with pytest.raises(RecordError, match="no waveform"):
        read_record(buffer.getvalue(), "image.dcm")


# ---------------------------------------------------------------------------------------------------- aECG
_AECG = """<?xml version="1.0" encoding="UTF-8"?>
<AnnotatedECG xmlns="urn:hl7-org:v3" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <effectiveTime><low value="20020509101500"/></effectiveTime>
  <component><series>
    <code code="RHYTHM" codeSystem="2.16.840.1.113883.5.4"/>
    <component><sequenceSet>
      <component><sequence>
        <code code="TIME_RELATIVE" codeSystem="2.16.840.1.113883.5.4"/>
        <value xsi:type="GLIST_PQ"><head value="0" unit="s"/><increment value="4" unit="ms"/></value>
      </sequence></component>
      <component><sequence>
        <code code="MDC_ECG_LEAD_II" codeSystem="2.16.840.1.113883.6.24"/>
        <value xsi:type="SLIST_PQ"><origin value="0.1" unit="mV"/><scale value="5" unit="uV"/>
          <digits>0 100 200 -100</digits></value>
      </sequence></component>
      <component><sequence>
        <code code="MDC_ECG_LEAD_AVF" codeSystem="2.16.840.1.113883.6.24"/>
        <value xsi:type="SLIST_PQ"><origin value="0" unit="uV"/><scale value="2.5" unit="uV"/>
          <digits>400 400 0 0</digits></value>
      </sequence></component>
    </sequenceSet></component>
    <derivation><derivedSeries><component><sequenceSet>
      <component><sequence><code code="TIME_RELATIVE"/><value><increment value="1" unit="ms"/></value>
      </sequence></component>
      <component><sequence><code code="MDC_ECG_LEAD_I"/><value><digits>1 2</digits></value></sequence></component>
    </sequenceSet></component></derivedSeries></derivation>
  </series></component>
  <componentOf><timepointEvent><componentOf><subjectAssignment><subject><trialSubject>
    <subjectDemographicPerson><administrativeGenderCode code="M"/></subjectDemographicPerson>
  </trialSubject></subject></subjectAssignment></componentOf></timepointEvent></componentOf>
</AnnotatedECG>
"""


def test_aecg_rhythm_sequences_give_origin_plus_scale_times_digits():
    ecg = read_record(_AECG.encode(), "study.xml")
    assert ecg.fs == 250.0 and ecg.leads == ("II", "aVF")
    np.testing.assert_allclose(ecg.signal, [[0.1, 0.6, 1.1, -0.4], [1.0, 1.0, 0.0, 0.0]], rtol=1e-6)
    assert ecg.metadata["series"] == "rhythm" and ecg.metadata["sex"] == "M"
    assert (ecg.metadata["date"], ecg.metadata["time"]) == ("2002-05-09", "10:15:00")


def test_write_aecg_round_trip(synthetic_ecg):
    back = read_record(write_aecg(synthetic_ecg), "export.xml")
    assert back.leads == synthetic_ecg.leads and back.fs == pytest.approx(synthetic_ecg.fs)
    np.testing.assert_allclose(back.signal, synthetic_ecg.signal, atol=0.0005 + 1e-6)


def test_aecg_entity_declarations_are_refused():
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;">]>'
        b"<AnnotatedECG>&lol2;</AnnotatedECG>"
    )
    with pytest.raises(RecordError, match="DOCTYPE or entities"):
        read_aecg(bomb, "bomb.xml")


def test_aecg_without_time_sequence_is_refused():
    text = _AECG.replace("TIME_RELATIVE", "SOMETHING_ELSE")
    with pytest.raises(RecordError, match="sampling interval is unknown"):
        read_aecg(text.encode(), "notime.xml")


def test_aecg_leads_of_different_lengths_are_refused():
    text = _AECG.replace("<digits>400 400 0 0</digits>", "<digits>400 400 0</digits>")
    with pytest.raises(RecordError, match="different lengths"):
        read_aecg(text.encode(), "uneven.xml")


# ------------------------------------------------------------------------------------------------ dispatch
def test_unrecognised_file_names_the_supported_formats():
    with pytest.raises(RecordError) as err:
        read_record(b"\x89PNG\r\n\x1a\n" + bytes(100), "photo.png")
    message = str(err.value)
    assert message.startswith("photo.png: unrecognised file format")
    for name in ("WFDB", "EDF", "CSV", "JSON", "DICOM", "HL7 aECG"):
        assert name in message


def test_format_is_detected_by_content_when_the_extension_says_nothing(tmp_path, synthetic_ecg):
    assert detect_format(write_edf(synthetic_ecg), "upload.bin") == "edf"
    assert detect_format(write_json(synthetic_ecg), None) == "json"
    assert detect_format(write_aecg(synthetic_ecg), "x") == "aecg"
    assert detect_format(write_csv(synthetic_ecg), "x") == "csv"
    assert detect_format(write_wfdb(synthetic_ecg)["synthetic.hea"], "x") == "wfdb"
    assert read_record(write_json(synthetic_ecg)).n_leads == 2


def test_format_argument_accepts_aliases_and_rejects_unknown_names(synthetic_ecg):
    data = write_aecg(synthetic_ecg)
    assert read_record(data, "file.dat", format="HL7").n_leads == 2
    with pytest.raises(RecordError, match="unknown format 'scp'"):
        read_record(data, "file.dat", format="scp")


def test_missing_path_and_directory_are_record_errors(tmp_path):
    with pytest.raises(RecordError, match="no such file"):
        read_record(tmp_path / "absent.csv")
    with pytest.raises(RecordError, match="is a directory"):
        read_record(tmp_path)


def test_package_read_record_delegates_to_formats(synthetic_ecg):
    ecg = ecglens.read_record(write_csv(synthetic_ecg), "x.csv")
    assert isinstance(ecg, ecglens.Ecg) and ecg.leads == synthetic_ecg.leads


def test_write_record_exports_every_format_readably(synthetic_ecg):
    for fmt in ("wfdb", "csv", "json", "edf", "dicom", "aecg"):
        files = write_record(synthetic_ecg, fmt)
        back = read_record(files)
        assert back.leads == synthetic_ecg.leads and back.n_samples == synthetic_ecg.n_samples, fmt
    with pytest.raises(ValueError, match="unknown export format"):
        write_record(synthetic_ecg, "pdf")


def test_zip_with_two_non_wfdb_files_is_refused(synthetic_ecg):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("a.csv", write_csv(synthetic_ecg))
        archive.writestr("b.json", write_json(synthetic_ecg))
    with pytest.raises(RecordError, match="2 files .* but no WFDB header"):
        read_record(buffer.getvalue(), "two.zip")


def test_zip_member_in_an_unreadable_compression_method_is_refused_by_name(synthetic_ecg):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr("rec.json", write_json(synthetic_ecg))
    data = bytearray(buffer.getvalue())
    central = data.find(b"PK\x01\x02")
    for at in (8, central + 10):  # the method field of the local header and of the central directory entry
        data[at : at + 2] = (9).to_bytes(2, "little")  # Deflate64, which zipfile cannot decompress
    with pytest.raises(RecordError, match="rec.json.*compression method 9.*stored, deflate, bzip2, lzma"):
        read_record(bytes(data), "deflate64.zip")


def test_zip_with_one_record_file_reads_it(synthetic_ecg):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("inner/rec.json", write_json(synthetic_ecg))
    assert read_record(buffer.getvalue(), "one.zip").leads == synthetic_ecg.leads


# -------------------------------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    "doc, reason",
    [
        ({"fs": 25_000, "leads": {"I": [0, 1]}}, "implausible"),
        ({"fs": 0, "leads": {"I": [0, 1]}}, "positive"),
        ({"fs": -5, "leads": {"I": [0, 1]}}, "positive"),
        ({"fs": "fast", "leads": {"I": [0, 1]}}, "not a number"),
        ({"fs": True, "leads": {"I": [0, 1]}}, "positive"),
        ({"fs": 100, "leads": {"I": []}}, "no samples"),
        ({"fs": 100, "leads": {}}, "'leads' is empty"),
        ({"fs": 100, "leads": {f"ch{i}": [0.0] for i in range(65)}}, "limit 64"),
        ({"fs": 0.001, "leads": {"I": [0.0] * 200}}, "duration 55.6 h is implausible"),
        ({"fs": 100, "leads": {"I": [0, 1]}, "units": "furlong"}, "unknown units 'furlong'"),
        ({"fs": 100, "leads": {"I": [1e300, 1]}, "units": "V"}, "too large for float32"),
        ({"fs": 100, "leads": {"I": [None, None]}}, "every sample is missing"),
        ({"fs": 100}, "missing 'leads'"),
        ([1, 2, 3], "expected a JSON object"),
    ],
)
def test_implausible_records_are_refused_with_a_reason(doc, reason):
    with pytest.raises(RecordError, match=reason) as err:
        read_record(json.dumps(doc).encode(), "bad.json")
    assert err.value.filename == "bad.json"
