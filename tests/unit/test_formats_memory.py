"""Format-16 WFDB records are decoded without wfdb's int64 / float64 copies: the values are wfdb's (to float32
precision), invalid samples and checksums are handled alike, and reading costs about the float32 result."""

from __future__ import annotations

import sys
import tracemalloc

import numpy as np
import pytest
import wfdb

from ecglens.formats import read_record
from ecglens.formats import wfdb as wfdb_format

LEADS = ["I", "II", "V1"]


def _record(tmp_path, n=5000, invalid_at=None, checksum_shift=0, fmt="16"):
    rng = np.random.default_rng(0)
    digital = (rng.standard_normal((n, len(LEADS))) * 300).astype(np.int16)
    if invalid_at is not None:
        digital[invalid_at, 1] = -32768
    wfdb.wrsamp(
        "rec",
        fs=500,
        units=["mV", "uV", "mV"],
        sig_name=LEADS,
        d_signal=digital.astype(np.int64),
        fmt=[fmt] * len(LEADS),
        adc_gain=[200.0, 0.25, 1000.0 / 3],
        baseline=[10, -5, 0],
        write_dir=str(tmp_path),
    )
    header = (tmp_path / "rec.hea").read_text()
    if checksum_shift:
        lines = header.splitlines()
        parts = lines[1].split()
        parts[6] = str((int(parts[6]) + checksum_shift) % 65536)
        lines[1] = " ".join(parts)
        header = "\n".join(lines) + "\n"
    dat = (tmp_path / "rec.dat").read_bytes()
    return {"rec.hea": header.encode(), "rec.dat": dat}, tmp_path / "rec"


def _read(files, **kwargs):
    return read_record(files["rec.hea"], filename="rec.hea", files=files, **kwargs)


def test_format16_values_match_wfdb(tmp_path):
    files, path = _record(tmp_path)
    ecg = _read(files)
    want = wfdb.rdrecord(str(path), physical=True, return_res=64).p_signal.T
    want = want * np.array([1.0, 1e-3, 1.0])[:, None]  # uV -> mV
    assert ecg.signal.dtype == np.float32 and ecg.signal.shape == want.shape
    np.testing.assert_allclose(ecg.signal, want, rtol=1e-6, atol=1e-7)


def test_format16_invalid_samples_are_filled_and_counted(tmp_path):
    files, _ = _record(tmp_path, invalid_at=100)
    ecg = _read(files)
    lead = ecg.leads[1]
    assert ecg.metadata["missing_samples"] == {lead: 1}
    assert np.isfinite(ecg.signal).all()


def test_format16_checksum_mismatch_is_a_warning_or_with_strict_a_refusal(tmp_path):
    from ecglens.errors import RecordError

    files, _ = _record(tmp_path, checksum_shift=7)
    ecg = _read(files)
    assert any("checksum mismatch" in w for w in ecg.metadata["warnings"])
    with pytest.raises(RecordError, match="checksum mismatch"):
        wfdb_format.read_wfdb_files(files, strict=True)


def test_other_formats_still_go_through_wfdb(tmp_path, monkeypatch):
    files, path = _record(tmp_path, fmt="212")
    calls = []
    real = wfdb_format._read_single
    monkeypatch.setattr(wfdb_format, "_read_single", lambda *a, **k: calls.append(1) or real(*a, **k))
    ecg = _read(files)
    assert calls and ecg.signal.shape == (3, 5000)


def test_reading_a_format16_record_costs_about_its_float32_result(tmp_path):
    files, _ = _record(tmp_path, n=500_000)
    size = len(files["rec.dat"])  # 3 MB; the float32 result is 2x that (wfdb's decoding peaked at ~8x)
    _read(files)  # imports and caches warm
    tracemalloc.start()
    try:
        ecg = _read(files)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert ecg.signal.nbytes == 2 * size
    overhead = peak - ecg.signal.nbytes  # a channel's masks, the header's parsing
    assert overhead < 0.15 * size + 2**20, f"peak {peak / size:.2f}x the file"


def test_reading_an_edf_record_reads_one_channel_at_a_time(tmp_path):
    n_ch, fs = 6, 250
    data = _edf_file(tmp_path, n_ch=n_ch, fs=fs, seconds=600).read_bytes()
    tracemalloc.start()
    try:
        ecg = read_record(data, filename="r.edf")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert ecg.signal.shape == (n_ch, fs * 600)
    assert peak < 4.0 * len(data), f"peak {peak / len(data):.2f}x the file (every channel in float64 first: ~9x)"


