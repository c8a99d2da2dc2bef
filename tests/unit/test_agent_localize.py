"""Coarse-to-fine dropout localisation (`agent.localize`) and quieter flips by redrawn noise (`agent.redraw`)."""

from __future__ import annotations

import numpy as np
import pytest
from test_agent_support import BUMP_AT_S, FS, BumpClassifier, bump_ecg

from ecglens.agent.env import Episode
from ecglens.agent.localize import Sensitivity, coarse_to_fine
from ecglens.agent.redraw import redraw_quieter
from ecglens.classifiers.base import QueryCounter
from ecglens.metrics import snr_db
from ecglens.targets import diagnosed_targets


def _episode(signal: np.ndarray, clf, seed: int = 0) -> Episode:
    probs = clf.predict_proba(signal[None])[0]
    if hasattr(clf, "rows"):
        clf.rows = 0  # count only what the code under test asks
    return Episode(signal, FS, probs, diagnosed_targets(probs, clf)[0], np.random.default_rng(seed))


def _hits(ep: Episode, cell: int, at_s: float, lead: int) -> bool:
    cell_lead, a, b = ep.grid.cell_times(cell)
    return cell_lead == lead and a - 0.15 <= at_s <= b + 0.15


def test_coarse_to_fine_finds_the_bump_cell_in_under_25_queries():
    clf = BumpClassifier()
    ep = _episode(bump_ecg().signal, clf)
    counter = QueryCounter(clf, budget=23)
    sens = coarse_to_fine(ep, counter, 23)
    assert sens.queries == counter.queries == clf.rows <= 23
    assert _hits(ep, int(np.argmax(sens.score)), BUMP_AT_S, lead=0)
    assert [lv["level"] for lv in sens.levels][:2] == ["blocks", "windows"]
    assert ep.probed.sum() > 0  # what the probes measured is in the policy's features


def test_coarse_to_fine_measures_nothing_when_a_level_does_not_fit():
    clf = BumpClassifier()
    ep = _episode(bump_ecg().signal, clf)
    sens = coarse_to_fine(ep, QueryCounter(clf, budget=50), 5)  # 10 blocks do not fit in 5 queries
    assert sens.queries == 0 and clf.rows == 0 and not sens.score.any()


def test_a_budget_short_of_the_widened_block_probes_the_windows_nearest_its_centre():
    # A budget split between several findings can leave fewer queries than the top block's six widened windows;
    # the explanation must still reach window resolution instead of stopping at 1-s blocks.
    clf = BumpClassifier()
    ep = _episode(bump_ecg().signal, clf)
    sens = coarse_to_fine(ep, QueryCounter(clf, budget=13), 13)  # 10 blocks + 3 windows
    assert sens.queries == 13
    windows = [lv for lv in sens.levels if lv["level"] == "windows"][0]["windows"]
    assert len(windows) == 3 and max(windows) - min(windows) == 2
    _, a, b = ep.grid.cell_times(int(np.argmax(sens.score)))  # no lead level fits: the time must hit
    assert a - 0.15 <= BUMP_AT_S <= b + 0.15


class _LeaningBump(BumpClassifier):
    """The bump detector, leaning on the rest of the record: with ``sign`` +1 the QRS complexes add to the finding
    (dropping them out lowers it), with -1 they count against it (dropping them out raises it)."""

    def __init__(self, sign: int, reference: np.ndarray):
        super().__init__()
        self.sign = sign
        self.reference = float(self._qrs_energy(reference[None])[0])

    @staticmethod
    def _qrs_energy(x: np.ndarray) -> np.ndarray:
        from scipy.ndimage import uniform_filter1d

        return ((x - uniform_filter1d(x, 9, axis=-1)) ** 2).sum(axis=(1, 2))

    def predict_proba(self, batch: np.ndarray) -> np.ndarray:
        x = np.asarray(batch, dtype=np.float64)
        bump = super().predict_proba(x)[:, 1]
        left = np.clip(self._qrs_energy(x) / self.reference, 0.0, 1.0)
        p = 0.7 * bump + 0.3 * (left if self.sign > 0 else 1.0 - left)
        return np.stack([1.0 - p, p], axis=1)


@pytest.mark.parametrize("sign", [1, -1])
def test_the_order_check_keeps_the_top_and_picks_the_order_that_drops_the_evidence_fastest(sign):
    # Which way a classifier leans once much of the record is flat is measured, not assumed: the same record
    # gets QRS complexes early in the order when they support the finding and late when they count against it.
    signal = bump_ecg().signal
    clf = _LeaningBump(sign, signal)
    ep = _episode(signal, clf)
    sens = coarse_to_fine(ep, QueryCounter(clf, budget=23), 23)
    assert sens.queries == clf.rows <= 23
    level = sens.levels[-1]
    assert level["level"] == "order" and level["candidates"] == ["estimate", "energy, high first", "energy, low first"]
    p = dict(zip(level["candidates"], level["probabilities"]))
    assert p[level["chosen"]] == min(p.values())
    if sign > 0:
        assert p["energy, high first"] < p["energy, low first"] and level["chosen"] != "energy, low first"
    else:
        assert p["energy, low first"] < p["energy, high first"] and level["chosen"] != "energy, high first"
    assert sorted(sens.order.tolist()) == list(range(ep.grid.n_cells))
    assert sens.order[0] == int(np.argmax(sens.score))  # the search's top cell stays first
    assert np.array_equal(np.argsort(-sens.ranked_scores(), kind="stable"), sens.order)


