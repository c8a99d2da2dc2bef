"""Broad noise for robust classifiers (`agent.broad`) and what the staged search (`agent.search`) does with it."""

from __future__ import annotations

import numpy as np
from test_agent_support import BUMP_AT_S, FS, BumpClassifier, QualityClassifier, bump_ecg

from ecglens.agent.broad import broad_flip
from ecglens.agent.env import Episode
from ecglens.agent.search import _scan_candidates
from ecglens.agent.search import explain as explain_scheduled
from ecglens.classifiers.base import QueryCounter
from ecglens.metrics import snr_db
from ecglens.targets import diagnosed_targets


def _episode(clf) -> Episode:
    x = bump_ecg().signal
    probs = clf.predict_proba(x[None])[0]
    clf.rows = 0
    return Episode(x, FS, probs, diagnosed_targets(probs, clf)[0], np.random.default_rng(0))


def test_broad_noise_flips_a_classifier_no_few_cells_move():
    clf = QualityClassifier()
    ep = _episode(clf)
    assert ep.target.label == "normal" and not ep.flipped
    # The strongest noise of every kind on four cells does not flip it.
    strong = ep.probe(clf, [[(c, k, len(ep.levels_db) - 1) for c in (10, 11, 50, 51)] for k in range(5)])
    assert not ep.target.flipped(strong).any()
    clf.rows = 0
    counter = QueryCounter(clf, budget=200)
    assert broad_flip(ep, counter, 200, np.arange(ep.grid.n_cells))
    assert ep.flipped and counter.queries == clf.rows == 30  # 3 levels x 2 regions x 5 kinds, one call
    assert clf.predict_proba(ep.signal()[None])[0, 0] < 0.5  # the classifier confirms
    # The quietest flipping configuration was kept, and the bookkeeping matches the signal.
    assert abs(ep.snr_db() - snr_db(ep.clean, ep.signal())) < 0.05
    level = int(ep.level[ep.distorted_cells()].max())
    assert level < len(ep.levels_db) - 1  # a weaker level than the strongest sufficed


def test_broad_noise_spends_nothing_without_room_for_its_cleanup():
    clf = QualityClassifier()
    ep = _episode(clf)
    counter = QueryCounter(clf, budget=80)
    assert not broad_flip(ep, counter, 80, np.arange(ep.grid.n_cells), reserve=60)
    assert counter.queries == clf.rows == 0 and not ep.distorted_cells().size


def test_explain_flips_the_robust_classifier_and_says_how():
    e = explain_scheduled(bump_ecg(), QualityClassifier(), query_budget=500, seed=0, policy="greedy")
    assert e.adversarial is not None and e.adversarial.flipped and e.queries <= 500
    assert e.extra["findings"][0]["found_by"] in ("broad-noise", "greedy-scan pass")
    again = explain_scheduled(bump_ecg(), QualityClassifier(), query_budget=500, seed=0, policy="greedy")
    assert np.array_equal(e.adversarial.signal, again.adversarial.signal)


def test_scan_candidates_fit_the_share_and_need_a_measurement():
    ranked = np.arange(480)[::-1]
    cells = _scan_candidates(ranked, True, 200)  # a 12-lead grid: a sweep must leave room for several
    assert len(cells) == 50 and list(cells[:3]) == [479, 478, 477]
    assert len(_scan_candidates(np.arange(80), True, 200)) == 24  # two leads: the top 30%
    assert _scan_candidates(np.arange(80), False, 200) is None  # nothing measured: every cell
    assert len(_scan_candidates(np.arange(80), True, 10)) == 8


def test_a_broad_flip_is_thinned_out_to_the_critical_cell():
    # On the bump detector the capped scan does not flip within its share; the broad flip's cleanup then
    # leaves the one cell over the bump, at a high SNR.
    e = explain_scheduled(bump_ecg(), BumpClassifier(), query_budget=500, seed=0)
    assert e.adversarial is not None and e.adversarial.flipped and e.adversarial.snr_db > 15
    noisy = np.flatnonzero(np.abs(e.adversarial.signal - bump_ecg().signal).max(axis=0) > 1e-6) / FS
    assert noisy.size and abs(noisy.mean() - BUMP_AT_S) < 0.5


def test_with_little_room_broad_noise_comes_before_the_policy():
    e = explain_scheduled(bump_ecg(), QualityClassifier(), query_budget=150, seed=0)
    assert e.method == "policy" and e.queries <= 150
    assert e.adversarial is not None and e.adversarial.flipped
    assert e.extra["findings"][0]["found_by"] == "broad-noise"


def test_chunked_removal_thins_a_whole_record_flip_to_the_bump_in_few_queries():
    from ecglens.agent.cleanup import _FEW_CELLS, _remove_chunks

    clf = BumpClassifier()
    ep = _episode(clf)
    strongest = len(ep.levels_db) - 1
    for c in range(ep.grid.n_cells):
        ep.set_cell(c, 2, strongest)  # muscle everywhere hides the bump
    ep.probs = clf.predict_proba(ep.signal()[None])[0]
    assert ep.flipped
    counter = QueryCounter(clf, budget=60)
    _remove_chunks(ep, counter, 60, None)
    assert ep.flipped and counter.queries <= 60
    assert len(ep.distorted_cells()) <= _FEW_CELLS
    bump_cell = int(BUMP_AT_S / 0.25)
    assert set(ep.distorted_cells()) & {bump_cell - 1, bump_cell, bump_cell + 1}  # what is left covers the bump
