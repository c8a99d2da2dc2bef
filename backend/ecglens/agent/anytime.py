"""The anytime episode loop: one finding of one record, explained step by step, each step one action.

- **State** (`AnytimeEpisode`): the cell grid (lead × time window), the `Episode` (per-cell signal features, what
  every probe answered, the current distortion set), the tree of dropout groups probed so far with the drop of the
  diagnosed class for each, the quietest flip so far, the queries used, the trace.
- **Actions** (`ACTIONS`), each one batched classifier call of at most `MAX_ROWS` rows, except ``localise`` and
  ``cleanup`` (short macro-actions of a few such calls; the cleanup at most `CLEANUP_QUERIES` rows in all):

  ``localise``   best-first bisection down one branch: drop out each half of the most promising group (time
                 halves down to one window, then leads), two rows a call, until a single cell is measured; an
                 ECG's root splits instead into all-lead blocks of about `BLOCK_WINDOWS` windows with edges
                 between beats, in one call, and a block into its beats (a 10-s two-lead strip at 70 bpm: 5 blocks
                 of about 2 s, then 2-3 beats, then calls of 2 rows);
  ``widen``      the same for the next `MAX_ROWS` // 2 groups of the frontier at once (breadth for the ranking);
  ``reorder``    an ECG: check in one call of 3 rows which order of the cells after the ranking's head drops
                 the evidence fastest, the measured one or by dropout energy high or low first
                 (`localize.rest_orders`; which way a classifier leans once much of the record is flat differs);
                 the first time after a flip, first measure every root block alone in one call (`ALONE_WEIGHT`);
                 an image or video: drop out the ranking's top k cells together for 15 values of k (the deletion
                 curve, measured): where removing one more chunk raises the probability, that chunk's cells go
                 to the end (a probe of a group alone cannot see what removing it together with the evidence
                 does). On an ECG that curve lowered the flat-line deletion AUC but raised ROAD's, the
                 metric dropout probes do not optimise;
  ``broad_top``  every distortion kind at the three strongest allowed levels over the 16 top-ranked cells;
  ``broad_all``  the same over every cell (a classifier that local noise cannot move);
  ``scan``       add distortion (kind cycling, mid level) to, or strengthen it on, the next top-ranked cells of
                 the sweep; a flip is committed, else the change with the best drop per unit of added energy;
  ``cleanup``    make the current flip minimal (`cleanup.minimize`);
  ``redraw``     one round of other realisations of the flip's noise at a lower amplitude (`redraw.redraw_round`);
  ``restart``    keep the best flip, start again from the clean input with every level capped one below the
                 strongest level of that flip (a quieter flip must spread over more, weaker cells); a restarted
                 search that has not flipped after `RESTART_SCANS` scans may scan no more;
  ``stop``.

  When nothing is legal but a flip was found (the search from a restart ran dry), the episode goes back to the
  quietest flip (``resume`` in the trace, no query) and the rest of the budget cleans and redraws it.

- **Budget-blind**: no action reads the total budget, only what was measured and the queries used so far, so the
  explanation at budget B is the prefix of the one at a larger budget: a larger budget never returns a coarser
  ranking or a louder flip (the quietest flip so far is kept).
- **Best explanation after every step** (`AnytimeEpisode.cell_scores`, `AnytimeEpisode.best`): cells ranked by the
  best evidence density of the dropout groups holding them (drop / size ** `DENSITY_POWER`; on an ECG times the
  cell's dropout energy over its group's mean, so the cells a probe has not separated rank QRS complexes first,
  across groups too, and times the lead prior, `AnytimeEpisode.lead_prior`), then by the drop of the finest
  group, its depth and the energy dropout removes; the quietest confirmed flip. This is what a job streams and
  what a smaller budget returns.
- **Policy**: any callable ``(episode) -> action name`` among the legal ones; `hand_policy` is a fixed order, the
  learned one is `action_policy.ActionPolicy` (trained with MaskablePPO, `train_actions.py`).
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ecglens.agent.cleanup import minimize
from ecglens.agent.env import Episode
from ecglens.agent.grid import SegmentGrid, cell_features, make_grid
from ecglens.agent.localize import ORDERS, head_size, rest_orders
from ecglens.agent.redraw import RedrawState, redraw_round
from ecglens.agent.result import EpisodeResult, build_explanation, segments_of
from ecglens.classifiers.base import Classifier, QueryCounter
from ecglens.classifiers.fit import input_leads
from ecglens.distortions import parse_kinds
from ecglens.ecg import Ecg
from ecglens.explanation import Explanation, Segment
from ecglens.targets import Target, diagnosed_targets, explained_window

MAX_ROWS = 16  # the largest batched call one action may make
CLEANUP_QUERIES = 64  # the cleanup macro-action's rows in all
BROAD_CELLS = 16  # cells of ``broad_top``'s region
BROAD_LEVELS = 3  # the strongest levels ``broad_*`` tries
MAX_RESTARTS = 3
# A restarted search that has not flipped after this many scans gives the rest of the budget back to redrawing
# the best flip (chosen on the train members: 2 / 6 / 12 / none; docs/agent.md#results)
RESTART_SCANS = 6
ACTIONS = ("localise", "widen", "reorder", "broad_top", "broad_all", "scan", "cleanup", "redraw", "restart", "stop")
DENSITY_POWER = 0.5  # between a group's total drop (0) and its drop per cell (1)
_EXPLAINS = 0.5  # a child whose drop is half its group's or more explains the group
_RISE = 0.05  # a rise of the probability by 5% of p0 when one more chunk goes demotes that chunk
_SCAN_SHARE = 0.3  # the sweep of ``scan`` covers the top 30% of cells (at least 8)
ENERGY_POWER = 1.0  # an ECG cell's evidence: its group's density times (energy / the group's mean energy) ** this
BLOCK_WINDOWS = 8  # an ECG's root splits into all-lead blocks of this many windows (2 s), measured in one call
# An ECG cell's evidence adds this share of its block's gain alone (measured once, at the first ``reorder`` after
# a flip): the later, finer splits otherwise pull the top off the beat onto a neighbour whose flat line moves the
# class. Chosen on the train members (.3 / .45 / .6 / .8: pointing at 500 rises to .6, then levels off; flat
# deletion rises a little with it; docs/agent.md#results)
ALONE_WEIGHT = 0.6
BEAT_BEFORE_S, BEAT_AFTER_S = 0.10, 0.30  # a beat's span around its R peak (QRS to T) that a block edge avoids


@dataclass(frozen=True)
class Group:
    """Cells ``lead * n_windows + w`` for ``lead in leads`` and ``w0 <= w < w1``."""

    leads: tuple[int, ...]
    w0: int
    w1: int

    def cells(self, n_windows: int) -> list[int]:
        return [lead * n_windows + w for lead in self.leads for w in range(self.w0, self.w1)]

    def children(self) -> tuple[Group, Group] | None:
        """Time halves while the group spans more than one window, then lead halves; None for one cell."""
        if self.w1 - self.w0 > 1:
            mid = (self.w0 + self.w1 + 1) // 2
            return Group(self.leads, self.w0, mid), Group(self.leads, mid, self.w1)
        if len(self.leads) > 1:
            half = (len(self.leads) + 1) // 2
            return Group(self.leads[:half], self.w0, self.w1), Group(self.leads[half:], self.w0, self.w1)
        return None


@dataclass
class Step:
    """One entry of the trace: the action, how many cells it touched, its queries, and the diagnosed class's
    probability after it (the lowest a probe saw, for dropout probes)."""

    action: str
    cells: int
    queries: int
    probability: float
    flipped: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "cells": self.cells,
            "queries": self.queries,
            "probability": round(float(self.probability), 4),
            "flipped": self.flipped,
        }


@dataclass
class Flip:
    """The quietest confirmed flip so far: the distortion state, its SNR and the action that found it."""

    state: dict
    snr_db: float
    found_by: str
    contributions: dict[int, float] = field(default_factory=dict)


@dataclass
class AnytimeEpisode:
    """One finding of one record: what has been probed, and the best explanation so far."""

    ep: Episode
    counter: QueryCounter
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(0))
    max_rows: int = MAX_ROWS
    trace: list[Step] = field(default_factory=list)

    def __post_init__(self) -> None:
        grid = self.ep.grid
        self.flat = grid.dropout_fill(self.ep.clean)  # what dropout puts in place of a cell
        self.energy = grid.cell_energy(self.ep.clean - self.flat)
        self.drop = np.zeros(grid.n_cells)  # drop (over p0) of the finest probed group holding each cell
        self.depth = np.zeros(grid.n_cells, dtype=int)
        # The best evidence density of any probed group holding each cell: drop / size ** DENSITY_POWER. A cell
        # keeps its group's evidence when its parts alone move the decision little (a beat read on every lead).
        self.density = np.zeros(grid.n_cells)
        # mean dropout energy of the group that set each cell's density (a cell's prior share of its evidence)
        self.group_energy = np.zeros(grid.n_cells)
        self.group_leads = np.zeros(grid.n_cells, dtype=int)  # leads of the group that set each cell's density
        self.demoted = np.zeros(grid.n_cells, dtype=int)  # rounds of ``reorder`` that sent the cell to the end
        self.rest_order = ORDERS[0]  # how an ECG's ranking orders the cells after its head (``reorder`` checks)
        self.alone: np.ndarray | None = None  # an ECG block's gain alone, per cell (``reorder`` after a flip)
        self._reordered = True  # the ranking has not changed since the last ``reorder`` (nothing to check yet)
        root = Group(tuple(range(grid.n_leads)), 0, grid.n_windows)
        self._frontier: list[tuple[float, int, int, Group]] = [(-np.inf, 0, 0, root)]  # (-drop, -depth, tie, group)
        self._tie = 1
        # An ECG's root splits into blocks and its ranking has a signal prior; images and video keep the
        # bisection's root and ranking (`vision_anytime` resolves cells its own way)
        self._ecg = isinstance(grid, SegmentGrid)
        self._leaf = _leaf_depth(grid.n_windows, grid.n_leads)
        self._blocks: set[Group] = set()  # an ECG root's blocks (each splits into its beats)
        # the last split's groups as measured: (group, its drop, its parent's drop (inf: the root), best sibling's)
        self.last_split: list[tuple[Group, float, float, float]] = []
        self.best: Flip | None = None
        self.top_level = len(self.ep.levels_db) - 1  # strongest level a distortion may take (``restart`` lowers it)
        self.broad_tried: set[str] = set()
        self.scan_steps = 0  # scans since the last restart (the kind cycles with it)
        self.scan_idle = 0  # scans in a row without a flip
        self._scan_seen: set[int] = set()  # cells of the current sweep already probed
        self.cleaned = False  # the current flip is minimal (nothing committed since the cleanup)
        self.redraw_state = RedrawState()
        self.redraw_idle = 0  # redraw rounds in a row that kept nothing
        self.restarts = 0
        self.found_by: str | None = None  # the action that made the current distortion flip

    # ---------------------------------------------------------------------------------------------- actions
    def room(self) -> int:
        r = self.counter.remaining
        return 1 << 30 if r is None else int(r)

    def legal(self) -> dict[str, bool]:
        """Which actions may be taken now (the mask a policy sees)."""
        room, ep = self.room(), self.ep
        flipped = ep.flipped
        distorted = bool(len(ep.distorted_cells()))
        can_restart = (
            self.best is not None
            and flipped
            and self.cleaned
            and self.restarts < MAX_RESTARTS
            and int(ep.level[ep.distorted_cells()].max(initial=0)) >= 1
        )
        return {
            "localise": bool(self._frontier) and room >= 2,
            "widen": len(self._frontier) >= 2 and room >= 4,
            "reorder": not self._reordered and room >= 4,
            "broad_top": not flipped and "broad_top" not in self.broad_tried and room >= 2,
            "broad_all": not flipped and "broad_all" not in self.broad_tried and room >= 2,
            "scan": not flipped
            and room >= 2
            and bool(len(self._scan_pool()))
            and not (self.restarts and self.scan_idle >= RESTART_SCANS),
            "cleanup": flipped and not self.cleaned and distorted and room >= 1,
            "redraw": flipped and self.cleaned and distorted and room >= 2,
            "restart": can_restart,
            "stop": True,
        }

    def step(self, action: str) -> Step:
        """Take ``action``; every classifier row goes through `counter`."""
        if not self.legal().get(action, False):
            raise ValueError(f"action {action!r} is not legal now ({self.legal()})")
        q0 = self.counter.queries
        cells, prob = getattr(self, "_" + action)()
        step = Step(action, cells, self.counter.queries - q0, prob, self.ep.flipped)
        self._keep_best(action)
        self.trace.append(step)
        return step

    def _stop(self) -> tuple[int, float]:
        return 0, self.ep.p

    # -- dropout (the ranking)
    def _localise(self) -> tuple[int, float]:
        touched, low = 0, self.ep.p0
        while self._frontier and self.room() >= 2:
            group = self._frontier[0][3]
            cells, p = self._split_groups(1)
            touched, low = max(touched, cells), min(low, p)
            blocks = self._ecg and group.w1 - group.w0 == self.ep.grid.n_windows  # the root's blocks: go on down
            if not blocks and any(kid.children() is None for kid, *_ in self.last_split):
                break  # a single cell is measured: the branch is resolved
        return touched, low

    def _children(self, group: Group) -> tuple[Group, ...]:
        """``group.children()``, except on an ECG: the root splits into all-lead blocks of about `BLOCK_WINDOWS`
        windows (a first level as wide as one call, like FeatureAblation's segments, where halves would mix a
        beat with its neighbours) with edges between beats, and a block into its beats."""
        n_w = self.ep.grid.n_windows
        n_blocks = -(-n_w // BLOCK_WINDOWS)
        if self._ecg and group.w1 - group.w0 == n_w and 1 < n_blocks <= self.max_rows:
            edges = np.round(np.linspace(0, n_w, n_blocks + 1)).astype(int)  # even blocks: no one-window stub
            edges = _between_beats(edges, self.ep.grid)
            self._blocks = {Group(group.leads, int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])}
            return tuple(sorted(self._blocks, key=lambda g: g.w0))
        if self._ecg and group in self._blocks:
            beats = _beat_groups(group, self.ep.grid, min(self.max_rows, self.room()))
            if beats:  # (a budget too small for every beat halves the block)
                return beats
        return group.children() or ()

    def _widen(self) -> tuple[int, float]:
        return self._split_groups(max(1, min(self.max_rows, self.room()) // 2))

    def _split_groups(self, n_groups: int) -> tuple[int, float]:
        n_w = self.ep.grid.n_windows
        popped = [heapq.heappop(self._frontier) for _ in range(min(n_groups, len(self._frontier)))]
        # (parent's drop, depth, child, its siblings' indices); leaves never enter the frontier
        kids, siblings = [], []
        for nd_, nd, _, g in popped:
            family = self._children(g)
            first = len(kids)
            kids += [(-nd_, -nd, kid) for kid in family]
            siblings += [[first + j for j in range(len(family)) if j != i] for i in range(len(family))]
        kids = kids[: self.room()]  # a budget too small for every block measures the first ones
        signal = self.ep.clean  # dropout is measured on the clean input, whatever the flip search has laid
        rows = np.where(self.ep.grid.cell_masks([k.cells(n_w) for _, _, k in kids]), self.flat, signal)
        probs = self.ep.probe_rows(self.counter, rows)
        drops = (self.ep.p0 - probs[:, self.ep.target.index]) / max(self.ep.p0, 1e-3)
        self.last_split = []
        for i, ((parent, depth, kid), d, row) in enumerate(zip(kids, drops, probs)):
            cells = kid.cells(n_w)
            sibling = max((float(drops[j]) for j in siblings[i] if j < len(drops)), default=-np.inf)
            self.last_split.append((kid, float(d), parent, sibling))
            own = float(d) / len(cells) ** DENSITY_POWER
            # A child keeps its group's evidence unless its sibling alone explains the group's drop (then the
            # evidence was the sibling's: a lead that does not carry the beat gets its own, small, measure).
            explained_elsewhere = np.isfinite(parent) and sibling >= _EXPLAINS * parent > d
            taken = np.full(len(cells), True) if explained_elsewhere else own >= self.density[cells]
            self.density[cells] = own if explained_elsewhere else np.maximum(self.density[cells], own)
            self.group_energy[np.asarray(cells)[taken]] = float(self.energy[cells].mean())
            self.group_leads[np.asarray(cells)[taken]] = len(kid.leads)
            self.drop[cells] = float(d)
            # with the wide root, a group's depth counts from its leaf, so a leaf is `_leaf_depth` deep as before
            depth = self._leaf - _leaf_depth(kid.w1 - kid.w0, len(kid.leads)) - 1 if self._ecg else depth
            self.depth[cells] = depth + 1
            self.ep.record_probe(cells, np.tile(row, (len(cells), 1)), self.ep.p0, [0.0] * len(cells))
            if kid.children() is not None:
                heapq.heappush(self._frontier, (-float(d), -(depth + 1), self._tie, kid))
                self._tie += 1
        self._reordered = False
        touched = sum(len(g.cells(n_w)) for _, _, _, g in popped)
        return touched, float(probs[:, self.ep.target.index].min())

    def _reorder(self) -> tuple[int, float]:
        ep = self.ep
        n = ep.grid.n_cells
        self._reordered = True
        if self._ecg:
            blocks = len(self._blocks)
            if self.best is not None and self.alone is None and blocks and self.room() >= blocks + 1 + len(ORDERS):
                self._measure_alone()
            return n, self._check_order()
        ranking = np.argsort(-self.cell_scores(), kind="stable")
        rows_n = min(self.max_rows - 1, self.room(), n - 1)
        ks = np.unique(np.round(np.linspace(0, n, rows_n + 2)[1:-1]).astype(int))
        rows = np.where(ep.grid.cell_masks([ranking[:k] for k in ks]), self.flat, ep.clean)
        p = ep.probe_rows(self.counter, rows)[:, ep.target.index]
        before = np.concatenate([[ep.p0], p[:-1]])
        starts = np.concatenate([[0], ks[:-1]])
        rise = (p - before) > _RISE * max(ep.p0, 1e-3)
        for a, b in zip(starts[rise], ks[rise]):
            self.demoted[ranking[a:b]] += 1
        return int(sum(b - a for a, b in zip(starts[rise], ks[rise]))), float(p.min())

    def _measure_alone(self) -> None:
        """Each root block kept alone in a record otherwise dropped out, and the record all dropped out, in one
        call: the gain of each block over the flat record, split over its cells by dropout energy (the other end
        of the coalitions a Shapley value averages over, as the staged search's blocks-alone level)."""
        ep, n_w = self.ep, self.ep.grid.n_windows
        blocks = [g.cells(n_w) for g in sorted(self._blocks, key=lambda g: g.w0)]
        rows = np.concatenate([np.where(ep.grid.cell_masks(blocks), ep.clean, self.flat), self.flat[None]])
        p = ep.probe_rows(self.counter, rows)[:, ep.target.index]
        alone = np.zeros(ep.grid.n_cells)
        for cells, gain in zip(blocks, (p[:-1] - p[-1]) / max(ep.p0, 1e-3)):
            e = self.energy[cells]
            alone[cells] = max(float(gain), 0.0) * (e / e.sum() if e.sum() > 0 else 1.0 / len(cells))
        self.alone = alone if alone.max() > 0 else None

    def _check_order(self) -> float:
        """Which order of the cells after the ranking's head drops the evidence fastest, one row each: drop out the
        head and half of the rest in each of `localize.rest_orders` (the classifier, not a prior, says whether
        the cells dropout removes most from come first once much of the record is flat). Returns the lowest
        probability seen."""
        ep = self.ep
        self.rest_order = ORDERS[0]
        own = np.argsort(-self.cell_scores(), kind="stable")
        orders = rest_orders(own, self.energy)
        k = head_size(own.size)
        half = k + (own.size - k) // 2
        rows = np.where(ep.grid.cell_masks([order[:half] for order in orders.values()]), self.flat, ep.clean)
        p = ep.probe_rows(self.counter, rows)[:, ep.target.index]
        self.rest_order = ORDERS[int(np.argmin(p))]  # the measured evidence's own order on a tie
        return float(p.min())

    # -- flips
    def _broad_top(self) -> tuple[int, float]:
        return self._broad("broad_top", np.argsort(-self.cell_scores(), kind="stable")[:BROAD_CELLS])

    def _broad_all(self) -> tuple[int, float]:
        return self._broad("broad_all", np.arange(self.ep.grid.n_cells))

    def _broad(self, name: str, region: np.ndarray) -> tuple[int, float]:
        ep = self.ep
        self.broad_tried.add(name)
        levels = range(max(0, self.top_level - BROAD_LEVELS + 1), self.top_level + 1)
        configs = [(k, lv) for lv in levels for k in range(len(ep.kinds))][: min(self.max_rows, self.room())]
        rows, energy = [], []
        for k, lv in configs:
            noise = ep.region_noise(region, k, lv)
            rows.append(ep.clean + noise)
            energy.append(float(np.square(noise, dtype=np.float64).sum()))
        probs = ep.probe_rows(self.counter, np.stack(rows))
        ok = np.flatnonzero(ep.target.flipped(probs))
        if ok.size:
            best = int(ok[np.lexsort((probs[ok, ep.target.index], np.asarray(energy)[ok]))[0]])
            k, lv = configs[best]
            ep.restore_clean()
            for c in region:
                ep.set_cell(int(c), k, lv)
            ep.probs = probs[best]
            self._committed(name)
        return len(region), float(probs[:, ep.target.index].min())

    def _scan_pool(self) -> np.ndarray:
        """The sweep's cells not yet probed in it that can still take (more) distortion."""
        ep = self.ep
        n = ep.grid.n_cells
        k = int(min(n, max(8, np.ceil(_SCAN_SHARE * n))))
        ranked = np.argsort(-self.cell_scores(), kind="stable")[:k]
        open_ = [int(c) for c in ranked if ep.kind[c] < 0 or ep.level[c] + 1 <= self.top_level]
        pool = [c for c in open_ if c not in self._scan_seen]
        if not pool and open_:
            self._scan_seen.clear()  # a new sweep
            pool = open_
        return np.asarray(pool, dtype=int)

    def _scan(self) -> tuple[int, float]:
        ep = self.ep
        level = min(self.top_level, (len(ep.levels_db) - 1) // 2)
        kind = self.scan_steps % len(ep.kinds)
        self.scan_steps += 1
        pool = self._scan_pool()[: max(1, min(self.max_rows, self.room()) - 1)]  # one row kept for a pair
        changes = []
        for c in pool:
            c = int(c)
            self._scan_seen.add(c)
            if ep.kind[c] < 0:
                changes.append([(c, kind, level)])
            else:
                changes.append([(c, int(ep.kind[c]), int(ep.level[c]) + 1)])
        base_p, base_e = ep.p, float(ep.energies().sum())
        probs = ep.probe(self.counter, changes)
        d_e = np.array([ep.energy_after(ch) - base_e for ch in changes])
        ep.record_probe([int(c) for c in pool], probs, base_p, np.sqrt(np.maximum(d_e, 0)) / ep.signal_l2)
        flips = np.flatnonzero(ep.target.flipped(probs))
        if flips.size:
            best = int(flips[np.argmin(d_e[flips])])
            ep.commit(changes[best], probs[best])
            self._committed("scan")
            self.scan_idle = 0
            return len(pool), ep.p
        self.scan_idle += 1
        gains = base_p - probs[:, ep.target.index]
        ratio = gains / np.maximum(d_e, 1e-12)
        order = [int(i) for i in np.argsort(-ratio, kind="stable") if gains[i] > 0]
        if not order:
            order = [int(np.argmax(gains))]  # nothing helped: still move, or the next sweep repeats this one
        pair = order[:2] if len(order) > 1 and gains[order[1]] >= 0.5 * gains[order[0]] and self.room() >= 1 else []
        if pair:
            together = changes[pair[0]] + changes[pair[1]]
            p_pair = ep.probe(self.counter, [together])[0]
            if p_pair[ep.target.index] <= probs[pair[0], ep.target.index]:
                ep.commit(together, p_pair)
                if ep.flipped:
                    self._committed("scan")
                return len(pool), ep.p
        ep.commit(changes[order[0]], probs[order[0]])
        return len(pool), ep.p

    def _cleanup(self) -> tuple[int, float]:
        n = len(self.ep.distorted_cells())
        contributions = minimize(self.ep, self.counter, self.counter.queries + CLEANUP_QUERIES)
        self.cleaned = True
        self._contributions = contributions
        return n, self.ep.p

    def _redraw(self) -> tuple[int, float]:
        n = len(self.ep.distorted_cells())
        kept = redraw_round(self.ep, self.counter, min(self.max_rows, self.room()), self.rng, self.redraw_state)
        self.redraw_idle = 0 if kept else self.redraw_idle + 1
        if kept and self.found_by and not self.found_by.endswith("+redraw"):
            self.found_by += "+redraw"
        return n, self.ep.p

    def _restart(self) -> tuple[int, float]:
        ep = self.ep
        self.top_level = int(ep.level[ep.distorted_cells()].max()) - 1
        self.restarts += 1
        ep.restore_clean()
        self.broad_tried.clear()
        self.scan_steps = self.scan_idle = 0
        self._scan_seen.clear()
        self.cleaned = False
        self.found_by = None
        self.redraw_state = RedrawState()
        self.redraw_idle = 0
        return 0, ep.p

    def resume_best(self) -> bool:
        """Go back to the quietest flip when the search from the current state has nothing left to try (every
        level capped, broad noise tried, the ranking resolved), so the rest of the budget redraws it quieter;
        False when there is no flip to go back to or the episode already holds one."""
        if self.best is None or self.ep.flipped:
            return False
        self.ep.restore(self.best.state)
        self.cleaned = False  # the kept flip may predate a cleanup; a cleanup of a minimal flip changes nothing
        self.redraw_state = RedrawState()
        self.redraw_idle = 0
        self.found_by = self.best.found_by
        self.trace.append(Step("resume", 0, 0, self.ep.p, True))
        return True

    def _committed(self, action: str) -> None:
        self.cleaned = False
        self.found_by = action
        self._contributions = {}

    def _keep_best(self, action: str) -> None:
        ep = self.ep
        if not ep.flipped or not len(ep.distorted_cells()):
            return
        snr = ep.snr_db()
        if self.best is None or snr > self.best.snr_db + 1e-9:
            self.best = Flip(ep.snapshot(), snr, self.found_by or action, dict(getattr(self, "_contributions", {})))
        elif action == "cleanup" and self.best is not None and abs(snr - self.best.snr_db) <= 1e-9:
            self.best.contributions = dict(getattr(self, "_contributions", {}))

    # ---------------------------------------------------------------------------------------------- best so far
    def cell_scores(self) -> np.ndarray:
        """float64 ``[n_cells]`` in (0, 1]: the ranking of the best explanation so far (see the module notes)."""
        n = self.drop.size
        density = self.density
        if self.alone is not None:  # what each block does alone, beside what removing it does
            density = density / max(float(density.max()), 1e-12) + ALONE_WEIGHT * self.alone / self.alone.max()
        if self._ecg:  # a lead the classifier reads less counts less where no probe has split the leads
            density = density * self.lead_prior()
        if ENERGY_POWER and self._ecg:  # the cells a probe has not separated: QRS complexes first
            # a prior only lowers: a quiet cell falls below a louder one of a weaker group, but no cell rises
            # above what its group measured (a lead the classifier does not read stays below the threshold)
            density = density * np.minimum(self.energy_share(), 1.0) ** ENERGY_POWER
        order = np.lexsort((-self.energy, -self.depth, -self.drop, -density, self.demoted))
        scores = np.empty(n)
        top = max(float(density[order[0]]), 1e-9) if n else 1.0
        value = np.clip(density[order] / top, 0.0, 1.0)
        value = np.minimum.accumulate(value)  # never above a cell ranked higher
        if self._ecg and self.rest_order != ORDERS[0] and n:
            order = rest_orders(order, self.energy)[self.rest_order]  # the values stay rank by rank
        scores[order] = value * (1 - 1e-3) + 1e-3 * (n - np.arange(n)) / max(n, 1)
        return scores

    def lead_prior(self) -> np.ndarray:
        """float64 ``[n_cells]`` in [0, 1]: how much a cell counts whose evidence density was set by a group of
        several leads: ``n_leads`` times its lead's share of the drop over the windows whose every lead was
        measured alone, capped at 1 (a prior only lowers); 1 for a cell whose density a one-lead group set, and
        for every cell until such a window exists. A leaf of the bisection measures its window lead by lead, so
        after ``localise`` a two-lead strip knows which lead carries the evidence, and the other lead's cells of
        the groups no probe split by lead rank below the read lead's."""
        grid = self.ep.grid
        n_leads, n_w = grid.n_leads, grid.n_windows
        if n_leads < 2:
            return np.ones(grid.n_cells)
        every_lead_alone = (self.depth >= self._leaf).reshape(n_leads, n_w).all(axis=0)  # windows
        drops = np.maximum(self.drop.reshape(n_leads, n_w)[:, every_lead_alone], 0.0)
        total = float(drops.sum())
        if total <= 0:
            return np.ones(grid.n_cells)
        prior = np.minimum(1.0, n_leads * drops.sum(axis=1) / total)
        return np.where(self.group_leads > 1, np.repeat(prior, n_w), 1.0)

    def energy_share(self) -> np.ndarray:
        """float64 ``[n_cells]``: the energy dropout removes from each cell over the mean of the group that set its
        density (1 where no group has): how much of its group's content a cell holds."""
        return np.where(self.group_energy > 0, self.energy / np.maximum(self.group_energy, 1e-12), 1.0)

    def features(self) -> np.ndarray:
        """float32 ``[len(FEATURES)]``: what a policy sees (budget-blind: queries used, never the budget)."""
        ep = self.ep
        q = self.counter.queries
        n = ep.grid.n_cells
        front = [-f[0] for f in self._frontier if np.isfinite(f[0])]
        resolved = float((self.depth >= _leaf_depth(ep.grid.n_windows, ep.grid.n_leads)).mean())
        best_snr = self.best.snr_db if self.best is not None else -20.0
        return np.array(
            [
                np.log1p(q) / np.log(501.0),
                float(ep.flipped),
                float(self.best is not None),
                np.clip(best_snr, -20.0, 40.0) / 40.0,
                float(self.cleaned),
                np.clip(ep.p / max(ep.p0, 1e-3), 0.0, 2.0),
                np.clip(max(front, default=0.0), -1.0, 2.0),
                float(np.clip(self.drop.max(initial=0.0), -1.0, 2.0)),
                resolved,
                min(1.0, len(self._frontier) / max(1, n)),
                float(self._reordered),
                min(1.0, self.scan_idle / 8.0),
                min(1.0, self.scan_steps / 16.0),
                float("broad_top" in self.broad_tried),
                float("broad_all" in self.broad_tried),
                min(1.0, self.redraw_idle / 4.0),
                self.restarts / MAX_RESTARTS,
                self.top_level / max(1, len(ep.levels_db) - 1),
                float((ep.kind >= 0).mean()),
                np.log(n) / 7.0,
                np.log(ep.grid.n_leads) / 3.0,
                float(ep.target.multilabel),
            ],
            dtype=np.float32,
        )

    def result(self) -> EpisodeResult:
        """The best explanation so far as an `EpisodeResult` (the episode is left at the quietest flip)."""
        contributions: dict[int, float] = {}
        found_by = None
        if self.best is not None:
            self.ep.restore(self.best.state)
            contributions, found_by = self.best.contributions, self.best.found_by
        elif self.ep.flipped is False and len(self.ep.distorted_cells()):
            self.ep.restore_clean()  # an unfinished search leaves no partial distortion in the answer
        probe_kind = {int(c): int(self.ep.kind[c]) for c in self.ep.distorted_cells()}
        return EpisodeResult(
            self.ep,
            self.cell_scores(),
            list(self.ep.order),
            contributions,
            probe_kind,
            self.counter.queries,
            extra={
                "target": self.ep.target.label,
                "flipped": self.ep.flipped,
                "snr_db": self.ep.snr_db() if self.ep.flipped else None,
                "found_by": found_by,
                "localization": [s.to_dict() for s in self.trace if s.action in _RANKING_ACTIONS],
            },
        )


FEATURES = (
    "log_queries_used",
    "flipped",
    "has_flip",
    "best_snr",
    "cleaned",
    "p_over_p0",
    "frontier_top_drop",
    "top_drop",
    "resolved_share",
    "frontier_share",
    "reordered",
    "scan_idle",
    "scan_steps",
    "broad_top_tried",
    "broad_all_tried",
    "redraw_idle",
    "restarts",
    "level_cap",
    "distorted_share",
    "log_cells",
    "log_leads",
    "multilabel",
)


_RANKING_ACTIONS = ("localise", "widen", "reorder")


def _between_beats(edges: np.ndarray, grid: SegmentGrid) -> np.ndarray:
    """Move each inner block edge by up to `BLOCK_WINDOWS` // 4 windows to a window boundary outside every beat
    (``[R - BEAT_BEFORE_S, R + BEAT_AFTER_S)``), the nearest such to the even edge: a block edge through a
    beat splits its evidence between two blocks, and neither alone measures it."""
    peaks = np.asarray(grid.r_peaks, dtype=float)
    if peaks.size == 0 or len(edges) < 3:
        return edges
    starts = grid.bounds[:, 0].astype(float)
    before, after = BEAT_BEFORE_S * grid.fs, BEAT_AFTER_S * grid.fs
    shift = max(1, BLOCK_WINDOWS // 4)
    out = edges.copy()
    for i in range(1, len(edges) - 1):
        lo, hi = max(out[i - 1] + 1, edges[i] - shift), min(edges[i + 1] - 1, edges[i] + shift)
        cands = np.arange(lo, hi + 1)
        s = starts[cands][:, None]
        # signed clearance from the nearest beat's span: > 0 outside every beat
        clearance = np.maximum(peaks[None, :] - before - s, s - peaks[None, :] - after).min(axis=1)
        best = np.lexsort((np.abs(cands - edges[i]), -np.minimum(clearance, 0.0)))[0]
        out[i] = int(cands[best])
    return out


def _beat_groups(block: Group, grid: SegmentGrid, max_groups: int) -> tuple[Group, ...] | None:
    """``block`` cut into one group per beat, each from the end of the previous beat's span to the end of its own
    (the gap before a beat holds its P wave; a premature beat's group stays short, the pause after it goes to
    the next beat), at the nearest window boundaries, or mid-gap where the next beat's span starts sooner;
    None when it holds fewer than two beats or more than ``max_groups``."""
    starts = grid.bounds[:, 0].astype(float)
    a, b = starts[block.w0], float(grid.bounds[block.w1 - 1, 1])
    peaks = np.asarray(grid.r_peaks, dtype=float)
    peaks = peaks[(peaks >= a) & (peaks < b)]
    if not 2 <= peaks.size <= max_groups:
        return None
    ends = peaks[:-1] + BEAT_AFTER_S * grid.fs
    gaps = np.minimum(ends, (ends + peaks[1:] - BEAT_BEFORE_S * grid.fs) / 2)
    inner = np.arange(block.w0 + 1, block.w1)
    cuts = sorted({int(inner[np.argmin(np.abs(starts[inner] - g))]) for g in gaps} if inner.size else set())
    edges = [block.w0, *cuts, block.w1]
    if len(edges) < 3:
        return None
    return tuple(Group(block.leads, w0, w1) for w0, w1 in zip(edges[:-1], edges[1:]))


def _leaf_depth(n_windows: int, n_leads: int) -> int:
    return int(np.ceil(np.log2(max(1, n_windows)))) + int(np.ceil(np.log2(max(1, n_leads))))


# ---------------------------------------------------------------------------------------------------- policies
def first_legal(episode: AnytimeEpisode, order: Sequence[str]) -> str:
    """The first action of ``order`` that is legal now, else ``stop`` (how a fixed order becomes a policy)."""
    legal = episode.legal()
    return next((action for action in order if legal.get(action)), "stop")


def hand_policy(episode: AnytimeEpisode) -> str:
    """A fixed order over the actions: localise to one cell, broad noise, clean up; then widen the ranking and
    look for quieter flips in turn (redraw, a restart when redraws stall)."""
    return first_legal(episode, _hand_order(episode))


def _hand_order(episode: AnytimeEpisode) -> tuple[str, ...]:
    ep = episode.ep
    if ep.flipped and not episode.cleaned:
        return ("cleanup",)
    if episode.depth.max(initial=0) < _leaf_depth(ep.grid.n_windows, ep.grid.n_leads):
        return ("localise", "widen")
    if not episode._reordered:
        return ("reorder",)
    widen_turn = sum(s.action == "widen" for s in episode.trace) * 2 < len(episode.trace) - 10
    if ep.flipped:
        if episode.redraw_idle >= 4:
            return ("restart", "widen", "redraw")
        return ("widen", "redraw") if widen_turn else ("redraw", "widen")
    if episode.best is None:
        return ("broad_top", "broad_all", "scan", "widen", "localise")
    return ("widen", "scan", "broad_top", "broad_all") if widen_turn else ("scan", "broad_top", "broad_all", "widen")


def run_episode(
    episode: AnytimeEpisode,
    policy: Callable[[AnytimeEpisode], str],
    on_step: Callable[[AnytimeEpisode, Step], None] | None = None,
) -> AnytimeEpisode:
    """Let ``policy`` act until it stops, no action is legal or the budget is spent."""
    while True:
        legal = episode.legal()
        if not any(v for k, v in legal.items() if k != "stop"):
            if episode.resume_best():
                continue
            break
        action = policy(episode)
        if action == "stop":
            episode.step("stop")
            break
        step = episode.step(action)
        if on_step:
            on_step(episode, step)
    return episode


def run_findings(
    targets: Sequence[Target],
    counter: QueryCounter,
    new_episode: Callable[[Target, np.random.Generator], Episode],
    policy: Callable[[AnytimeEpisode], str],
    seed: int,
    query_budget: int,
    progress: Callable[[float], None] | None = None,
    on_ranking: Callable[[AnytimeEpisode], None] | None = None,
    episode_type: type[AnytimeEpisode] | None = None,
) -> list[EpisodeResult]:
    """One anytime episode per finding, on any modality: ``new_episode(target, rng)`` makes the `Episode`.

    The first (most probable) finding gets all but a small reserve of the budget (a fifth, at most 10 queries
    per other finding); the others share what it leaves. ``on_ranking`` is called after every ranking step of
    the first finding; ``progress`` with the fraction of the budget used after every step, and 1.0 at the end.
    ``episode_type``: the loop's state class (default `AnytimeEpisode`; images and video pass their own).
    """
    results: list[EpisodeResult] = []
    for j, target in enumerate(targets):
        left = counter.remaining or 0
        if left < 2:
            break
        share = left - min(left // 5, 10 * (len(targets) - 1)) if j == 0 else left // (len(targets) - j)
        sub = QueryCounter(counter, budget=share)
        ep = new_episode(target, np.random.default_rng([seed, j]))
        run = (episode_type or AnytimeEpisode)(ep, sub, rng=np.random.default_rng([seed, j, 1]))

        def on_step(e: AnytimeEpisode, step: Step, first: bool = j == 0) -> None:
            if progress:
                progress(min(1.0, counter.queries / query_budget))
            if on_ranking and first and step.action in _RANKING_ACTIONS:
                on_ranking(e)

        run_episode(run, policy, on_step)
        result = run.result()
        result.extra["trace"] = [s.to_dict() for s in run.trace]
        results.append(result)
    if progress:
        progress(1.0)
    return results


def explain_anytime(
    ecg: Ecg,
    classifier: Classifier,
    *,
    query_budget: int = 500,
    seed: int = 0,
    policy: Callable[[AnytimeEpisode], str] | None = None,
    segment_s: float = 0.25,
    beat_aligned: bool = False,
    distortions: Sequence[str] | None = None,
    start_s: float | None = None,
    progress: Callable[[float], None] | None = None,
    partial: Callable[[list[Segment]], None] | None = None,
    method: str = "anytime",
) -> Explanation:
    """Explain ``classifier``'s diagnosis of ``ecg`` with the anytime loop driven by ``policy``.

    The first (most probable) finding gets all but a small reserve of the budget (a fifth, at most 10 queries
    per other finding); the others share what it leaves. ``partial`` receives the first finding's segments
    whenever its ranking changes; ``progress`` the fraction of the budget used.
    """
    t0 = time.perf_counter()
    policy = policy or hand_policy
    counter = QueryCounter(classifier, budget=int(query_budget))
    x, probs0, window_start_s = explained_window(ecg, counter, start_s)
    fs = float(classifier.sampling_rate)
    targets = diagnosed_targets(probs0, classifier)
    grid = make_grid(x, fs, segment_s=segment_s, beat_aligned=beat_aligned)
    feats = cell_features(x, grid)
    kinds = parse_kinds(distortions)
    leads = input_leads(ecg, classifier)

    def new_episode(target: Target, rng: np.random.Generator) -> Episode:
        return Episode(
            x,
            fs,
            probs0,
            target,
            rng,
            kinds=kinds,
            grid=grid,
            signal_features=feats,
            query_budget=query_budget,
        )

    def on_ranking(e: AnytimeEpisode) -> None:
        if partial:
            probe = EpisodeResult(e.ep, e.cell_scores(), [], {}, {}, 0, extra={"localization": [1]})
            partial(segments_of(probe, grid, leads, window_start_s))

    results = run_findings(targets, counter, new_episode, policy, seed, query_budget, progress, on_ranking)
    main = results[0] if results else None
    out = build_explanation(
        ecg, classifier, x, probs0, targets, main, results, counter, grid, window_start_s, method, None, t0
    )
    if main is not None:
        out.extra["trace"] = main.extra["trace"]
    return out
