"""Concurrent first reads of one record delineate it once (`ecglens.reports.basics.cached_basics`)."""

from __future__ import annotations

import threading
import time

import numpy as np

from ecglens.reports import basics


def test_concurrent_first_calls_compute_the_basics_once(tmp_path, monkeypatch):
    calls = []

    def slow(signal, fs, leads):
        calls.append(threading.get_ident())
        time.sleep(0.3)
        return {"heart_rate_bpm": 60.0}

    monkeypatch.setattr(basics, "clinical_basics", slow)
    results = []
    signal = np.zeros((1, 5000), dtype=np.float32)
    threads = [
        threading.Thread(target=lambda: results.append(basics.cached_basics(tmp_path, "r1", signal, 500.0, ["II"])))
        for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(calls) == 1 and results == [{"heart_rate_bpm": 60.0}] * 8
    assert basics._computing == {}  # nothing left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r1.basics.json"]
    # Another record is not held up by this one's lock, and a cached one is read without computing.
    assert basics.cached_basics(tmp_path, "r1", signal, 500.0, ["II"]) == {"heart_rate_bpm": 60.0}
    assert len(calls) == 1
