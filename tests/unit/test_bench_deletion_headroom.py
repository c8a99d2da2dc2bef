"""benchmarks/deletion_headroom.py: a two-case run on one DS1 record, and its refusal of DS2 records."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from shared_data import shared_path


def _benchmark_module():
    bench_dir = Path(__file__).resolve().parents[2] / "benchmarks"
    spec = importlib.util.spec_from_file_location("deletion_headroom_benchmark", bench_dir / "deletion_headroom.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_every_ranking_variant_is_scored_against_shapley_on_ds1(capsys):
    shared_path("mitdb", "106.hea")
    bench = _benchmark_module()
    rc = bench.main(["--cases", "2", "--records", "106", "--shapley-budget", "170", "--no-greedy", "--no-write"])
    out = capsys.readouterr().out
    assert rc == 0
    rows = [line for line in out.splitlines() if line.startswith("| ") and not line.startswith("| ranking")]
    names = [r.split(" | ")[0][2:] for r in rows]
    assert names[:3] == ["explain, budget 25", "ShapleyValueSampling", "explain head + Shapley tail"]
    assert {
        "explain head + probe-chosen tail",
        "ShapleyValueSampling, one permutation",
        "one deletion path over lead x 1-s groups",
    } <= set(names) and len(names) == 9
    shapley = rows[1].split(" | ")
    assert shapley[4] == "+0.000"  # Shapley minus itself
    assert 0.0 <= float(rows[0].split(" | ")[2]) <= 1.0
    assert int(rows[0].split(" | ")[1]) <= 25  # the explainer's budget is a hard cap


def test_ds2_records_are_refused(capsys):
    bench = _benchmark_module()
    assert bench.main(["--records", "233", "--no-write"]) == 2
    assert "not DS1" in capsys.readouterr().err
