"""Coarse-to-fine sensitivity: where signal dropout moves the diagnosis, found in a few batched queries.

One probe *drops out* a group of cells (each cell replaced by a flat line at its own median: what a loose
electrode or a saturated amplifier records) and measures the drop of the diagnosed class's probability. Groups are
refined where the drop is largest, so a 10-s two-lead record is localised to one lead x 0.25-s cell in about 20
queries instead of the 40-80 a window-by-window or cell-by-cell scan needs (group testing).

Why dropout and not the five noise kinds: on DS1 windows with one PVC, masking with strong muscle noise moved the
built-in model's ventricular-ectopy probability most 0.25-0.5 s *after* the R-peak (a tall ectopic QRS stays
readable under noise; its T wave does not): docs/decisions/explainer-dropout-localisation.md. The noise kinds are what the agent then uses to find the minimal flipping distortion (`search.py`).

Levels (each probed in one batched classifier call):

1. *Blocks*: ``block_windows`` consecutive time windows x all leads (default 4 x 0.25 s = 1 s, about a beat).
2. *Windows*: each window of the top blocks, one window added on each side (a beat cut by a block edge), x all
   leads.
3. *Blocks alone*: each block kept while the rest of the record drops out, plus the record all dropped out, when
   what is left is at least twice that (explain budgets of about 60-119 and from about 270); these rank the cells
   after the top ones (`_with_alone`), not the search.
4. *Leads*: the top windows, lead by lead (leads halved recursively when there are more than four), for as
   many windows as the budget allows.
5. *Order*: three queries kept back from the levels above check the order of the cells after the first twentieth
   (`_checked_order`): the estimate's, or the energy dropout removes, high or low first, whichever lowers the
   probability most when the first half of them is dropped out with the top cells (budgets from 17 until the
   blocks-alone level runs, which measures the same partly flattened record).

The result, `Sensitivity`, keeps the search's order (cells measured at a finer level above the rest of their
block, blocks by their drop) for the search itself, and ranks cells for the explanation by their own estimated
share of the drop, with the search's top cell first. Every drop is also written
into the episode's probe features (`Episode.record_probe`), which is what the learned policy reads when it then
searches for the minimal flipping distortion.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ecglens.agent.env import Episode
from ecglens.baselines.cells import cell_energy, cell_mask, cell_medians
from ecglens.classifiers.base import QueryCounter

DROPOUT = "dropout"  # the probe's name in explanations (not one of the adversarial distortion kinds)
ORDER_QUERIES = 3  # one per order the last level checks (`_checked_order`)


@dataclass
class Sensitivity:
    """What the coarse-to-fine probes measured.

    score : float64 ``[n_cells]``, larger = more critical; only the order is meaningful across levels.
    drop : float64 ``[n_cells]``, the drop of the target probability (over p0) of the finest probe holding the
        cell, 0 when not probed.
    queries : classifier rows used.
    levels : per level, the groups probed and their drops (for the explanation's ``extra``).
    estimate : float64 ``[n_cells]`` or None, each cell's own share of the drop (`_estimate`).
    order : int ``[n_cells]`` or None, every cell in the order the order check chose (`_checked_order`); None:
        `own_order`.
    """

    score: np.ndarray
    drop: np.ndarray
    queries: int
    levels: list[dict] = field(default_factory=list)
    estimate: np.ndarray | None = None
    order: np.ndarray | None = None

    def own_order(self) -> np.ndarray:
        """Every cell, the search's most critical first, then by the estimate (the search order breaks ties)."""
        value = self.drop if self.estimate is None else self.estimate
        order = np.lexsort((-self.score, -value))
        if self.score.size:
            top = int(np.argmax(self.score))  # the finest, strongest measurement stays first
            order = np.concatenate([[top], order[order != top]])
        return order

    def ranked_scores(self) -> np.ndarray:
        """float64 ``[n_cells]`` in [0, 1]: the search's most critical cell first, then every other cell by its
        own estimated share of the drop (`estimate`; the search order breaks ties), valued by it.

        A cell's value is its estimate (its measured drop without one), capped by the value of every cell ranked
        above it, over the top cell's; a small rank term keeps values distinct. Ranking by the estimate rather
        than by the search order puts the weak lead of a strong window below the strong lead of the next
        window (chosen on DS1; the figures are in the commit history). When the order check chose another order
        (`order`), the cells take the same values rank by rank in that order.
        """
        n = self.score.size
        value = self.drop if self.estimate is None else self.estimate
        own = self.own_order()
        profile = np.minimum.accumulate(np.maximum(value[own], 0.0)) if n else np.zeros(0)
        order = own if self.order is None else np.asarray(self.order)
        out = np.zeros(n)
        out[order] = profile
        top_value = profile[0] if n else 0.0
        out = out / top_value if top_value > 0 else out
        ranks = np.empty(n)
        ranks[order] = np.arange(n)
        return np.clip(out, 0.0, 1.0) * (1 - 1e-3) + 1e-3 * (n - ranks) / max(n, 1)


def coarse_to_fine(
    ep: Episode,
    counter: QueryCounter,
    budget: int,
    *,
    block_windows: int = 4,
    top_blocks: int | None = None,
    alone: bool = True,
    check_order: bool = True,
    report: Callable[[int], None] | None = None,
) -> Sensitivity:
    """Measure the sensitivity of ``ep``'s diagnosis to dropout, group by group, in at most ``budget`` queries.

    Parameters
    ----------
    ep : Episode
        Probed from its current state (normally clean); not changed except its probe features.
    counter : QueryCounter
        Every probe goes through it.
    budget : int
        Queries this may use; it refines less rather than pass it (with fewer than one query per block it
        measures nothing).
    block_windows : int
        Windows per block (level 1). Default: 4.
    top_blocks : int or None
        Blocks refined at level 2. Default: None (as many of the top blocks as fit in half of what is left).
    alone : bool
        Probe every block alone (level 3) when the budget leaves room for it. Default: True.
    check_order : bool
        Keep `ORDER_QUERIES` back to check the order of the cells after the top ones (level 5) when the budget
        also holds the blocks and one block's own windows, and the blocks-alone level does not run. Default: True.
    report : callable or None
        Called with ``counter.queries`` after each batch. Default: None.
    """
    grid = ep.grid
    n_leads, n_w = grid.n_leads, grid.n_windows
    start = counter.queries
    score = np.zeros(grid.n_cells)
    drop = np.zeros(grid.n_cells)
    levels: list[dict] = []
    flat = cell_medians(grid, ep.clean)  # every cell's dropout, computed once for all probes
    dropout_energy = cell_energy(grid, ep.clean - flat)

    n_blocks = -(-n_w // block_windows)
    alone_room = 2 * (n_blocks + 1)  # the blocks-alone level runs when the leads keep as many queries as it takes
    # The order check stands in for the blocks-alone probes, which see the same partly flattened record, where the
    # budget is too small for them (the windows take at most half of what the blocks leave). Running both helped
    # one classifier and hurt the other on DS1 at budget 500, so there the queries stay with the leads.
    alone_fits = alone and (budget - n_blocks) // 2 >= alone_room
    reserve = (
        ORDER_QUERIES if check_order and not alone_fits and budget - ORDER_QUERIES >= n_blocks + block_windows else 0
    )

    def left() -> int:
        return counter.left_before(start + budget - reserve)

    finest: dict[int, tuple[float, frozenset, int]] = {}  # cell -> (drop, leads, windows) of its finest group
    group_of: dict[int, tuple[int, ...]] = {}  # cell -> the cells of that group
    whole: dict[int, float] = {}  # window -> drop with all its leads out

    def probe(rows: list[np.ndarray]) -> np.ndarray:
        """The classifier's probabilities for ``rows``, in one batched call, reported."""
        probs = ep.probe_rows(counter, np.stack(rows))
        if report:
            report(counter.queries)
        return probs

    def measure(groups: list[list[int]]) -> np.ndarray:
        """Drop (over p0) of the target probability when each group of cells drops out."""
        signal = ep.signal()
        probs = probe([np.where(cell_mask(grid, g), flat, signal) for g in groups])
        d = (ep.p - probs[:, ep.target.index]) / max(ep.p0, 1e-3)
        for g, v in zip(groups, d):
            leads = frozenset(int(c) // n_w for c in g)
            windows = len({int(c) % n_w for c in g})
            if windows == 1 and len(leads) == n_leads:
                whole[int(g[0]) % n_w] = float(v)
            cells = tuple(int(c) for c in g)
            for c in cells:
                finest[c] = (float(v), leads, windows)
                group_of[c] = cells
        for g, row in zip(groups, probs):
            # L2 the dropout changes, over the clean input's (the policy's per-L2 feature)
            l2 = float(np.sqrt(dropout_energy[g].sum())) / ep.signal_l2
            ep.record_probe(g, np.tile(row, (len(g), 1)), ep.p, [l2] * len(g))
        return d

    def cells_of(windows: Sequence[int], leads: Sequence[int] | None = None) -> list[int]:
        leads = range(n_leads) if leads is None else leads
        return [int(l) * n_w + int(w) for l in leads for w in windows]

    alone_gain: dict[int, float] = {}  # block -> gain of its probability when it is all that is left

    def done() -> Sensitivity:
        share, by_window = _lead_shares(finest, grid)
        est = _estimate(finest, whole, grid, group_of, dropout_energy, share, by_window)
        if alone_gain:
            est = _with_alone(est, alone_gain, blocks, grid, dropout_energy, share)
        sens = Sensitivity(score, drop, counter.queries - start, levels, est)
        if reserve and levels and counter.left_before(start + budget) >= reserve:
            sens.order, level = _checked_order(ep, probe, sens, flat, dropout_energy)
            levels.append(level)
            sens.queries = counter.queries - start
        return sens

    # 1. blocks
    blocks = [list(range(a, min(a + block_windows, n_w))) for a in range(0, n_w, block_windows)]
    if left() < len(blocks):
        return done()
    d_blocks = measure([cells_of(b) for b in blocks])
    levels.append(
        {"level": "blocks", "windows": [[b[0], b[-1] + 1] for b in blocks], "drops": d_blocks.round(4).tolist()}
    )
    order = np.argsort(-d_blocks, kind="stable")
    for rank, b in enumerate(order):  # rank 0 (largest drop) scores highest
        score[cells_of(blocks[b])] = 1.0 + (len(blocks) - rank) / len(blocks)
        drop[cells_of(blocks[b])] = d_blocks[b]

    # 2. windows of the top blocks, widened by one window each side
    def windows_of(n_top: int) -> list[int]:
        return sorted({w for b in order[:n_top] for w in range(max(0, blocks[b][0] - 1), min(n_w, blocks[b][-1] + 2))})

    n_top = top_blocks or max(1, next((k for k in range(len(blocks), 0, -1) if len(windows_of(k)) <= left() // 2), 1))
    windows = windows_of(n_top)
    if left() < len(windows):
        # Too few queries for the widened block (a small budget shared by several findings): probe the windows
        # nearest the top block's centre that fit, rather than leave the explanation at block resolution.
        centre = (blocks[order[0]][0] + blocks[order[0]][-1]) / 2
        windows = sorted(sorted(windows, key=lambda w: (abs(w - centre), w))[: left()])
    if not windows:
        return done()
    d_windows = measure([cells_of([w]) for w in windows])
    levels.append({"level": "windows", "windows": windows, "drops": d_windows.round(4).tolist()})
    ranked = [windows[i] for i in np.argsort(-d_windows, kind="stable")]
    base = score.max()
    for rank, w in enumerate(ranked):
        score[cells_of([w])] = base + 1.0 + (len(ranked) - rank) / len(ranked)
        drop[cells_of([w])] = d_windows[windows.index(w)]
    # 3. every block alone (the rest of the record dropped out), when the leads keep at least as many queries
    if alone and left() >= alone_room:
        rows = [np.where(cell_mask(grid, cells_of(b)), ep.signal(), flat) for b in blocks] + [flat]
        probs = probe(rows)[:, ep.target.index]
        gains = (probs[:-1] - probs[-1]) / max(ep.p0, 1e-3)
        alone_gain.update(enumerate(gains.tolist()))
        levels.append({"level": "alone", "gains": gains.round(4).tolist()})
    # 4. leads of the top windows, best window first, while the budget lasts
    if n_leads == 1:
        return done()
    for w in ranked:
        first = (
            [[l] for l in range(n_leads)]
            if n_leads <= 4
            else [list(range(n_leads // 2)), list(range(n_leads // 2, n_leads))]
        )
        if left() < len(first):
            break
        groups, best, depth = first, None, 0
        while True:
            d = measure([cells_of([w], g) for g in groups])
            depth += 1
            for g, v in zip(groups, d):
                for c in cells_of([w], g):
                    # Within the window, leads order by their own drop; the bonus stays below the gap to the
                    # next window (0.9 of it over all depths), so the window's rank keeps its place.
                    score[c] += 0.9 / len(ranked) * 0.5**depth * 0.5 * (1.0 + float(np.clip(v, -1, 1)))
                    drop[c] = v
            best = groups[int(np.argmax(d))]
            if len(best) == 1 or left() < 2:
                break
            groups = [best[: len(best) // 2], best[len(best) // 2 :]]
        levels.append({"level": "leads", "window": int(w), "best_leads": [int(l) for l in best]})
    return done()


def _checked_order(
    ep: Episode,
    probe: Callable[[list[np.ndarray]], np.ndarray],
    sens: Sensitivity,
    flat: np.ndarray,
    energy: np.ndarray,
) -> tuple[np.ndarray, dict]:
    """Every cell in the order that drops the evidence fastest, of three checked with one query each.

    The top twentieth of `Sensitivity.own_order` (what a reader meets first; the deletion metric's first step)
    stays first. The rest is ordered by the estimate, by the energy dropout removes high first (QRS complexes
    first), or low first; each order drops out the top cells and the first half of the rest, and the one whose
    probability of the diagnosed class is lowest wins (the estimate's on a tie).

    Why: the estimate ranks the cells after the top ones from probes of the whole record, and which way the
    classifier leans once much of the record is flat differs by classifier (energy high first is the better
    order for one and the worse for another; `benchmarks/deletion_headroom.py`), so the check measures it
    instead of assuming. Chosen on DS1; what was tried beside it is in the commit history.
    """
    grid = ep.grid
    candidates = rest_orders(sens.own_order(), energy)
    k = head_size(energy.size)
    half = k + (energy.size - k) // 2
    signal = ep.signal()
    rows = [np.where(cell_mask(grid, c[:half]), flat, signal) for c in candidates.values()]
    p = probe(rows)[:, ep.target.index]
    best = int(np.argmin(p))  # the first (the estimate) on a tie
    name = list(candidates)[best]
    return (
        candidates[name],
        {"level": "order", "candidates": list(candidates), "probabilities": p.round(4).tolist(), "chosen": name},
    )


ORDERS = ("estimate", "energy, high first", "energy, low first")


def head_size(n_cells: int) -> int:
    """The cells an order check keeps first: the top twentieth (the deletion metric's first step)."""
    return max(1, int(round(n_cells / 20)))


def rest_orders(own: np.ndarray, energy: np.ndarray) -> dict[str, np.ndarray]:
    """The orders an order check compares, by `ORDERS` name: ``own`` (every cell, most critical first) with its
    `head_size` first, then the rest as in ``own``, or by the energy dropout removes high first, or low first
    (``own`` breaks ties)."""
    k = head_size(own.size)
    head, rest = own[:k], own[k:]
    position = np.empty(own.size, dtype=int)
    position[own] = np.arange(own.size)
    keys = (np.zeros(rest.size), -energy[rest], energy[rest])
    return {name: np.concatenate([head, rest[np.lexsort((position[rest], key))]]) for name, key in zip(ORDERS, keys)}


def _lead_shares(finest: dict[int, tuple[float, frozenset, int]], grid) -> tuple[np.ndarray, dict]:
    """float64 ``[leads]`` summing to 1: each lead's mean share of its window's drop over the windows probed lead
    by lead (even shares where none was), and those probes' drops by window and lead."""
    n_leads, n_w = grid.n_leads, grid.n_windows
    single: dict[int, list[float]] = {}
    by_window: dict[int, dict[int, float]] = {}
    for c, (v, leads, windows) in finest.items():
        if len(leads) == 1 and windows == 1:
            by_window.setdefault(c % n_w, {})[c // n_w] = max(v, 0.0)
    for d in by_window.values():
        total = sum(d.values())
        if len(d) == n_leads and total > 0:
            for lead, v in d.items():
                single.setdefault(lead, []).append(v / total)
    share = np.array([np.mean(single[l]) if l in single else 1.0 / n_leads for l in range(n_leads)])
    share = share / share.sum() if share.sum() > 0 else np.full(n_leads, 1.0 / n_leads)
    return share, by_window


def _split(cells: Sequence[int], lead_weight: np.ndarray, energy: np.ndarray, n_w: int) -> np.ndarray:
    """Each of a group's ``cells``' share of the group's value: its lead's weight, split over that lead's cells by
    the energy dropout removes from each (evenly where it removes none)."""
    cells = np.asarray(cells)
    leads = cells // n_w
    out = np.empty(len(cells))
    for lead in np.unique(leads):
        mine = leads == lead
        e = energy[cells[mine]]
        total = float(e.sum())
        out[mine] = lead_weight[lead] * (e / total if total > 0 else 1.0 / mine.sum())
    return out


def _estimate(
    finest: dict[int, tuple[float, frozenset, int]],
    whole: dict[int, float],
    grid,
    group_of: dict[int, tuple[int, ...]],
    energy: np.ndarray,
    share: np.ndarray,
    by_window: dict[int, dict[int, float]],
) -> np.ndarray:
    """Each cell's own share of the drop: its finest group's drop split over its leads by the leads' measured
    shares (single-lead probes), so a weak lead of a strong window ranks below the strong lead of the next
    window, and within a lead over the group's windows by the energy dropout removes from each (a window holding
    a QRS complex carries more of what a classifier reads than a stretch of flat baseline; chosen on DS1 against
    an even split). ``share`` and ``by_window``: `_lead_shares`."""
    n_leads, n_w = grid.n_leads, grid.n_windows
    # Drops do not add up: single-lead probes of a window sum to kappa times its all-lead drop; coarser groups
    # are scaled by the same kappa so that extrapolated cells compare with measured ones.
    ratios = [
        sum(by_window[w].values()) / whole[w]
        for w in by_window
        if len(by_window[w]) == n_leads and whole.get(w, 0.0) > 0
    ]
    kappa = float(np.clip(np.median(ratios), 0.0, 1.0)) if ratios else 1.0
    est = np.zeros(grid.n_cells)
    parts: dict[tuple[int, ...], dict[int, float]] = {}  # each group's split, computed once for all its cells
    for c, (v, leads, _) in finest.items():
        group = group_of[c]
        if group not in parts:
            weight = share / max(share[list(leads)].sum(), 1e-9)
            parts[group] = dict(zip(group, _split(group, weight, energy, n_w)))
        est[c] = (1.0 if len(leads) == 1 else kappa) * v * parts[group][c]
    return est


def _with_alone(
    est: np.ndarray, gains: dict[int, float], blocks: list[list[int]], grid, energy: np.ndarray, lead_share: np.ndarray
) -> np.ndarray:
    """The estimate (relative to its largest) plus each cell's share of its block's gain alone (relative to the
    largest share), the gain split over leads by their measured shares (`_lead_shares`; a lead the classifier
    does not read gets none) and within a lead over windows by dropout energy.

    Why: a probe that drops a block out of the whole record and one that puts it back alone into a record
    dropped out are the two ends of the coalitions a Shapley value averages over; the deletion metric flattens
    more and more of the record, where what a block does alone matters (chosen on DS1; the figures are in the
    commit history).
    """
    n_w = grid.n_windows
    alone = np.zeros_like(est)
    for b, gain in gains.items():
        cells = [lead * n_w + w for lead in range(grid.n_leads) for w in blocks[b]]
        alone[cells] = max(gain, 0.0) * _split(cells, lead_share, energy, n_w)
    if alone.max() <= 0:
        return est
    scale = float(est.max()) if est.max() > 0 else 1.0
    return est / scale + alone / float(alone.max())
