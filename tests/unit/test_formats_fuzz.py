"""Fuzzing every reader: random bytes, truncated and mutated valid files, random headers and documents.

The property: a reader either returns a valid `Ecg` or raises `RecordError` naming the file; no other
exception, crash or hang. Hypothesis runs derandomized (a fixed example sequence) so that the suite is
deterministic.
"""

from __future__ import annotations

import functools
import io
import json
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ecglens.ecg import Ecg
from ecglens.errors import RecordError
from ecglens.formats import (
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
    write_wfdb,
)

FUZZ = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@functools.lru_cache(maxsize=1)
def _seed_record() -> Ecg:
    """A small valid record (3 leads, 1 s at 100 Hz) to corrupt."""
    rng = np.random.default_rng(0)
    t = np.arange(100) / 100.0
    signal = np.stack([np.sin(2 * np.pi * (1 + i) * t) + 0.01 * rng.standard_normal(100) for i in range(3)])
    return Ecg(signal=signal, fs=100.0, leads=("I", "II", "V1"), name="seed", metadata={"age": 50, "sex": "F"})


@functools.cache
def _seed_files(kind: str) -> dict[str, bytes]:
    ecg = _seed_record()
    writers = {
        "edf": lambda: {"seed.edf": write_edf(ecg)},
        "csv": lambda: {"seed.csv": write_csv(ecg)},
        "json": lambda: {"seed.json": write_json(ecg)},
        "dicom": lambda: {"seed.dcm": write_dicom(ecg)},
        "aecg": lambda: {"seed.xml": write_aecg(ecg)},
        "wfdb": lambda: write_wfdb(ecg),
    }
    return writers[kind]()


def _check(read, *args, **kwargs) -> None:
    """Run a reader; pass if it returns a valid Ecg or raises a RecordError with a file name and reason."""
    try:
        ecg = read(*args, **kwargs)
    except RecordError as exc:
        assert exc.reason and str(exc).strip()
        return
    assert isinstance(ecg, Ecg)
    assert ecg.signal.dtype == np.float32 and ecg.signal.ndim == 2 and ecg.signal.size > 0
    assert np.isfinite(ecg.signal).all() and 0 < ecg.fs <= 20_000 and 1 <= ecg.n_leads <= 64
    assert len(ecg.leads) == ecg.n_leads


def _mutate(data: bytes, edits: list[tuple[int, int]]) -> bytes:
    out = bytearray(data)
    for position, value in edits:
        out[position % len(out)] = value
    return bytes(out)


_EXTENSIONS = ["", ".hea", ".dat", ".mat", ".edf", ".bdf", ".csv", ".txt", ".json", ".dcm", ".xml", ".zip"]
_edits = st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 255)), min_size=1, max_size=8)


# ------------------------------------------------------------------------------------------- random bytes
@FUZZ
@given(data=st.binary(max_size=2048), ext=st.sampled_from(_EXTENSIONS))
def test_random_bytes_raise_only_record_error(data, ext):
    _check(read_record, data, f"upload{ext}")


@FUZZ
@given(
    data=st.binary(max_size=1024),
    magic=st.sampled_from(
        [b"0       ", b"\xffBIOSEMI", b"PK\x03\x04", b"\x00" * 128 + b"DICM", b"<AnnotatedECG>", b"{"]
    ),
)
def test_random_bytes_behind_a_format_signature_raise_only_record_error(data, magic):
    _check(read_record, magic + data, "upload.bin")


# ---------------------------------------------------------------------------------- truncated valid files
@pytest.mark.parametrize(
    "kind, reader",
    [("edf", read_edf), ("csv", read_csv), ("json", read_json), ("dicom", read_dicom), ("aecg", read_aecg)],
)
@FUZZ
@given(cut=st.floats(0.0, 1.0, exclude_max=True))
def test_truncated_files_raise_only_record_error(kind, reader, cut):
    ((name, data),) = _seed_files(kind).items()
    _check(reader, data[: int(len(data) * cut)], name)


@FUZZ
@given(cut=st.floats(0.0, 1.0, exclude_max=True), which=st.sampled_from(["seed.hea", "seed.dat"]))
def test_truncated_wfdb_pair_raises_only_record_error(cut, which):
    files = dict(_seed_files("wfdb"))
    files[which] = files[which][: int(len(files[which]) * cut)]
    _check(read_wfdb, files)


# ----------------------------------------------------------------------------------- mutated valid files
@pytest.mark.parametrize(
    "kind, reader",
    [("edf", read_edf), ("csv", read_csv), ("json", read_json), ("dicom", read_dicom), ("aecg", read_aecg)],
)
@FUZZ
@given(edits=_edits)
def test_mutated_files_raise_only_record_error(kind, reader, edits):
    ((name, data),) = _seed_files(kind).items()
    _check(reader, _mutate(data, edits), name)


@FUZZ
@given(edits=_edits, which=st.sampled_from(["seed.hea", "seed.dat"]))
def test_mutated_wfdb_pair_raises_only_record_error(edits, which):
    files = dict(_seed_files("wfdb"))
    files[which] = _mutate(files[which], edits)
    _check(read_record, files)


@FUZZ
@given(edits=_edits)
def test_mutated_zip_upload_raises_only_record_error(edits):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in _seed_files("wfdb").items():
            archive.writestr(name, data)
    _check(read_record, _mutate(buffer.getvalue(), edits), "upload.zip")


# -------------------------------------------------------------------------------- random headers/documents
_token = st.one_of(
    st.integers(-10, 10**7).map(str),
    st.floats(allow_nan=True).map(str),
    st.text("abcxyz0123456789/:.-()+~_ ", max_size=12),
    st.sampled_from(
        [
            "16",
            "212",
            "80",
            "16x2",
            "24",
            "mV",
            "uV",
            "200(0)/mV",
            "I",
            "II",
            "seed.dat",
            "2014-04-15",
            "03:04:41",
            "25/12/2019",
            "#",
            "seed/2",
            "~",
        ]
    ),
)
_line = st.lists(_token, min_size=0, max_size=10).map(" ".join)


