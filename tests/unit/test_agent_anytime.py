"""The anytime episode loop (`agent.anytime`): bounded actions, a budget-blind search whose smaller-budget answer is
the prefix of a larger one, and a best explanation after every step."""

from __future__ import annotations

import numpy as np
import pytest
from test_agent_support import BUMP_AT_S, FS, BumpClassifier, bump_ecg

from ecglens.agent.anytime import MAX_ROWS, AnytimeEpisode, Group, explain_anytime
from ecglens.agent.env import Episode, diagnosed_targets
from ecglens.classifiers.base import QueryCounter


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
    while run.legal()["split"]:
        run.step("split")
    assert run.counter.queries == clf.rows <= 9 and run.counter.calls == len(run.trace)
    assert all(s.queries <= MAX_ROWS for s in run.trace)
    assert not run.legal()["split"] and run.legal()["stop"]
    with pytest.raises(ValueError, match="not legal"):
        run.step("split")


def test_the_bump_is_pointed_at_within_ten_queries_and_every_step_leaves_a_valid_ranking():
    run, _ = _run(budget=10)
    seen = []
    while run.legal()["split"]:
        run.step("split")
        scores = run.cell_scores()
        assert scores.shape == (run.ep.grid.n_cells,) and np.all((scores > 0) & (scores <= 1))
        assert len(np.unique(scores)) == scores.size  # a strict ranking after every step
        seen.append(_top_hits(run))
    assert seen[-1]


def test_a_smaller_budget_gives_the_prefix_of_a_larger_ones_search():
    short, _ = _run(budget=12)
    long, _ = _run(budget=60)
    for run in (short, long):
        while run.legal()["split"]:
            run.step("split")
    n = len(short.trace)
    assert [s.to_dict() for s in short.trace] == [s.to_dict() for s in long.trace[:n]]
    assert len(long.trace) > n


def test_explain_anytime_returns_a_truthful_explanation_with_its_trace():
    clf = BumpClassifier()
    e = explain_anytime(bump_ecg(), clf, query_budget=16)
    assert e.method == "anytime-dropout" and e.adversarial is None and e.queries <= 16
    assert e.extra["trace"][-1]["action"] == "stop"
    assert sum(s["queries"] for s in e.extra["trace"]) == e.queries - 1  # all but the diagnosis
    top = e.segments[0]
    assert top.lead == "MLII" and top.start_s - 0.15 <= BUMP_AT_S <= top.end_s + 0.15