def _mapped(path):
    import mmap

    with open(path, "rb") as fh:
        return mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)


# Resident memory comes from /proc/self/status.
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")


def _status_mb(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


def test_format16_read_from_a_map_in_blocks_matches_the_bytes(tmp_path, monkeypatch):
    # Blocks of 1,000 frames: the invalid sample, the checksums and every channel cross block ends.
    monkeypatch.setattr(wfdb_format, "CHUNK_BYTES", 1000 * 2 * len(LEADS))
    files, path = _record(tmp_path, n=7777, invalid_at=3999)
    want = _read(files)
    got = _read({**files, "rec.dat": _mapped(path.with_suffix(".dat"))})
    np.testing.assert_array_equal(got.signal, want.signal)
    assert got.metadata["missing_samples"] == want.metadata["missing_samples"]
    assert "warnings" not in got.metadata  # checksums summed block by block agree with the header's


@linux_only
def test_format16_read_from_a_map_keeps_its_pages_out_of_memory(tmp_path):
    """The map's pages are released block by block as they are read, so the file is never resident whole beside
    the float32 result (a bytes copy, or a map read without releasing, keeps all of it)."""
    files, path = _record(tmp_path, n=2_000_000)  # 12 MB of samples, a 24 MB result
    size = len(files["rec.dat"])
    del files["rec.dat"]
    _read({**files, "rec.dat": _mapped(path.with_suffix(".dat"))})  # imports and caches warm
    data = _mapped(path.with_suffix(".dat"))
    before = _status_mb("RssFile")
    ecg = _read({**files, "rec.dat": data})
    resident = (_status_mb("RssFile") - before) * 2**20
    assert ecg.signal.nbytes == 2 * size
    assert resident < 0.25 * size, f"{resident / size:.2f} of the file is still resident"


def _edf_file(tmp_path, n_ch=6, fs=250, seconds=600, micro_sign=False):
    pyedflib = pytest.importorskip("pyedflib")
    path = tmp_path / "r.edf"
    writer = pyedflib.EdfWriter(str(path), n_ch, file_type=pyedflib.FILETYPE_EDFPLUS)
    writer.setSignalHeaders(
        [
            {
                "label": f"V{i + 1}",
                "dimension": "uV",
                "sample_frequency": fs,
                "physical_max": 10000,
                "physical_min": -10000,
                "digital_max": 32767,
                "digital_min": -32768,
            }
            for i in range(n_ch)
        ]
    )
    rng = np.random.default_rng(0)
    writer.writeSamples([rng.standard_normal(fs * seconds) * 500 for _ in range(n_ch)])
    writer.close()
    if micro_sign:  # the Latin-1 micro sign many devices write in the units, which the reader repairs
        data = bytearray(path.read_bytes())
        at = 256 + int(data[252:256]) * 96
        data[at : at + 2] = b"\xb5V"
        path.write_bytes(bytes(data))
    return path


def test_edf_read_from_a_map_matches_the_bytes_header_repair_included(tmp_path):
    path = _edf_file(tmp_path, seconds=60, micro_sign=True)
    want = read_record(path.read_bytes(), filename="r.edf")
    got = read_record(_mapped(path), filename="r.edf")
    np.testing.assert_array_equal(got.signal, want.signal)
    assert got.metadata["header_repaired"] is True and want.metadata["header_repaired"] is True


@linux_only
def test_edf_read_from_a_map_keeps_its_pages_out_of_memory(tmp_path):
    path = _edf_file(tmp_path, seconds=1200)  # 3.6 MB
    size = path.stat().st_size
    read_record(_mapped(path), filename="r.edf", files={"r.edf": _mapped(path)})  # warm
    data = _mapped(path)
    before = _status_mb("RssFile")
    ecg = read_record(data, filename="r.edf", files={"r.edf": data})  # as the service calls it
    resident = (_status_mb("RssFile") - before) * 2**20
    assert ecg.signal.shape == (6, 250 * 1200)
    assert resident < 0.25 * size, f"{resident / size:.2f} of the file is still resident"