@FUZZ
@given(lines=st.lists(_line, min_size=0, max_size=6), record_line=_line)
def test_random_wfdb_headers_raise_only_record_error(lines, record_line):
    header = "\n".join([record_line, *lines]).encode()
    _check(read_record, {"seed.hea": header, "seed.dat": _seed_files("wfdb")["seed.dat"]})


@FUZZ
@given(
    header=st.lists(
        st.sampled_from(["time", "t", "time_ms", "I", "II (uV)", "V1 [V]", "x (furlong)", "", "sample", "aVR"]),
        min_size=1,
        max_size=5,
    ),
    rows=st.lists(
        st.lists(
            st.one_of(
                st.floats(allow_nan=True, allow_infinity=True).map(str),
                st.sampled_from(["", "NA", "abc", "1e999", "-0"]),
                st.integers(-5, 5).map(str),
            ),
            max_size=6,
        ),
        max_size=12,
    ),
    delimiter=st.sampled_from([",", ";", "\t"]),
    fs=st.sampled_from([None, 250.0]),
)
def test_random_csv_tables_raise_only_record_error(header, rows, delimiter, fs):
    text = "\n".join(delimiter.join(r) for r in [header, *rows])
    _check(read_csv, text.encode(), "random.csv", fs=fs)


_json_value = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(10**6), 10**6), st.floats(allow_nan=True), st.text(max_size=8)),
    lambda children: st.one_of(
        st.lists(children, max_size=6), st.dictionaries(st.text(max_size=6), children, max_size=5)
    ),
    max_leaves=30,
)


@FUZZ
@given(
    fs=_json_value,
    leads=st.one_of(
        _json_value,
        st.dictionaries(
            st.sampled_from(["I", "II", "V1", ""]),
            st.lists(st.one_of(st.none(), st.floats(allow_nan=True), st.integers(-100, 100)), max_size=20),
        ),
    ),
    units=st.one_of(st.none(), _json_value, st.sampled_from(["mV", "uV", "V", "bananas"])),
    metadata=_json_value,
)
def test_random_json_documents_raise_only_record_error(fs, leads, units, metadata):
    doc = {"fs": fs, "leads": leads, "metadata": metadata}
    if units is not None:
        doc["units"] = units
    _check(read_json, json.dumps(doc).encode(), "random.json")


@FUZZ
@given(
    increment=st.one_of(st.floats(allow_nan=True), st.text(max_size=5)),
    unit=st.sampled_from(["s", "ms", "us", "h", ""]),
    digits=st.lists(st.one_of(st.integers(-(10**9), 10**9).map(str), st.sampled_from(["x", "1e999", ""])), max_size=20),
    code=st.sampled_from(["MDC_ECG_LEAD_I", "MDC_ECG_LEAD_", "TIME_ABSOLUTE", "OTHER", ""]),
)
def test_random_aecg_documents_raise_only_record_error(increment, unit, digits, code):
    doc = f"""<AnnotatedECG xmlns="urn:hl7-org:v3"><component><series><component><sequenceSet>
      <component><sequence><code code="TIME_RELATIVE"/><value><increment value="{increment}" unit="{unit}"/>
      </value></sequence></component>
      <component><sequence><code code="{code}"/><value><origin value="0" unit="uV"/>
      <scale value="1" unit="uV"/><digits>{" ".join(digits)}</digits></value></sequence></component>
    </sequenceSet></component></series></component></AnnotatedECG>"""
    _check(read_aecg, doc.encode(), "random.xml")


# ------------------------------------------------------------ the same files read through a read-only map
def _mapped(data: bytes):
    """``data`` as the service hands a large upload over: a read-only map of a file (bytes when empty)."""
    import mmap
    import tempfile

    if not data:
        return data
    with tempfile.TemporaryFile() as fh:
        fh.write(data)
        fh.flush()
        return mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)


def _check_alike(read, data, name, **files) -> None:
    """The reader on a map of ``data``: only `RecordError`, and when it reads, what it reads from the bytes."""
    try:
        want = read(data, name, **files)
    except RecordError:
        want = None
    mapped_files = {"files": {k: _mapped(v) for k, v in files["files"].items()}} if files else {}
    _check(read, _mapped(data), name, **mapped_files)
    if want is not None:
        got = read(_mapped(data), name, **mapped_files)
        np.testing.assert_array_equal(got.signal, want.signal)


@FUZZ
@given(cut=st.floats(0.0, 1.0), edits=st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 255)), max_size=8))
def test_cut_or_mutated_edf_through_a_map_reads_as_its_bytes(cut, edits):
    ((name, data),) = _seed_files("edf").items()
    data = _mutate(data, edits) if edits else data
    _check_alike(read_record, data[: max(1, int(len(data) * cut))], name)


@FUZZ
@given(cut=st.floats(0.0, 1.0), edits=st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 255)), max_size=8))
def test_cut_or_mutated_wfdb_signal_file_through_a_map_reads_as_its_bytes(cut, edits):
    files = dict(_seed_files("wfdb"))
    dat = _mutate(files["seed.dat"], edits) if edits else files["seed.dat"]
    files["seed.dat"] = dat[: max(1, int(len(dat) * cut))]
    from ecglens.formats import wfdb as wfdb_format

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(wfdb_format, "CHUNK_BYTES", 7 * 6)  # blocks of 7 frames of the 3 leads: many block ends
        _check_alike(read_record, files["seed.hea"], "seed.hea", files=files)
