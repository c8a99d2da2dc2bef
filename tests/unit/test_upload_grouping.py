"""`ecglens.service.grouping`: which uploaded files make one record, and the role of each."""

from __future__ import annotations

import numpy as np
import pytest

from ecglens.service.grouping import file_roles, group_files
from ecglens.service.uploads import UploadError, UploadFile, read_group


def _wfdb(folder, name: str, seconds: float = 2.0) -> dict[str, bytes]:
    import wfdb

    t = np.arange(int(seconds * 250)) / 250
    wfdb.wrsamp(
        name,
        fs=250,
        units=["mV"],
        sig_name=["II"],
        p_signal=np.sin(2 * np.pi * t)[:, None],
        fmt=["16"],
        write_dir=str(folder),
    )
    return {f"{name}.hea": (folder / f"{name}.hea").read_bytes(), f"{name}.dat": (folder / f"{name}.dat").read_bytes()}


def _files(mapping: dict[str, bytes]) -> list[UploadFile]:
    return [UploadFile(name, data) for name, data in mapping.items()]


def _names(groups) -> list[list[str]]:
    return [[f.filename for f in g.files] for g in groups]


def test_a_multi_segment_record_is_one_group_and_reads(tmp_path):
    parts = {**_wfdb(tmp_path, "multi_1"), **_wfdb(tmp_path, "multi_2")}
    top = b"multi/2 1 250 1000\nmulti_1 500\nmulti_2 500\n"
    groups = group_files(_files({"multi_2.dat": parts["multi_2.dat"], "multi.hea": top, **parts}))
    assert _names(groups) == [["multi.hea", "multi_2.dat", "multi_1.hea", "multi_1.dat", "multi_2.hea"]]
    ecg = read_group(groups[0])
    assert ecg.n_samples == 1000
    assert set(file_roles(groups[0], ecg).values()) == {"header", "signal"}


def test_records_and_other_formats_keep_upload_order():
    files = _files(
        {
            "a.csv": b"x",
            "r.hea": b"r 1 250 10\nr.dat 16 200 16 0 0 0 0 II\n",
            "r.dat": b"\x00" * 20,
            "r.atr": b"\x00\x00",
            "b.edf": b"x",
        }
    )
    assert _names(group_files(files)) == [["a.csv"], ["r.hea", "r.dat", "r.atr"], ["b.edf"]]


def test_with_one_header_a_stray_wfdb_file_goes_to_it_so_its_reader_can_say_why():
    files = _files({"r.hea": b"r 1 250 10\nr.dat 16 200 16 0 0 0 0 II\n", "other.dat": b"\x00" * 20})
    assert _names(group_files(files)) == [["r.hea", "other.dat"]]


def test_with_several_headers_a_stray_wfdb_file_is_refused_by_name():
    header = "{0} 1 250 10\n{0}.dat 16 200 16 0 0 0 0 II\n"
    files = _files(
        {
            "a.hea": header.format("a").encode(),
            "a.dat": b"\x00" * 20,
            "b.hea": header.format("b").encode(),
            "b.dat": b"\x00" * 20,
            "c.qrs": b"\x00\x00",
        }
    )
    with pytest.raises(UploadError, match="c.qrs: belongs to none of the records"):
        group_files(files)


def test_a_file_the_reader_did_not_use_that_is_not_annotations_is_refused(tmp_path):
    files = _wfdb(tmp_path, "rec")
    files["rec.mat"] = b"unused"
    (group,) = group_files(_files(files))
    with pytest.raises(UploadError, match="rec.mat: not part of record rec"):
        file_roles(group, read_group(group))
