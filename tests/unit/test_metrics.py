"""Metric definitions pinned on hand-computed tiny cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ecglens.baselines.cells import fixed_grid
from ecglens.classifiers.base import QueryCounter
from ecglens.explanation import Segment
from ecglens.metrics import (
    attack_success,
    deletion_auc,
    deletion_curve,
    insertion_auc,
    is_flipped,
    l2,
    pointing_game,
    road_deletion_auc,
    road_fill,
    snr_db,
)

FS = 40.0  # 0.25-s cells of 10 samples


class TwoCellEvidence:
    """p(finding) = 0.6 * (peak-to-peak of cell 0 / clean) + 0.4 * (same for cell 1), one lead, 4 cells.

    Flattening a cell sets its peak-to-peak to 0, so every point of a deletion curve is known by hand.
    """

    class_names = ("other", "finding")
    sampling_rate = FS
    lead_names = ("II",)
    window_s = 1.0
    multilabel = True
    thresholds = {"other": 0.5, "finding": 0.5}

    def __init__(self, clean: np.ndarray):
        self.ptp0 = np.ptp(clean[0, 0:10])
        self.ptp1 = np.ptp(clean[0, 10:20])

    def predict_proba(self, batch: np.ndarray) -> np.ndarray:
        x = np.asarray(batch, dtype=np.float64)[:, 0]
        p = 0.6 * np.ptp(x[:, 0:10], axis=1) / self.ptp0 + 0.4 * np.ptp(x[:, 10:20], axis=1) / self.ptp1
        return np.stack([1 - p, p], axis=1)


@pytest.fixture
def evidence():
    rng = np.random.default_rng(0)
    clean = rng.standard_normal((1, 40)).astype(np.float32)
    return clean, TwoCellEvidence(clean), fixed_grid(clean, FS)


def test_snr_db_of_noise_with_known_energy_ratio_ignores_the_signal_mean():
    t = np.arange(1000) / 100.0
    clean = 5.0 + np.sin(2 * np.pi * 1.0 * t)  # the 5 mV offset is not signal energy
    noise = np.random.default_rng(1).standard_normal(1000)
    noise *= np.sqrt(np.sum((clean - clean.mean()) ** 2) / 100.0 / np.sum(noise**2))  # energy ratio 100
    assert snr_db(clean, clean + noise) == pytest.approx(20.0, abs=1e-9)


def test_snr_db_removes_each_leads_own_mean():
    clean = np.array([[1.0, -1.0, 1.0, -1.0], [10.0, 12.0, 10.0, 12.0]])  # energies 4 and 4 after removal
    noisy = clean + np.array([[0.2, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    assert snr_db(clean, noisy) == pytest.approx(10 * math.log10(8.0 / 0.04))


def test_snr_db_is_infinite_without_noise():
    clean = np.sin(np.arange(50.0))
    assert snr_db(clean, clean.copy()) == math.inf


def test_l2_is_the_norm_of_the_distortion():
    clean = np.zeros((2, 3))
    noisy = np.array([[3.0, 0.0, 0.0], [0.0, 4.0, 0.0]])
    assert l2(clean, noisy) == pytest.approx(5.0)


def test_snr_and_l2_refuse_mismatched_shapes():
    with pytest.raises(ValueError, match="differ in shape"):
        snr_db(np.zeros((2, 10)), np.zeros((2, 11)))


@pytest.mark.parametrize(
    ("span", "hit"),
    [
        ((1.9, 2.1), True),  # holds the beat
        ((2.25, 2.5), True),  # starts exactly at beat + tolerance: touching the window counts
        ((1.5, 1.75), False),  # ends exactly at beat - tolerance (a segment's end is exclusive)
        ((1.51, 1.76), True),  # ends just inside the window
        ((2.26, 2.5), False),  # starts past beat + tolerance
    ],
)
def test_pointing_game_window_edges(span, hit):
    # Binary fractions, so the edges are exact in floating point.
    assert pointing_game(span, beat_time_s=2.0, tolerance_s=0.25) is hit


def test_pointing_game_default_tolerance_is_150_ms():
    assert pointing_game((2.5, 2.75), beat_time_s=2.4)
    assert not pointing_game((2.75, 3.0), beat_time_s=2.4)


def test_pointing_game_judges_the_highest_scored_segment():
    segments = [Segment("V1", 5.0, 5.25, 0.4, "gaussian"), Segment("MLII", 2.0, 2.25, 0.9, "gaussian")]
    assert pointing_game(segments, beat_time_s=2.1)
    assert not pointing_game(segments, beat_time_s=5.1)
    assert not pointing_game([], beat_time_s=2.1)


def test_deletion_auc_of_perfect_and_reversed_rankings_match_hand_computation(evidence):
    clean, clf, grid = evidence
    # k = 0..4 cells flattened; perfect order removes cell 0 (0.6) then cell 1 (0.4).
    assert deletion_auc(clean, [0, 1, 2, 3], grid, clf, "finding", steps=5) == pytest.approx(
        0.25 * ((1 + 0.4) / 2 + (0.4 + 0) / 2)
    )
    assert deletion_auc(clean, [3, 2, 1, 0], grid, clf, "finding", steps=5) == pytest.approx(
        0.25 * (1 + 1 + (1 + 0.6) / 2 + 0.6 / 2)
    )


def test_insertion_auc_rewards_restoring_the_evidence_first(evidence):
    clean, clf, grid = evidence
    good = insertion_auc(clean, [0, 1, 2, 3], grid, clf, 1, steps=5)
    bad = insertion_auc(clean, [3, 2, 1, 0], grid, clf, 1, steps=5)
    assert good == pytest.approx(0.25 * (0.3 + 0.8 + 1 + 1))
    assert bad == pytest.approx(0.25 * (0 + 0 + (0 + 0.4) / 2 + (0.4 + 1) / 2))


def test_deletion_curve_runs_from_none_to_all_cells_in_one_batch(evidence):
    clean, clf, grid = evidence
    tally = QueryCounter(clf)
    fractions, probs = deletion_curve(clean, [1], grid, clf, "finding", steps=21, counter=tally)
    assert fractions[0] == 0.0 and fractions[-1] == 1.0 and len(fractions) == 21
    assert probs[0] == pytest.approx(1.0) and probs[-1] == pytest.approx(0.0)
    assert (tally.queries, tally.calls) == (21, 1)


def test_deletion_queries_are_never_charged_to_the_explainers_counter(evidence):
    clean, clf, grid = evidence
    method_counter = QueryCounter(clf, budget=3)
    deletion_auc(clean, [0, 1, 2, 3], grid, method_counter, "finding")
    assert method_counter.queries == 0


def test_deletion_rejects_a_ranking_naming_a_cell_twice(evidence):
    clean, clf, grid = evidence
    with pytest.raises(ValueError, match="twice"):
        deletion_auc(clean, [0, 0], grid, clf, "finding")


def test_attack_success_counts_only_flips_at_or_above_the_snr_floor():
    flipped = [True, True, False, True]
    snr = [25.0, 10.0, 30.0, 20.0]
    assert attack_success(flipped) == pytest.approx(0.75)
    assert attack_success(flipped, snr, min_snr_db=20.0) == pytest.approx(0.5)
    assert math.isnan(attack_success([]))


def test_is_flipped_agrees_with_the_flagging_threshold():
    assert not is_flipped(np.array([0.2, 0.5]), 1, 0.5)
    assert is_flipped(np.array([0.2, 0.4999]), 1, 0.5)


def test_road_fill_is_the_straight_line_between_kept_neighbours_plus_small_noise():
    signal = np.zeros((2, 12), dtype=np.float32)
    signal[0] = np.arange(12)  # a ramp: the imputed line is the ramp itself
    signal[1] = [1, 1, 1, 5, 5, 5, 5, 5, 5, 2, 2, 2]
    removed = np.zeros_like(signal, dtype=bool)
    removed[0, 3:9] = True
    removed[1, 3:9] = True
    out = road_fill(signal, removed, noise=np.zeros_like(signal))
    np.testing.assert_allclose(out[0], np.arange(12))
    np.testing.assert_allclose(out[1, 3:9], 1 + (2 - 1) * (np.arange(3, 9) - 2) / 7, rtol=1e-6)
    np.testing.assert_array_equal(out[:, ~removed[0]], signal[:, ~removed[0]])  # kept samples untouched
    noisy = road_fill(signal, removed, seed=3)
    assert not np.allclose(noisy[0, 3:9], np.arange(3, 9))  # noise on removed samples only
    np.testing.assert_array_equal(noisy[:, ~removed[0]], signal[:, ~removed[0]])
    np.testing.assert_array_equal(noisy, road_fill(signal, removed, seed=3))  # seeded


def test_road_fill_holds_the_edge_value_and_fills_a_whole_lead_with_its_median():
    signal = np.array([[0, 0, 3, 4, 5, 6], [1, 2, 3, 4, 5, 9]], dtype=np.float32)
    removed = np.array([[1, 1, 0, 0, 0, 1], [1, 1, 1, 1, 1, 1]], dtype=bool)
    out = road_fill(signal, removed, noise=np.zeros_like(signal))
    np.testing.assert_allclose(out[0], [3, 3, 3, 4, 5, 5])
    np.testing.assert_allclose(out[1], np.full(6, 3.5))


def test_road_deletion_auc_ranks_like_the_flat_one_on_a_peak_to_peak_classifier(evidence):
    clean, clf, grid = evidence
    best = road_deletion_auc(clean, [0, 1, 2, 3], grid, clf, 1, steps=5)
    worst = road_deletion_auc(clean, [3, 2, 1, 0], grid, clf, 1, steps=5)
    assert best < worst
    counter = QueryCounter(clf)
    road_deletion_auc(clean, [0, 1, 2, 3], grid, counter, 1, steps=5)
    assert counter.queries == 0  # evaluation queries are the benchmark's own
    with pytest.raises(ValueError, match="fill"):
        deletion_curve(clean, [0], grid, clf, 1, fill="mean")
