"""The anytime episode loop (`agent.anytime`): bounded actions, a budget-blind search whose smaller-budget answer is
the prefix of a larger one, and a best explanation after every step."""

from __future__ import annotations

import numpy as np
import pytest
from test_agent_support import BUMP_AT_S, FS, BumpClassifier, QualityClassifier, bump_ecg

from ecglens.agent.anytime import (
    BLOCK_WINDOWS,
    CLEANUP_QUERIES,
    MAX_ROWS,
    REORDER_ROWS,
    AnytimeEpisode,
    Group,
    _leaf_depth,
    explain_anytime,
)
from ecglens.agent.env import Episode
from ecglens.classifiers.base import QueryCounter
from ecglens.targets import diagnosed_targets


def _run(budget: int) -> tuple[AnytimeEpisode, BumpClassifier]:
    clf = BumpClassifier()
    x = bump_ecg().signal
    probs = clf.predict_proba(x[None])[0]
    clf.rows = 0
    ep = Episode(x, FS, probs, diagnosed_targets(probs, clf)[0], np.random.default_rng(0))
    return AnytimeEpisode(ep, QueryCounter(clf, budget=budget)), clf


def _top_hits(run: AnytimeEpisode) -> bool:
    lead, a, b = run.ep.grid.cell_times(int(np.argmax(run.cell_scores())))
    return lead == 0 and a - 0.15 <= BUMP_AT_S <= b + 0.15


def test_groups_halve_time_first_then_leads_and_end_at_one_cell():
    g = Group((0, 1), 0, 5)
    a, b = g.children()
    assert (a.w0, a.w1, b.w0, b.w1) == (0, 3, 3, 5) and a.leads == b.leads == (0, 1)
    one = Group((0, 1), 2, 3)
    assert [k.leads for k in one.children()] == [(0,), (1,)]
    assert Group((1,), 2, 3).children() is None
    assert sorted(g.cells(10)) == [0, 1, 2, 3, 4, 10, 11, 12, 13, 14]