def test_the_order_check_leaves_room_for_the_blocks_alone_probes_at_larger_budgets():
    clf = BumpClassifier()
    ep = _episode(bump_ecg().signal, clf)
    levels = [lv["level"] for lv in coarse_to_fine(ep, QueryCounter(clf, budget=100), 100).levels]
    assert "alone" in levels and "order" not in levels
    assert "order" not in [lv["level"] for lv in coarse_to_fine(ep, QueryCounter(clf, budget=16), 16).levels]


def test_coarse_to_fine_halves_twelve_leads_down_to_the_bumped_one():
    clf = BumpClassifier()
    import neurokit2 as nk

    base = np.stack(
        [nk.ecg_simulate(duration=10, sampling_rate=int(FS), heart_rate=65, random_state=s) * 0.5 for s in range(12)]
    ).astype(np.float32)
    t = np.arange(base.shape[1]) / FS
    base[7] += np.exp(-0.5 * ((t - 3.4) / 0.08) ** 2).astype(np.float32)
    ep = _episode(base, clf)
    sens = coarse_to_fine(ep, QueryCounter(clf, budget=60), 60)
    assert sens.queries <= 60
    assert _hits(ep, int(np.argmax(sens.score)), 3.4, lead=7)
    assert [lv for lv in sens.levels if lv["level"] == "leads"][0]["best_leads"] == [7]


def test_with_room_every_block_is_also_probed_alone_and_ranks_the_cells_after_the_top():
    clf = BumpClassifier()
    ep = _episode(bump_ecg().signal, clf)
    small = coarse_to_fine(ep, QueryCounter(clf, budget=23), 23)
    assert "alone" not in [lv["level"] for lv in small.levels]  # a small budget keeps its queries for the leads
    clf.rows = 0
    sens = coarse_to_fine(ep, QueryCounter(clf, budget=100), 100)
    assert sens.queries == clf.rows <= 100
    alone = next(lv for lv in sens.levels if lv["level"] == "alone")
    assert len(alone["gains"]) == 10  # 10 one-second blocks, each put back alone into a dropped-out record
    assert int(np.argmax(alone["gains"])) == int(BUMP_AT_S)  # the bump's block restores the most
    assert _hits(ep, int(np.argmax(sens.score)), BUMP_AT_S, lead=0)
    assert "leads" in [lv["level"] for lv in sens.levels]  # the leads still get their half


def test_a_blocks_gain_alone_is_split_by_energy_and_added_to_the_scaled_estimate():
    from ecglens.agent.grid import make_grid
    from ecglens.agent.localize import _with_alone

    grid = make_grid(np.zeros((2, 2000), np.float32), FS)
    n_w = grid.n_windows
    blocks = [list(range(a, a + 4)) for a in range(0, n_w, 4)]
    est = np.zeros(grid.n_cells)
    est[[10, 11]] = [0.8, 0.4]
    energy = np.ones(grid.n_cells)
    energy[21] = 5.0  # lead 0, window 21: most of block 5's energy on that lead
    share = np.array([0.75, 0.25])  # lead 0 carries three quarters of what single-lead probes measured
    out = _with_alone(est, {5: 0.3, 2: -0.2}, blocks, grid, energy, share)
    assert out[10] == pytest.approx(1.0) and out[11] == pytest.approx(0.5)  # the estimate, over its largest
    assert out[21] == pytest.approx(1.0)  # the largest share of a gain alone counts as much as the top
    assert out[20] == pytest.approx(1 / 5) and out[0] == 0  # a negative gain adds nothing
    assert out[n_w + 21] == pytest.approx(0.25 / 4 / (0.75 * 5 / 8))  # lead 1: its share, split evenly
    ignored = _with_alone(est, {5: 0.3}, blocks, grid, energy, np.array([1.0, 0.0]))
    assert not ignored[n_w:].any()  # a lead the classifier does not read gets nothing
    assert _with_alone(est, {5: -0.1}, blocks, grid, energy, share) is est  # no block helps alone: unchanged


