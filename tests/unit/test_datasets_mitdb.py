"""MIT-BIH windows: split, label rules (on a generated record), lead mapping and cache (on the real records)."""

from __future__ import annotations

import numpy as np
import pytest

from ecglens.datasets.mitdb import (
    CLASS_NAMES,
    DS1,
    DS2,
    PACED,
    MitdbRecord,
    load_record,
    load_windows,
    record_windows,
)
from tests.conftest import shared_path

FS = 360


def _record(
    beats: list[tuple[int, str]], rhythms: list[tuple[int, str]], flutter: tuple[int, ...] = (), seconds: int = 40
) -> MitdbRecord:
    """A generated record: 2 leads of zeros with the given annotations (sample, symbol / rhythm)."""
    rng = np.random.default_rng(0)
    return MitdbRecord(
        name="gen",
        signal=rng.normal(0, 0.1, (2, seconds * FS)).astype(np.float32),
        fs=FS,
        leads=("MLII", "V1"),
        source_leads=("MLII", "V1"),
        beat_sample=np.asarray([b[0] for b in beats], np.int64),
        beat_symbol=np.asarray([b[1] for b in beats]),
        rhythm_sample=np.asarray([r[0] for r in rhythms], np.int64),
        rhythm_label=np.asarray([r[1] for r in rhythms]),
        flutter_wave_sample=np.asarray(flutter, np.int64),
    )


def test_split_is_disjoint_and_leaves_out_paced_records():
    assert len(DS1) == len(DS2) == 22
    assert not set(DS1) & set(DS2)
    assert not set(PACED) & (set(DS1) | set(DS2))


def test_window_labels_follow_the_documented_rules():
    # window 0 (0-10 s): normal beats incl. a bundle-branch beat; window 1: one V beat; window 2: one A beat;
    # window 3 (30-40 s): AFIB from 33 s (70% of the window) with normal beats.
    beats = [(s * FS, "N") for s in range(1, 10)] + [(5 * FS + 10, "L")]
    beats += [(s * FS, "N") for s in range(10, 20)] + [(15 * FS + 100, "V")]
    beats += [(s * FS, "N") for s in range(20, 30)] + [(25 * FS + 100, "A")]
    beats += [(s * FS, "N") for s in range(30, 40)]
    rec = _record(sorted(beats), [(0, "N"), (33 * FS, "AFIB")])
    w = record_windows(rec, 10 * FS, 10 * FS)
    assert w.class_names == CLASS_NAMES
    np.testing.assert_array_equal(w.Y, [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
    assert list(w.rhythm) == ["N", "N", "N", "AFIB"]
    assert w.count_beats(("V", "E")).tolist() == [0, 1, 0, 0]
    samples, symbols = w.beats(1)
    assert samples[symbols == "V"].tolist() == [5 * FS + 100]  # relative to the window's start


def test_af_needs_more_than_half_the_window():
    beats = [(s * FS, "N") for s in range(1, 20)]
    rec = _record(beats, [(0, "N"), (6 * FS, "AFL")], seconds=20)  # AFL on 40% of window 0, all of window 1
    w = record_windows(rec, 10 * FS, 10 * FS)
    assert w.Y[:, 3].tolist() == [0, 1]
    assert w.Y[:, 0].tolist() == [1, 0]


def test_fusion_beat_or_flutter_wave_makes_a_window_not_normal():
    beats = [(s * FS, "N") for s in range(1, 20)] + [(4 * FS + 50, "F")]
    rec = _record(sorted(beats), [(0, "N")], flutter=(15 * FS,), seconds=20)
    w = record_windows(rec, 10 * FS, 10 * FS)
    np.testing.assert_array_equal(w.Y, np.zeros((2, 4)))


def test_subset_carries_beats_along():
    beats = [(s * FS, "N") for s in range(1, 40)] + [(15 * FS + 100, "V"), (35 * FS + 7, "V")]
    w = record_windows(_record(sorted(beats), [(0, "N")]), 10 * FS, 5 * FS)
    one = w.subset(w.count_beats(("V",)) == 1)
    assert one.start.tolist() == [10 * FS, 15 * FS, 30 * FS]
    assert one.count_beats(("V",)).tolist() == [1, 1, 1]
    for i in range(len(one)):
        samples, symbols = one.beats(i)
        assert one.start[i] + samples[symbols == "V"][0] in (15 * FS + 100, 35 * FS + 7)


@pytest.mark.realdata
def test_record_114_maps_mlii_by_name_and_notes_its_second_lead():
    import wfdb

    data = shared_path("mitdb")
    rec = load_record("114", data)
    raw = wfdb.rdrecord(str(data / "114"))
    assert raw.sig_name == ["V5", "MLII"]
    np.testing.assert_allclose(rec.signal[0], raw.p_signal[:, 1], atol=1e-6)
    assert rec.source_leads == ("MLII", "V5")


@pytest.mark.realdata
def test_windows_of_two_records_are_cached_and_labelled(tmp_path):
    data = shared_path("mitdb")
    w = load_windows(["100", "203"], data, cache_dir=tmp_path)
    assert w.X.shape == (360, 2, 3600) and w.X.dtype == np.float32
    assert set(w.source_leads.tolist()) == {"MLII,V5", "MLII,V1"}
    assert w.Y[w.record == "203", 3].mean() > 0.9  # 203 is almost all AF / flutter
    assert w.Y[w.record == "100", 0].mean() > 0.75  # 33 A beats make some windows S
    assert list(tmp_path.rglob("*.npz"))
    again = load_windows(["100", "203"], data, cache_dir=tmp_path)
    np.testing.assert_array_equal(again.X, w.X)
    np.testing.assert_array_equal(again.beat_symbol, w.beat_symbol)
    assert again.ecg(5).name == w.ecg(5).name == "100@18000"


def test_missing_record_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="100.hea"):
        load_record("100", tmp_path)


def test_corrupt_header_is_refused_naming_the_record(tmp_path):
    from ecglens.datasets.mitdb import load_record

    (tmp_path / "100.hea").write_text("")
    (tmp_path / "100.dat").write_bytes(b"")
    with pytest.raises(ValueError, match=r"100.*cannot be read"):
        load_record("100", tmp_path)