def test_every_split_is_one_call_of_at_most_max_rows_and_the_budget_is_a_hard_cap():
    run, clf = _run(budget=9)
    batches: list[int] = []
    predict = clf.predict_proba
    clf.predict_proba = lambda b: (batches.append(len(b)), predict(b))[1]
    while run.legal()["localise"]:
        run.step("localise")
    assert run.counter.queries == clf.rows == sum(batches) <= 9 and run.counter.calls == len(batches)
    # the root's blocks in one call (a 10-s strip: 5 of 2 s), then the halves of one group a call
    assert batches[0] == -(-run.ep.grid.n_windows // BLOCK_WINDOWS) and set(batches[1:]) == {2}
    assert not run.legal()["localise"] and run.legal()["stop"]
    with pytest.raises(ValueError, match="not legal"):
        run.step("localise")


def test_an_ecg_root_splits_into_all_lead_blocks_measured_in_one_call():
    run, _ = _run(budget=60)
    run.step("localise")
    n_w = run.ep.grid.n_windows
    blocks = [g for _, _, _, g in run._frontier if g.leads == (0, 1) and g.w1 - g.w0 == BLOCK_WINDOWS]
    assert sorted((g.w0, g.w1) for g in blocks)[0] == (0, BLOCK_WINDOWS) and len(blocks) == n_w // BLOCK_WINDOWS - 1
    # the block holding the bump is the one bisected (its halves are in the frontier or resolved)
    lead, a, b = run.ep.grid.cell_times(int(np.argmax(run.cell_scores())))
    assert not any(g.w0 <= int(BUMP_AT_S / 0.25) < g.w1 for g in blocks)


def test_blocks_are_even_and_localise_goes_on_down_to_one_cell_on_any_strip_length():
    clf = BumpClassifier(window_s=10.25)
    x = bump_ecg(duration_s=10.25).signal  # 41 windows: 2-s blocks would leave a one-window stub
    probs = clf.predict_proba(x[None])[0]
    ep = Episode(x, FS, probs, diagnosed_targets(probs, clf)[0], np.random.default_rng(0))
    run = AnytimeEpisode(ep, QueryCounter(clf, budget=60))
    run.step("localise")
    blocks = [g for _, _, _, g in run._frontier if g.leads == (0, 1) and g.w1 - g.w0 >= BLOCK_WINDOWS - 1]
    assert ep.grid.n_windows == 41 and {g.w1 - g.w0 for g in blocks} <= {6, 7}
    assert run.depth.max() == _leaf_depth(ep.grid.n_windows, ep.grid.n_leads)  # a cell measured alone
    assert _top_hits(run)


def test_reorder_measures_the_deletion_curve_of_an_ecg_at_reorder_rows_points_in_one_call():
    run, _ = _run(budget=60)
    run.step("localise")
    calls = run.counter.calls
    step = run.step("reorder")
    assert step.queries == REORDER_ROWS < MAX_ROWS - 1 and run.counter.calls == calls + 1
    assert not run.legal()["reorder"]  # nothing to check again until the ranking changes


class _EnergyClassifier(BumpClassifier):
    """ "bump" rises with the strip's mean power: every block carries some evidence, its QRS complexes most."""

    def predict_proba(self, batch: np.ndarray) -> np.ndarray:
        x = np.asarray(batch, dtype=np.float64)
        self.rows += x.shape[0]
        p = 1.0 - np.exp(-np.square(x - np.median(x, axis=-1, keepdims=True)).mean(axis=(1, 2)) / 0.05)
        return np.stack([1.0 - p, p], axis=1)


def test_cells_of_one_measured_group_rank_by_the_energy_dropout_removes():
    clf = _EnergyClassifier()
    x = bump_ecg(bump_at_s=None).signal
    probs = clf.predict_proba(x[None])[0]
    ep = Episode(x, FS, probs, diagnosed_targets(probs, clf)[0], np.random.default_rng(0))
    n_w = ep.grid.n_windows
    run = AnytimeEpisode(ep, QueryCounter(clf, budget=n_w // BLOCK_WINDOWS))  # the blocks' call, nothing more
    run.step("localise")
    scores = run.cell_scores()
    # each block's cells share one measured drop, so the prior decides their order
    blocks = [g for _, _, _, g in run._frontier]
    assert len(blocks) == n_w // BLOCK_WINDOWS and all(g.w1 - g.w0 == BLOCK_WINDOWS for g in blocks)
    for block in blocks:
        cells = np.array(block.cells(n_w))
        assert len(np.unique(run.density[cells])) == 1 and run.density[cells][0] > 0
        by_score = cells[np.argsort(-scores[cells], kind="stable")]
        assert np.all(np.diff(run.energy[by_score]) <= 0)
    # across blocks too: a cell's value is its block's density times its energy over the block's mean energy,
    # at most 1 (a quiet cell of a strong block falls below the loud cells of a weaker one; none rises)
    cells = np.concatenate([g.cells(n_w) for g in blocks])
    means = np.concatenate([np.full(len(g.cells(n_w)), run.energy[g.cells(n_w)].mean()) for g in blocks])
    value = run.density[cells] * np.minimum(run.energy[cells] / means, 1.0)
    assert np.all(scores[cells] <= run.density[cells] / run.density.max() + 1e-3)
    higher = value[:, None] > value[None, :] * (1 + 1e-9)
    assert higher.any() and np.all((scores[cells][:, None] > scores[cells][None, :])[higher])


def test_the_bump_is_pointed_at_within_ten_queries_and_every_step_leaves_a_valid_ranking():
    run, _ = _run(budget=10)
    seen = []
    while run.legal()["localise"]:
        run.step("localise")
        scores = run.cell_scores()
        assert scores.shape == (run.ep.grid.n_cells,) and np.all((scores > 0) & (scores <= 1))
        assert len(np.unique(scores)) == scores.size  # a strict ranking after every step
        seen.append(_top_hits(run))
    assert seen[-1]


def test_a_smaller_budget_gives_the_prefix_of_a_larger_ones_search():
    short, _ = _run(budget=12)
    long, _ = _run(budget=60)
    for run in (short, long):
        while run.legal()["localise"]:
            run.step("localise")
    n = len(short.trace)
    # identical up to the last action, which the smaller budget cut short
    assert [s.to_dict() for s in short.trace[:-1]] == [s.to_dict() for s in long.trace[: n - 1]]
    assert short.trace[-1].action == long.trace[n - 1].action
    assert short.trace[-1].queries <= long.trace[n - 1].queries and len(long.trace) >= n
    assert long.counter.queries > short.counter.queries


def test_explain_anytime_returns_a_truthful_explanation_with_its_trace():
    clf = BumpClassifier()
    e = explain_anytime(bump_ecg(), clf, query_budget=16)
    assert e.method == "anytime" and e.queries <= 16
    assert sum(s["queries"] for s in e.extra["trace"]) == e.queries - 1  # all but the diagnosis
    top = e.segments[0]
    assert top.lead == "MLII" and top.start_s - 0.15 <= BUMP_AT_S <= top.end_s + 0.15


def test_the_flip_is_confirmed_minimal_and_named_by_the_action_that_found_it():
    clf = BumpClassifier()
    e = explain_anytime(bump_ecg(), clf, query_budget=200)
    assert e.adversarial is not None and e.adversarial.flipped
    p = clf.predict_proba(e.adversarial.signal[None])[0, 1]
    assert p < clf.thresholds["bump"]  # the classifier itself confirms the flip
    found_by = e.extra["findings"][0]["found_by"]
    actions = [s["action"] for s in e.extra["trace"]]
    assert found_by.split("+")[0] in actions and "cleanup" in actions


def test_every_action_is_one_bounded_call_and_the_budget_is_never_passed():
    clf = BumpClassifier()
    calls: list[int] = []
    original = clf.predict_proba

    def counting(batch):
        calls.append(len(batch))
        return original(batch)

    clf.predict_proba = counting
    e = explain_anytime(bump_ecg(), clf, query_budget=150)
    assert sum(calls) == e.queries <= 150
    assert max(calls) <= max(MAX_ROWS, CLEANUP_QUERIES)
    for step in e.extra["trace"]:
        # the two macro-actions: a bisection of two-row calls down one branch, and the cleanup
        limit = {"cleanup": CLEANUP_QUERIES, "localise": 2 * 12}.get(step["action"], MAX_ROWS)
        assert step["queries"] <= limit, step


def test_more_budget_never_gives_a_louder_flip_or_another_start_of_the_search():
    clf = BumpClassifier()
    small = explain_anytime(bump_ecg(), clf, query_budget=60, seed=3)
    large = explain_anytime(bump_ecg(), clf, query_budget=240, seed=3)
    a, b = small.extra["trace"], large.extra["trace"]
    n = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), len(a))
    assert n > 0 and a[:n] == b[:n]
    if n < len(a):  # they part only where the smaller budget cut an action short
        used = 1 + sum(s["queries"] for s in a[:n])
        assert used + b[n]["queries"] > 60 and a[n]["action"] == b[n]["action"]
    if small.adversarial is not None:
        assert large.adversarial is not None and large.adversarial.snr_db >= small.adversarial.snr_db - 1e-9


def test_the_same_record_model_and_seed_give_the_same_explanation():
    clf = BumpClassifier()
    a = explain_anytime(bump_ecg(), clf, query_budget=120, seed=5)
    b = explain_anytime(bump_ecg(), clf, query_budget=120, seed=5)
    assert a.extra["trace"] == b.extra["trace"]
    np.testing.assert_array_equal(a.saliency, b.saliency)
    np.testing.assert_array_equal(a.adversarial.signal, b.adversarial.signal)


def test_partial_segments_are_streamed_as_the_ranking_sharpens():
    clf = BumpClassifier()
    seen = []
    e = explain_anytime(bump_ecg(), clf, query_budget=40, partial=seen.append)
    assert seen and all(isinstance(s, list) for s in seen)
    last, final = seen[-1][0], e.segments[0]  # the last partial answer is the final ranking
    assert (last.lead, last.start_s, last.end_s) == (final.lead, final.start_s, final.end_s)


def test_a_classifier_that_local_noise_cannot_move_falls_to_broad_noise_over_every_cell():
    e = explain_anytime(bump_ecg(), QualityClassifier(), query_budget=150, seed=0)
    assert e.adversarial is not None and e.adversarial.flipped and e.queries <= 150
    assert e.extra["findings"][0]["found_by"].startswith("broad_")
