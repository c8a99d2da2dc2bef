"""The anytime episode loop (`agent.anytime`): bounded actions, a budget-blind search whose smaller-budget answer is
the prefix of a larger one, and a best explanation after every step."""

from __future__ import annotations

import numpy as np
import pytest
from test_agent_support import BUMP_AT_S, FS, BumpClassifier, QualityClassifier, bump_ecg

from ecglens.agent.anytime import (
    BEAT_AFTER_S,
    BEAT_BEFORE_S,
    BLOCK_WINDOWS,
    CLEANUP_QUERIES,
    MAX_ROWS,
    RESTART_SCANS,
    AnytimeEpisode,
    Group,
    _beat_groups,
    _between_beats,
    _leaf_depth,
    explain_anytime,
    hand_policy,
)
from ecglens.agent.env import Episode
from ecglens.agent.localize import ORDERS, head_size
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
    # the root's blocks in one call (a 10-s strip: 5 of about 2 s), then one group's parts a call: a block's
    # beats when the budget holds them all, else its halves
    assert batches[0] == -(-run.ep.grid.n_windows // BLOCK_WINDOWS) and all(2 <= b <= MAX_ROWS for b in batches[1:])
    assert not run.legal()["localise"] and run.legal()["stop"]
    with pytest.raises(ValueError, match="not legal"):
        run.step("localise")


def test_an_ecg_root_splits_into_all_lead_blocks_measured_in_one_call():
    run, _ = _run(budget=60)
    run.step("localise")
    n_w = run.ep.grid.n_windows
    blocks = sorted(run._blocks, key=lambda g: g.w0)
    assert len(blocks) == n_w // BLOCK_WINDOWS and all(g.leads == (0, 1) for g in blocks)
    assert [(g.w0, g.w1) for g in blocks] == list(zip([0] + [g.w1 for g in blocks[:-1]], [g.w1 for g in blocks]))
    assert blocks[-1].w1 == n_w
    # the block holding the bump is the one split (its parts are in the frontier or resolved), the others wait
    waiting = [g for _, _, _, g in run._frontier if g in run._blocks]
    assert len(waiting) == len(blocks) - 1 and not any(g.w0 <= int(BUMP_AT_S / 0.25) < g.w1 for g in waiting)
    assert _top_hits(run)


def test_blocks_are_about_even_and_localise_goes_on_down_to_one_cell_on_any_strip_length():
    clf = BumpClassifier(window_s=10.25)
    x = bump_ecg(duration_s=10.25).signal  # 41 windows: 2-s blocks from the start would leave a one-window stub
    probs = clf.predict_proba(x[None])[0]
    ep = Episode(x, FS, probs, diagnosed_targets(probs, clf)[0], np.random.default_rng(0))
    run = AnytimeEpisode(ep, QueryCounter(clf, budget=60))
    run.step("localise")
    sizes = [g.w1 - g.w0 for g in run._blocks]
    assert ep.grid.n_windows == 41 and sum(sizes) == 41 and min(sizes) >= BLOCK_WINDOWS // 2
    assert run.depth.max() == _leaf_depth(ep.grid.n_windows, ep.grid.n_leads)  # a cell measured alone
    assert _top_hits(run)


def test_an_ecg_reorder_checks_the_order_of_the_rest_in_one_call_of_a_row_per_order():
    run, _ = _run(budget=60)
    run.step("localise")
    calls = run.counter.calls
    step = run.step("reorder")
    assert step.queries == len(ORDERS) and run.counter.calls == calls + 1 and run.rest_order in ORDERS
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
    assert len(blocks) == n_w // BLOCK_WINDOWS and sum(g.w1 - g.w0 for g in blocks) == n_w
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


def test_block_edges_fall_between_beats_and_a_block_splits_into_its_beats():
    run, _ = _run(budget=60)
    grid = run.ep.grid
    peaks = grid.r_peaks / grid.fs
    even = np.round(np.linspace(0, grid.n_windows, -(-grid.n_windows // BLOCK_WINDOWS) + 1)).astype(int)
    edges = _between_beats(even, grid)
    assert edges[0] == 0 and edges[-1] == grid.n_windows and np.all(np.diff(edges) > 0)
    assert np.all(np.abs(edges - even) <= BLOCK_WINDOWS // 4)
    for e in edges[1:-1]:  # at 70 bpm every edge finds a boundary outside every beat's span
        t = grid.bounds[e, 0] / grid.fs
        assert not np.any((peaks - BEAT_BEFORE_S <= t) & (t < peaks + BEAT_AFTER_S)), (t, peaks)
    block = Group((0, 1), int(edges[1]), int(edges[2]))
    beats = _beat_groups(block, grid, MAX_ROWS)
    assert beats is not None and (beats[0].w0, beats[-1].w1) == (block.w0, block.w1)
    inside = [np.sum((grid.r_peaks >= grid.bounds[g.w0, 0]) & (grid.r_peaks < grid.bounds[g.w1 - 1, 1])) for g in beats]
    assert inside == [1] * len(beats)
    assert _beat_groups(block, grid, len(beats) - 1) is None  # a budget too small for every beat: halves


class _QuietClassifier(BumpClassifier):
    """ "bump" rises with the share of samples that move while within 0.1 mV of the baseline: a quiet cell is all
    such samples, a QRS complex holds few, so the quiet cells carry the evidence (a flat line does not move)."""

    def predict_proba(self, batch: np.ndarray) -> np.ndarray:
        x = np.asarray(batch, dtype=np.float64)
        self.rows += x.shape[0]
        near = np.abs(x - np.median(x, axis=-1, keepdims=True))[..., 1:] < 0.1
        moving = np.abs(np.diff(x, axis=-1)) > 1e-5
        p = 1.0 - np.exp(-(near & moving).mean(axis=(1, 2)) / 0.3)
        return np.stack([1.0 - p, p], axis=1)


@pytest.mark.parametrize(("classifier", "order"), [(_EnergyClassifier, ORDERS[1]), (_QuietClassifier, ORDERS[2])])
def test_reorder_checks_which_order_of_the_rest_drops_the_evidence_fastest(classifier, order):
    clf = classifier()
    x = bump_ecg(bump_at_s=None).signal
    probs = clf.predict_proba(x[None])[0]
    ep = Episode(x, FS, probs, diagnosed_targets(probs, clf)[0], np.random.default_rng(0))
    run = AnytimeEpisode(ep, QueryCounter(clf, budget=200))
    run.step("localise")
    before = np.sort(run.cell_scores())
    run.step("reorder")
    assert run.rest_order == order
    scores = run.cell_scores()
    ranked = np.argsort(-scores, kind="stable")
    energy = run.energy[ranked[head_size(scores.size) :]]
    assert np.all(np.diff(energy) <= 0) if order == ORDERS[1] else np.all(np.diff(energy) >= 0)
    assert np.allclose(np.sort(scores), before)  # the cells move, the values stay rank by rank


def test_the_first_reorder_after_a_flip_measures_every_block_alone_once():
    run, clf = _run(budget=400)
    while not (run.best is not None and run.cleaned):
        run.step(hand_policy(run))
    assert run.alone is None  # a reorder before the flip checks the order only
    run.step("widen")
    step = run.step("reorder")
    assert step.queries == len(run._blocks) + 1 + len(ORDERS) and run.alone is not None
    # the block holding the bump gains most when kept alone, and its gain is split over its cells
    bump = next(g for g in run._blocks if g.w0 <= int(BUMP_AT_S / 0.25) < g.w1)
    assert int(np.argmax(run.alone)) in bump.cells(run.ep.grid.n_windows)
    run.step("widen")
    assert run.step("reorder").queries == len(ORDERS)  # measured once


class _SecondLeadClassifier(BumpClassifier):
    """ "bump" rises with V1's slope power alone (every beat carries some, and a flat line none): MLII, the
    louder lead, carries no evidence; ``scale``: the power at which p = 1 - 1/e."""

    def __init__(self, scale: float):
        super().__init__()
        self.scale = scale

    def predict_proba(self, batch: np.ndarray) -> np.ndarray:
        x = np.asarray(batch, dtype=np.float64)
        self.rows += x.shape[0]
        p = 1.0 - np.exp(-np.square(np.diff(x[:, 1], axis=-1)).mean(axis=-1) / self.scale)
        return np.stack([1.0 - p, p], axis=1)


def test_after_localise_the_lead_the_classifier_does_not_read_ranks_below_the_one_it_reads():
    x = bump_ecg(bump_at_s=None).signal
    clf = _SecondLeadClassifier(scale=float(np.square(np.diff(x[1].astype(np.float64))).mean()))
    probs = clf.predict_proba(x[None])[0]
    ep = Episode(x, FS, probs, diagnosed_targets(probs, clf)[0], np.random.default_rng(0))
    n_w = ep.grid.n_windows
    run = AnytimeEpisode(ep, QueryCounter(clf, budget=60))
    assert np.all(run.lead_prior() == 1)  # nothing measured lead by lead yet
    run.step("localise")
    alone = (run.depth >= run._leaf).reshape(2, n_w)
    assert alone.all(axis=0).any()  # the leaf's window, measured lead by lead
    prior = run.lead_prior().reshape(2, n_w)
    assert np.all(prior.ravel()[run.group_leads == 1] == 1) and np.all(prior[1] == 1)  # one-lead groups: as measured
    assert prior[0][~alone[0]].max() < 0.1
    # in the blocks no probe split by lead, V1's cells now rank first, though MLII's carry more dropout energy
    rest = ~alone.any(axis=0)
    scores = run.cell_scores().reshape(2, n_w)
    assert run.energy.reshape(2, n_w)[0][rest].sum() > run.energy.reshape(2, n_w)[1][rest].sum()
    # (a window whose removal, both leads at once, did not lower the class was measured as carrying nothing: it
    # stays at the bottom on either lead)
    evidence = run.density.reshape(2, n_w)[1][rest] > 0
    assert evidence.mean() > 0.8
    assert scores[1][rest][evidence].min() > scores[0][rest].max()


def test_a_restarted_search_that_does_not_flip_gives_the_budget_back_to_the_best_flip():
    run, _ = _run(2000)
    while run.best is None or not run.cleaned:
        run.step(hand_policy(run))
    best = run.best.snr_db
    run.step("restart")
    scans = 0
    while not run.ep.flipped and run.legal()["scan"]:
        run.step("scan")
        scans += 1
    # the capped search finds nothing on this strip: it stops after RESTART_SCANS scans, not at the pool's end
    assert not run.ep.flipped and scans == RESTART_SCANS and len(run._scan_pool())
    # before any restart the scan is never cut short
    fresh, _ = _run(2000)
    fresh.step("localise")
    fresh.scan_idle = RESTART_SCANS
    assert fresh.legal()["scan"]
    assert run.best.snr_db >= best
