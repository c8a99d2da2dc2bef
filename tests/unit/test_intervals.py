"""Confidence intervals for benchmark figures (`ecglens.intervals`)."""

import numpy as np
import pytest

from ecglens.intervals import bootstrap_ci, format_ci, paired_difference_ci, proportion_ci


def test_wilson_interval_matches_the_closed_form():
    lo, hi = proportion_ci(35, 40)
    p, n, z = 35 / 40, 40, 1.959964
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    assert lo == pytest.approx(centre - half, abs=1e-4) and hi == pytest.approx(centre + half, abs=1e-4)
    assert proportion_ci(0, 10)[0] == 0.0 and proportion_ci(10, 10)[1] == 1.0
    assert all(np.isnan(proportion_ci(0, 0)))


def test_bootstrap_interval_is_seeded_covers_the_statistic_and_skips_nans():
    values = np.random.default_rng(1).normal(0.3, 0.1, 40)
    first = bootstrap_ci(values)
    assert first == bootstrap_ci(values) and first != bootstrap_ci(values, seed=1)
    assert first[0] < values.mean() < first[1]
    assert bootstrap_ci(np.append(values, np.nan)) == first
    assert all(np.isnan(bootstrap_ci([1.0])))
    assert bootstrap_ci([2.0, 2.0, 2.0]) == (2.0, 2.0)


def test_resampling_whole_cases_widens_the_interval_of_correlated_trials():
    rng = np.random.default_rng(2)
    case_effect = rng.normal(0, 1, 10)
    values = np.repeat(case_effect, 9) + rng.normal(0, 0.1, 90)  # 9 near-copies of each case
    naive = bootstrap_ci(values, np.median)
    by_case = bootstrap_ci(values, np.median, groups=np.repeat(np.arange(10), 9))
    assert by_case[1] - by_case[0] > 2 * (naive[1] - naive[0])


def test_paired_rows_and_differences():
    a = np.random.default_rng(3).normal(0, 1, 30)
    diff, (lo, hi) = paired_difference_ci(a, a - 0.5)
    assert diff == pytest.approx(0.5) and lo == pytest.approx(0.5) and hi == pytest.approx(0.5)
    rows = np.c_[a, a - 1.0]
    lo, hi = bootstrap_ci(rows, lambda r: float(np.median(r[:, 0]) - np.median(r[:, 1])))
    assert lo == pytest.approx(1.0) and hi == pytest.approx(1.0)
    assert format_ci(0.1234, 0.5, ".2f") == "[0.12, 0.50]" and format_ci(np.nan, 1.0) == "–"
