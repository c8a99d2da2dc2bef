"""The agent's search (`ecglens.agent.search.explain`): segments, budget, determinism, minimality, fallback."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_agent_support import BUMP_AT_S, FS, ArgmaxBumpClassifier, BumpClassifier, bump_ecg

from ecglens.agent.cleanup import minimize
from ecglens.agent.env import Episode
from ecglens.agent.policy import PolicyCard, SegmentPolicy
from ecglens.agent.search import explain, score_cells
from ecglens.classifiers.base import QueryCounter
from ecglens.ecg import Ecg
from ecglens.errors import RecordError
from ecglens.explanation import Segment
from ecglens.targets import diagnosed_targets


def _untrained_policy(seed: int = 0) -> SegmentPolicy:
    torch.manual_seed(seed)
    return SegmentPolicy(PolicyCard(hidden=16)).eval()


def _covers_bump(segment) -> bool:
    return segment.lead == "MLII" and segment.start_s - 0.15 <= BUMP_AT_S <= segment.end_s + 0.15


@pytest.mark.parametrize("policy", ["greedy", "untrained"])
def test_top_segment_covers_the_bump(policy):
    clf = BumpClassifier()
    chosen = "greedy" if policy == "greedy" else _untrained_policy()
    result = explain(bump_ecg(), clf, query_budget=500, seed=0, policy=chosen)
    assert result.method == ("greedy-scan" if policy == "greedy" else "policy")
    assert result.adversarial is not None and result.adversarial.flipped
    assert result.adversarial.label == "normal"
    assert _covers_bump(result.segments[0])
    assert result.saliency.shape == (2, 2000) and 0.0 <= result.saliency.min() and result.saliency.max() == 1.0


@pytest.mark.parametrize("budget", [2, 3, 7, 25, 60])
def test_query_budget_is_a_hard_cap(budget):
    clf = BumpClassifier()
    result = explain(bump_ecg(), clf, query_budget=budget, seed=0, policy=_untrained_policy())
    assert result.queries <= budget and clf.rows == result.queries


def test_query_budget_cap_holds_for_the_greedy_scan_and_long_records():
    clf = BumpClassifier()
    long = bump_ecg(duration_s=35.0, bump_at_s=17.0)
    result = explain(long, clf, query_budget=30, seed=0, policy="greedy")
    assert result.queries <= 30 and clf.rows == result.queries


def test_same_seed_gives_the_same_explanation():
    a = explain(bump_ecg(), BumpClassifier(), query_budget=120, seed=3, policy=_untrained_policy())
    b = explain(bump_ecg(), BumpClassifier(), query_budget=120, seed=3, policy=_untrained_policy())
    da, db = a.to_dict(), b.to_dict()
    da.pop("elapsed_s"), db.pop("elapsed_s")
    assert da == db


def test_cleanup_leaves_a_minimal_flipping_set():
    clf = BumpClassifier()
    result = explain(bump_ecg(), clf, query_budget=500, seed=1, policy="greedy")
    adv = result.adversarial
    assert adv is not None and adv.flipped
    noise = adv.noise
    clean = adv.signal - noise
    grid_bounds = np.round(np.asarray(result.extra["grid"]["bounds_s"]) * FS).astype(int)
    distorted = [(lead, a, b) for lead in range(2) for a, b in grid_bounds if np.any(noise[lead, a:b] != 0)]
    assert distorted
    for lead, a, b in distorted:  # removing any one remaining distorted cell must un-flip the diagnosis
        x = adv.signal.copy()
        x[lead, a:b] = clean[lead, a:b]
        assert clf.predict_proba(x[None])[0, 1] >= 0.5


def test_cleanup_drops_distortions_the_flip_does_not_need():
    clf = BumpClassifier()
    x = bump_ecg().signal
    probs = clf.predict_proba(x[None])[0]
    ep = Episode(x, FS, probs, diagnosed_targets(probs, clf)[0], np.random.default_rng(0))
    bump_cell = int(BUMP_AT_S * FS) // 50
    useless = [2, 11, 45, 70]
    for cell in useless:
        ep.set_cell(cell, 1, 4)
    ep.set_cell(bump_cell, 4, 4)
    ep.probs = clf.predict_proba(ep.signal()[None])[0]
    assert ep.flipped
    counter = QueryCounter(clf, budget=100)
    contributions = minimize(ep, counter, end=100)
    assert ep.flipped and list(ep.distorted_cells()) == [bump_cell]
    assert ep.level[bump_cell] < 4 or contributions[bump_cell] > 0  # amplitudes lowered while the flip holds
    assert set(contributions) == {bump_cell} and contributions[bump_cell] > 0


def test_argmax_classifier_is_flipped_when_another_class_wins():
    result = explain(bump_ecg(), ArgmaxBumpClassifier(), query_budget=300, seed=0, policy="greedy")
    assert result.adversarial is not None and result.adversarial.label == "normal"
    assert _covers_bump(result.segments[0])


def test_greedy_fallback_when_the_policy_does_not_fit_the_input_shape():
    clf = BumpClassifier(window_s=1.5)  # shorter than the policy's minimum input
    ecg = bump_ecg(duration_s=10.0, bump_at_s=0.7)
    result = explain(ecg, clf, query_budget=200, seed=0, policy=_untrained_policy(), start_s=0.0)
    assert result.method == "greedy-scan"
    assert "1.5 s" in result.fallback_reason
    assert result.saliency.shape == (2, 300)


def test_long_record_explains_the_window_where_the_finding_is_most_probable():
    clf = BumpClassifier()
    long = bump_ecg(duration_s=30.0, bump_at_s=16.1)
    result = explain(long, clf, query_budget=200, seed=0, policy="greedy")
    assert result.start_s == pytest.approx(10.0)
    assert result.segments[0].lead == "MLII" and result.segments[0].start_s <= 16.1 + 0.15
    assert result.segments[0].end_s >= 16.1 - 0.15


def test_start_s_picks_the_window_and_segments_are_in_record_time():
    clf = BumpClassifier()
    long = bump_ecg(duration_s=30.0, bump_at_s=26.1)
    result = explain(long, clf, query_budget=200, seed=0, policy="greedy", start_s=20.0)
    assert result.start_s == pytest.approx(20.0)
    top = result.segments[0]  # in record time: the bump at 26.1 s, within the pointing game's 0.15 s
    assert top.lead == "MLII" and top.start_s - 0.15 <= 26.1 <= top.end_s + 0.15 and top.start_s >= 25.5


def test_progress_is_reported_between_zero_and_one_ending_at_one():
    seen: list[float] = []
    explain(bump_ecg(), BumpClassifier(), query_budget=100, seed=0, policy="greedy", progress=seen.append)
    assert seen and seen[-1] == 1.0 and all(0.0 <= v <= 1.0 for v in seen)


@pytest.mark.parametrize("budget", [60, 500])
def test_partial_segments_arrive_in_record_time_and_end_as_the_explanations(budget):
    long = bump_ecg(duration_s=30.0, bump_at_s=16.1)
    seen: list[list[Segment]] = []
    result = explain(long, BumpClassifier(), query_budget=budget, seed=0, policy="greedy", partial=seen.append)
    assert seen and all(isinstance(s, Segment) for call in seen for s in call)
    window_s = 2000 / FS
    assert all(result.start_s <= s.start_s < s.end_s <= result.start_s + window_s for call in seen for s in call)

    def spans(segments):  # the distortion named may be refined once the flip is found; where and how much may not
        return [(s.lead, s.start_s, s.end_s, s.score) for s in segments]

    top = seen[-1][0]
    assert spans(seen[-1]) == spans(result.segments) and top.lead == "MLII" and top.start_s <= 16.1 <= top.end_s
    quiet = explain(long, BumpClassifier(), query_budget=budget, seed=0, policy="greedy").to_dict()
    loud = result.to_dict()
    quiet.pop("elapsed_s"), loud.pop("elapsed_s")
    assert loud == quiet  # the hook only watches: same queries, same explanation


def test_record_missing_a_classifier_lead_is_a_record_error():
    ecg = bump_ecg()
    one_lead = Ecg(signal=ecg.signal[:1], fs=FS, leads=("V5",), name="strip.csv")
    with pytest.raises(RecordError, match="strip.csv"):
        explain(one_lead, BumpClassifier(), query_budget=50)


def test_unknown_distortion_kind_is_refused_with_the_valid_ones():
    with pytest.raises(ValueError, match="baseline_wander"):
        explain(bump_ecg(), BumpClassifier(), distortions="thunder", query_budget=50)


def test_allowed_distortions_are_the_only_ones_used():
    result = explain(
        bump_ecg(), BumpClassifier(), distortions="powerline,gaussian", query_budget=300, policy=_untrained_policy()
    )
    # Segments carry the flip's noise kind, or "dropout" where only the localisation's probes measured them.
    assert {s.distortion for s in result.segments} <= {"powerline", "gaussian", "dropout", "none"}
    assert result.adversarial is not None
    kinds_used = {f["segments"][0]["distortion"] for f in result.extra["findings"] if f["segments"]}
    assert kinds_used <= {"powerline", "gaussian", "dropout"}


def test_scores_rank_minimal_set_then_probed_then_prior_and_share_windows_across_leads():
    clf = BumpClassifier()
    x = bump_ecg().signal
    probs = clf.predict_proba(x[None])[0]
    ep = Episode(x, FS, probs, diagnosed_targets(probs, clf)[0], np.random.default_rng(0))
    n_w = ep.grid.n_windows
    ep.set_cell(24, 4, 4)  # the minimal set: MLII window 24
    ep.record_probe([24, 10], np.array([[0.9, 0.1], [0.5, 0.7]]), ep.p, [0.1, 0.1])
    prior = np.zeros(ep.grid.n_cells)
    prior[30] = 5.0  # the policy liked MLII window 30 before probing
    scores = score_cells(ep, {24: 0.8}, prior)
    assert scores[24] == 1.0
    assert scores[n_w + 24] == pytest.approx(0.5 * scores[24])  # same window, other lead: half the evidence
    assert scores[10] > scores[30] > scores[50] >= 0.0  # probed drop > policy prior > nothing known
    assert scores[n_w + 10] == pytest.approx(0.5 * scores[10])


def test_committed_policy_is_used_by_default_and_fits_two_and_twelve_leads():
    from ecglens.agent.policy import default_policy_path, load_policy, policy_misfit

    path = default_policy_path()
    if not path.exists():
        pytest.skip(f"no trained policy at {path}")
    policy = load_policy(path)
    assert policy_misfit(policy, 2, 3600, 360.0) is None and policy_misfit(policy, 12, 5000, 500.0) is None
    result = explain(bump_ecg(), BumpClassifier(), query_budget=200, seed=0)
    assert result.method == "policy" and result.fallback_reason is None
    assert _covers_bump(result.segments[0])


def test_trained_policy_points_at_a_real_pvc_with_25_queries():
    from shared_data import shared_path

    from ecglens.classifiers import load_classifier, models_dir
    from ecglens.datasets.mitdb import load_windows

    shared_path("mitdb", "119.hea")
    if not (models_dir() / "builtin.pt").exists():
        pytest.skip("no built-in classifier")
    windows = load_windows(["119"])
    clf = load_classifier("builtin", device="cpu")
    one_v = np.flatnonzero(windows.count_beats(("V", "E")) == 1)
    probs = clf.predict_proba(windows.X[one_v[:8]])
    i = int(one_v[:8][int(np.argmax(probs[:, 1]))])  # the window most clearly flagged (held-out DS1 record)
    samples, symbols = windows.beats(i)
    beat_s = float(samples[symbols == "V"][0]) / windows.fs
    result = explain(windows.ecg(i), clf, query_budget=25, seed=0)
    assert result.queries <= 25 and result.diagnosis.label == "ventricular ectopy"
    top = result.segments[0]
    assert top.start_s <= beat_s + 0.15 and top.end_s > beat_s - 0.15
