"""benchmarks/explain_latency.py: its core measurement on a simulated strip with the built-in model, one repeat."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest


def _benchmark_module():
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "explain_latency.py"
    spec = importlib.util.spec_from_file_location("explain_latency_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def rows():
    import neurokit2 as nk
    import numpy as np

    from ecglens import load_classifier
    from ecglens.ecg import Ecg

    bench = _benchmark_module()
    a = nk.ecg_simulate(duration=10, sampling_rate=360, heart_rate=70, random_state=1)
    b = nk.ecg_simulate(duration=10, sampling_rate=360, heart_rate=70, random_state=2) * 0.6
    ecg = Ecg(signal=np.stack([a, b]).astype(np.float32), fs=360.0, leads=("MLII", "V1"), name="synthetic")
    classifier = load_classifier("builtin", device="cpu")
    return bench, bench.measure_model("builtin", ecg, classifier, [25], repeats=1, peer_repeats=1, verbose=False)


def test_latency_rows_stay_within_budget_and_name_the_method(rows):
    bench, measured = rows
    explain_row, occlusion_row = measured
    assert explain_row.budget == 25 and 2 <= explain_row.queries[0] <= 25
    assert explain_row.method.split(" (")[0] in ("anytime", "agent")
    # Every query goes through predict_proba, so the clock saw at least one call and no more time than the call.
    assert explain_row.calls >= 1 and 0 < explain_row.inside_s <= explain_row.max_s
    assert 0 < explain_row.inside_cpu_s <= explain_row.cpu_s and occlusion_row.cpu_s > 0
    assert occlusion_row.budget is None and occlusion_row.queries[0] == 200  # 2 + 2 leads x 99 windows
    assert explain_row.ratio_to_occlusion == pytest.approx(explain_row.median_s / occlusion_row.median_s)
    assert explain_row.target_s == 1.0


def test_latency_table_has_a_row_per_budget_and_flags_untrained_models(rows):
    bench, measured = rows
    flagged = [bench.Row(**{**r.__dict__, "model": "resnet1d-untrained-12lead", "untrained": True}) for r in measured]
    table = bench.markdown_table(measured + flagged)
    lines = [line for line in table.splitlines() if line.startswith("| builtin")]
    assert len(lines) == 2 and "| 25 |" in lines[0] and "| Occlusion |" in lines[1]
    assert "(< 1 s) |" in lines[0] and lines[0].endswith("| – |")  # issue 16's target is the built-in's at 500
    at_500 = bench.Row(**{**measured[0].__dict__, "budget": 500, "target16_s": 0.5})
    assert bench.markdown_table([at_500]).splitlines()[-1].endswith("(< 0.5 s) |")
    assert "resnet1d-untrained-12lead (untrained)" in table
