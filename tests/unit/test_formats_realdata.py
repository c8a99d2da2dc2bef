"""Record readers on the real PhysioNet files in ../shared/data (skipped where the folder is absent)."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest

from ecglens.ecg import STANDARD_12
from ecglens.errors import RecordError
from ecglens.formats import read_record, write_record
from tests.conftest import shared_path

pytestmark = pytest.mark.realdata

MITDB = [
    100,
    101,
    102,
    103,
    104,
    105,
    106,
    107,
    108,
    109,
    111,
    112,
    113,
    114,
    115,
    116,
    117,
    118,
    119,
    121,
    122,
    123,
    124,
    200,
    201,
    202,
    203,
    205,
    207,
    208,
    209,
    210,
    212,
    213,
    214,
    215,
    217,
    219,
    220,
    221,
    222,
    223,
    228,
    230,
    231,
    232,
    233,
    234,
]
CINC = [f"E075{i:02d}" for i in range(20)] + [f"HR060{i:02d}" for i in range(10)] + [f"JS200{i:02d}" for i in range(20)]


def _median_peak_to_peak(row: np.ndarray, fs: float, window_s: float = 2.0) -> float:
    """Median over 2-s windows of the peak-to-peak amplitude, in the row's units (mV)."""
    n = int(window_s * fs)
    windows = row[: row.size // n * n].reshape(-1, n)
    return float(np.median(np.ptp(windows, axis=1)))


def _plausible_mv(ecg, lead: int = 0) -> None:
    p2p = _median_peak_to_peak(ecg.signal[lead], ecg.fs)
    assert 0.1 < p2p < 10.0, f"{ecg.name} lead {ecg.leads[lead]}: median peak-to-peak {p2p:.3f} mV"


def test_all_48_mitdb_records_read_as_two_lead_360_hz_millivolts():
    folder = shared_path("mitdb")
    for number in MITDB:
        ecg = read_record(folder / f"{number}.hea")
        assert ecg.signal.shape == (2, 650000) and ecg.signal.dtype == np.float32, number
        assert ecg.fs == 360.0 and ecg.duration_s == pytest.approx(1805.56, abs=0.01)
        assert set(ecg.leads) <= {"MLII", "V1", "V2", "V4", "V5"}, (number, ecg.leads)
        _plausible_mv(ecg)
        assert np.isfinite(ecg.signal).all()
    # the familiar first record, through every way in
    assert read_record(folder / "100").leads == ("MLII", "V5")


def test_mitdb_record_uploaded_as_bytes_and_as_zip_reads_the_same():
    folder = shared_path("mitdb")
    files = {name: (folder / name).read_bytes() for name in ("105.hea", "105.dat", "105.atr")}
    from_path = read_record(folder / "105.hea")
    np.testing.assert_array_equal(read_record(files).signal, from_path.signal)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(f"mitdb/{name}", data)
    np.testing.assert_array_equal(read_record(buffer.getvalue(), "105.zip").signal, from_path.signal)


def test_mitdb_header_with_another_records_signal_file_is_a_warning_refused_when_strict():
    folder = shared_path("mitdb")
    swapped = {"100.hea": (folder / "100.hea").read_bytes(), "100.dat": (folder / "101.dat").read_bytes()}
    with pytest.raises(RecordError, match="checksum mismatch"):
        read_record(swapped, strict=True)
    assert any("checksum mismatch" in w for w in read_record(swapped).metadata["warnings"])


def test_nstdb_records_read_with_noise_channels():
    folder = shared_path("nstdb")
    stressed = read_record(folder / "118e00.hea")
    assert stressed.leads == ("MLII", "V1") and stressed.fs == 360.0 and stressed.n_samples == 650000
    _plausible_mv(stressed)
    for name in ("bw", "ma"):
        noise = read_record(folder / f"{name}.hea")
        assert noise.leads == ("noise1", "noise2") and noise.signal.shape == (2, 650000)
        assert 0.05 < _median_peak_to_peak(noise.signal[0], noise.fs) < 5.0


def test_all_50_cinc2021_records_read_as_12_lead_500_hz_with_dx_codes():
    folder = shared_path("cinc2021")
    for name in CINC:
        ecg = read_record(folder / f"{name}.hea")
        assert ecg.leads == STANDARD_12 and ecg.fs == 500.0 and ecg.signal.shape == (12, 5000), name
        assert ecg.metadata["dx"] and all(code.isdigit() for code in ecg.metadata["dx"]), name
        assert ecg.metadata["sex"] in ("M", "F") and isinstance(ecg.metadata.get("age"), (int, type(None)))
        _plausible_mv(ecg, lead=1)
        assert np.isfinite(ecg.signal).all()


def test_cinc2021_first_record_metadata():
    ecg = read_record(shared_path("cinc2021", "E07500.hea"))
    meta = ecg.metadata
    assert (meta["age"], meta["sex"], meta["dx"]) == (78, "M", ["67741000119109", "426177001"])
    assert meta["source_files"] == ["E07500.hea", "E07500.mat"] and meta["format"] == "WFDB"


def test_ptbdb_record_reads_15_leads_at_1000_hz_from_two_signal_files():
    ecg = read_record(shared_path("ptbdb", "s0010_re.hea"))
    assert ecg.leads == STANDARD_12 + ("X", "Y", "Z") and ecg.fs == 1000.0 and ecg.signal.shape == (15, 38400)
    assert ecg.metadata["source_files"] == ["s0010_re.dat", "s0010_re.hea", "s0010_re.xyz"]
    assert ecg.metadata["age"] == 81 and ecg.metadata["sex"] == "F" and ecg.metadata["date"] == "1990-10-01"
    assert ecg.metadata["header_fields"]["Reason for admission"] == "Myocardial infarction"
    _plausible_mv(ecg, lead=1)


def test_ptbdb_upload_without_the_xyz_file_names_it():
    folder = shared_path("ptbdb")
    files = {n: (folder / n).read_bytes() for n in ("s0010_re.hea", "s0010_re.dat")}
    with pytest.raises(RecordError, match="s0010_re.xyz, which is not in the upload"):
        read_record(files)


def test_misc_test01_reads_four_channels_with_comment_fields():
    ecg = read_record(shared_path("misc", "test01_00s.hea"))
    assert ecg.leads == ("ECG 1", "ECG 2", "ECG 3", "ECG 4") and ecg.fs == 500.0 and ecg.n_samples == 4000
    assert ecg.metadata["age"] == 25 and ecg.metadata["sex"] == "M" and ecg.metadata["dx"] == []
    _plausible_mv(ecg)


def test_edf_generator_file_reads_voltage_channels_in_millivolts():
    ecg = read_record(shared_path("edf", "test_generator_2.edf"))
    assert ecg.fs == 200.0 and ecg.n_samples == 120000 and "ECG" in ecg.leads
    # the generator's test sines swing +-100 uV: 0.2 mV peak to peak after conversion from uV
    sine = ecg.signal[ecg.lead_index("sine 1 Hz")]
    assert float(np.ptp(sine)) == pytest.approx(0.2, rel=0.01)
    assert float(np.abs(ecg.signal).max()) <= 1.0 + 1e-6  # the file's physical range is +-1000 uV
    assert ecg.metadata["original_units"]["ECG"] == "uV"
    assert len(ecg.metadata["dropped_channels"]) == 2 and ecg.metadata["header_repaired"] is True
    assert ecg.metadata["date"] == "2009-12-10"


def test_edf_annotation_only_file_is_refused_with_its_annotation_count():
    with pytest.raises(
        RecordError,
        match=r"test_edfann\.edf: no signal channels \(the file holds only \d+ "
        r"annotations\)",
    ):
        read_record(shared_path("edf", "test_edfann.edf"))


@pytest.mark.parametrize("fmt", ["wfdb", "edf", "csv", "json", "dicom", "aecg"])
def test_real_12_lead_record_survives_export_and_reimport(fmt):
    ecg = read_record(shared_path("cinc2021", "JS20000.hea"))
    back = read_record(write_record(ecg, fmt))
    assert back.leads == ecg.leads and back.fs == ecg.fs and back.signal.shape == ecg.signal.shape
    # every writer keeps 16 bits or better per lead: well under 0.01 mV on a ~1 mV signal
    assert float(np.abs(back.signal - ecg.signal).max()) < 0.01
