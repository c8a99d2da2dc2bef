"""benchmarks/explainers.py's tables: the mean over held-out zoo members, paired intervals and the budget view,
on hand-made rows (no classifier runs here)."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="module")
def bench():
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "explainers.py"
    spec = importlib.util.spec_from_file_location("explainers_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _rows(bench, method, values, record="116"):
    return [
        bench.Row(
            method=method,
            record=record,
            start_sample=i,
            reported_method="x",
            queries=10,
            elapsed_s=0.1,
            pointing=bool(p),
            deletion_auc=float(d),
            road_auc=float(d) + 0.1,
            flipped=bool(f),
            l2=1.0 if f else None,
            snr_db=15.0 if f else None,
            flip_claimed=bool(f),
        )
        for i, (p, d, f) in enumerate(values)
    ]


def test_scheduled_expands_to_the_issues_budgets_and_policy_n_still_parses(bench):
    keys = bench._methods("scheduled,occlusion,policy-30")
    assert keys == [f"scheduled-{b}" for b in (10, 25, 50, 100, 200, 500)] + ["occlusion", "policy-30"]
    assert bench.METHODS["scheduled-10"][2] == 10 and bench.METHODS["policy-30"][2] == 30


def test_the_zoo_alias_names_the_held_out_members_files(bench):
    from ecglens.classifiers import zoo

    specs = bench._model_specs("builtin,heldout")
    assert specs[0] == "builtin" and len(specs) == 1 + len(zoo.members("heldout"))
    assert all(Path(s).stem in zoo.SPLIT and zoo.SPLIT[Path(s).stem] == "heldout" for s in specs[1:])


def test_mean_over_members_weights_each_member_equally_and_pairs_cases(bench):
    bench._methods("scheduled-10,scheduled-25,occlusion")
    # member a: 4 cases, member b: 2 cases; equal weight -> pointing (1.0 + 0.0) / 2 at budget 10
    a = (
        _rows(bench, "scheduled-10", [(1, 0.3, 1)] * 4)
        + _rows(bench, "scheduled-25", [(1, 0.2, 1)] * 4)
        + _rows(bench, "occlusion", [(1, 0.25, 0)] * 4)
    )
    b = (
        _rows(bench, "scheduled-10", [(0, 0.5, 0)] * 2, "118")
        + _rows(bench, "scheduled-25", [(1, 0.4, 1)] * 2, "118")
        + _rows(bench, "occlusion", [(1, 0.45, 0)] * 2, "118")
    )
    args = argparse.Namespace(records=None, seed=0)
    report = bench.zoo_mean_report({"m_a": a, "m_b": b}, ["scheduled-10", "scheduled-25", "occlusion"], args)
    line = next(ln for ln in report.splitlines() if ln.startswith("| scheduled (staged search), budget 10 |"))
    assert line.split(" | ")[1].startswith("0.50")  # (1 + 0) / 2, not 4/6
    assert line.split(" | ")[2].startswith("0.400")  # (0.3 + 0.5) / 2
    paired = next(ln for ln in report.splitlines() if ln.startswith("| scheduled-25 − occlusion |"))
    assert paired.split(" | ")[2].startswith("-0.050 [-0.050, -0.050]")  # every case 0.05 below
    mono = next(ln for ln in report.splitlines() if ln.startswith("| scheduled-25 − scheduled-10 |"))
    assert mono.split(" | ")[1].startswith("+0.50")


def test_mean_over_members_pairs_the_learned_policy_with_scheduled_at_each_budget(bench):
    methods = ["agent-25", "scheduled-25"]
    bench._methods(",".join(methods))
    agent = _rows(bench, "agent-25", [(1, 0.2, 1), (1, 0.2, 1), (1, 0.2, 0)])
    for r in agent[:2]:
        r.snr_db = 20.0
    scheduled = _rows(bench, "scheduled-25", [(0, 0.3, 1), (1, 0.3, 0), (1, 0.3, 1)])  # flips at 15 dB
    report = bench.zoo_mean_report({"m": agent + scheduled}, methods, argparse.Namespace(records=None, seed=0))
    line = next(ln for ln in report.splitlines() if ln.startswith("| agent-25 − scheduled-25 |"))
    cells = line.split(" | ")
    assert cells[1].startswith("+0.33") and cells[2].startswith("-0.100 [-0.100, -0.100]")
    assert cells[4].startswith("+0.00")  # two flips each
    assert cells[5].startswith("+5.0 [+5.0, +5.0] (1 cases)")  # only case 0 flipped by both: 20 - 15 dB


def test_zoo_interval_covers_the_mean_and_narrows_with_more_cases(bench):
    rng = np.random.default_rng(0)
    few = [rng.normal(0.3, 0.1, 10), rng.normal(0.5, 0.1, 10)]
    many = [rng.normal(0.3, 0.1, 400), rng.normal(0.5, 0.1, 400)]
    m1, lo1, hi1 = bench._zoo_ci(few)
    m2, lo2, hi2 = bench._zoo_ci(many)
    assert lo1 <= m1 <= hi1 and lo2 <= m2 <= hi2
    assert hi2 - lo2 < hi1 - lo1