def test_ranked_scores_put_the_search_top_first_then_cells_by_their_own_drop():
    score = np.array([1.5, 3.2, 1.2, 3.1, 0.0])
    drop = np.array([0.4, 0.2, 0.5, 0.3, -0.1])
    ranked = Sensitivity(score, drop, queries=9).ranked_scores()
    # The search's top cell (1) stays first; the others follow their drop (2, 0, 3), the negative one last.
    assert list(np.argsort(-ranked)) == [1, 2, 0, 3, 4]
    assert ranked.max() == pytest.approx(1.0, abs=1e-3) and ranked.min() >= 0.0
    assert len(set(ranked.round(9))) == ranked.size
    # With an estimate, it decides the order after the top cell (ties keep the search order).
    est = np.array([0.1, 0.3, 0.1, 0.25, 0.0])
    ranked = Sensitivity(score, drop, queries=9, estimate=est).ranked_scores()
    assert list(np.argsort(-ranked)) == [1, 3, 0, 2, 4]
    # A checked order re-ranks the cells and hands them the same values rank by rank.
    checked = Sensitivity(score, drop, queries=9, estimate=est, order=np.array([1, 3, 4, 2, 0])).ranked_scores()
    assert list(np.argsort(-checked)) == [1, 3, 4, 2, 0]
    assert np.allclose(np.sort(checked), np.sort(ranked))


def test_the_weak_lead_of_the_top_window_ranks_below_the_next_windows_strong_lead():
    from ecglens.agent.grid import make_grid
    from ecglens.agent.localize import _estimate, _lead_shares

    grid = make_grid(np.zeros((2, 2000), np.float32), FS)  # 2 leads x 40 windows
    n_w = grid.n_windows
    leads = frozenset({0, 1})
    finest = {
        0 * n_w + 10: (0.6, frozenset({0}), 1),
        1 * n_w + 10: (0.05, frozenset({1}), 1),  # top window
        0 * n_w + 11: (0.5, leads, 1),
        1 * n_w + 11: (0.5, leads, 1),
    }  # next window
    groups = {c: (c,) for c in (10, n_w + 10)} | {c: (11, n_w + 11) for c in (11, n_w + 11)}
    est = _estimate(finest, {10: 0.7, 11: 0.5}, grid, groups, np.ones(grid.n_cells), *_lead_shares(finest, grid))
    assert est[0 * n_w + 10] > est[0 * n_w + 11] > est[1 * n_w + 10]


def test_a_blocks_drop_goes_to_its_windows_by_the_energy_dropout_removes():
    from ecglens.agent.grid import make_grid
    from ecglens.agent.localize import _estimate, _lead_shares

    grid = make_grid(np.zeros((2, 2000), np.float32), FS)
    n_w = grid.n_windows
    block = tuple(l * n_w + w for l in range(2) for w in range(4, 8))
    finest = {c: (0.8, frozenset({0, 1}), 4) for c in block}
    energy = np.ones(grid.n_cells)
    energy[[5, n_w + 5]] = 7.0  # window 5 holds the QRS complex
    est = _estimate(finest, {}, grid, {c: block for c in block}, energy, *_lead_shares(finest, grid))
    assert est[5] > est[4] == est[6] == est[7] > 0
    # The block's drop is only redistributed, not inflated: lead 0's cells still add up to its even share.
    assert est[[4, 5, 6, 7]].sum() == pytest.approx(0.8 * 0.5)
    nothing = np.zeros(grid.n_cells)  # dropout removes no energy anywhere
    flat = _estimate(finest, {}, grid, {c: block for c in block}, nothing, *_lead_shares(finest, grid))
    assert flat[4] == pytest.approx(0.8 * 0.5 / 4)


def _flipped_on_the_bump(clf) -> Episode:
    ep = _episode(bump_ecg().signal, clf)
    bump_window = int(BUMP_AT_S / 0.25)
    for level in range(len(ep.levels_db)):
        for kind in range(len(ep.kinds)):
            probs = ep.probe(clf, [[(bump_window, kind, level)]])[0]
            if ep.target.flipped(probs)[0]:
                ep.set_cell(bump_window, kind, level)
                ep.probs = probs
                return ep
    raise AssertionError("no single-cell flip on the bump")


def test_redraw_raises_the_snr_keeps_cells_and_kinds_and_the_flip():
    clf = BumpClassifier()
    ep = _flipped_on_the_bump(clf)
    cells, kinds, before = list(ep.distorted_cells()), ep.kind.copy(), ep.snr_db()
    counter = QueryCounter(clf, budget=200)
    rounds = redraw_quieter(ep, counter, 200, np.random.default_rng(3))
    assert rounds >= 1 and ep.snr_db() > before
    assert list(ep.distorted_cells()) == cells and (ep.kind == kinds).all()
    signal = ep.signal()
    assert ep.target.flipped(clf.predict_proba(signal[None]))[0]  # the classifier confirms the flip
    # The energy bookkeeping (levels x gains) is what the noise really holds.
    assert ep.snr_db() == pytest.approx(snr_db(ep.clean, signal), abs=0.05)
    assert counter.queries <= 200


def test_redraw_is_deterministic_for_a_seed():
    clf = BumpClassifier()
    a, b = _flipped_on_the_bump(clf), _flipped_on_the_bump(clf)
    redraw_quieter(a, QueryCounter(clf, budget=100), 100, np.random.default_rng(5))
    redraw_quieter(b, QueryCounter(clf, budget=100), 100, np.random.default_rng(5))
    assert np.array_equal(a.noise, b.noise) and a.snr_db() == b.snr_db()
