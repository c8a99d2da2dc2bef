"""The anytime episode on an image or a video: the ECG loop with the ranking resolved cell by cell.

An image has few cells (64 patches) against budgets of hundreds of queries, so the agent can afford what Occlusion
does, every cell dropped out on its own, and still look for flips. `VisionAnytimeEpisode` keeps the actions of
`anytime.AnytimeEpisode` and changes two things:

- ``widen`` resolves cells singly instead of splitting groups of the bisection frontier: first every cell not yet
  measured alone, in the order of the current ranking (`MAX_ROWS` a call; the cell takes its own mean colour, as in the
  rounds: the blur keeps a patch's low frequencies, so the cell's drop says less of its content; the bisection's leaf
  keeps its blur measure), then **conditional rounds**: with the top ``k`` cells of the ranking removed (``k`` = 1, 2,
  4, ...), every other cell is removed on top of them, in ranking order, and the cells measured so far are re-ranked
  below the top ``k`` by that extra drop (greedy deletion by doubling prefixes: a cell whose evidence duplicates a
  higher one moves down, one that matters once the top is gone moves up). Cells removed together take their own mean
  colour (`PatchGrid.mean_fill`): a blur of the input would bring a removed region's content back from its removed
  neighbours. The rounds end when the prefix alone has removed the decision or covers half the cells. Cells of a
  **quiet** group of the bisection (its removal moved the class by at most `QUIET_DROP` of p0 while its sibling
  explained their parent's drop) are not dropped out alone: on 12 x 12 cells that saves about half the singles, and
  the rounds, which the deletion order gains most from, start that much earlier.
- ``cell_scores``: cells measured alone rank by their own drop (a cell whose removal raises the class goes last;
  on a video, at least by the density of a redundant group holding it), below the last round's prefix by that
  round's order; cells not yet measured alone by the best evidence density of their groups times their share of
  its dropout energy, as for an ECG, a quiet cell by its own group's drop at most.

`vision_hand_policy` is the fixed order for images and video: localise to one cell, drop out every cell alone, the first
conditional round (small grids; the second too on at most 8 x 8 cells), then look for a flip and clean it up, then the
further rounds, then redraws (restarts when redraws stall). Budget-blind like the ECG order, so the explanation at
budget B is the prefix of the one at a larger budget.
"""

from __future__ import annotations

import numpy as np

from ecglens.agent.anytime import _EXPLAINS, DENSITY_POWER, ENERGY_POWER, AnytimeEpisode, _leaf_depth, first_legal

# A prefix that leaves the class under 1% of p0 has removed the decision: nothing left to measure against. Low, as
# the order of what is left still counts when the top cell alone takes most of the class.
_GONE = 0.01
# An image of up to 12 x 12 patches gets its first conditional round before the flip search (about 2 x cells
# queries for the ranking), as does a video of clip-long tubes; a grid of finer tubes (256) looks for its flip first,
# or the ranking alone would take 500 queries.
FIRST_ROUND_CELLS = 160
# On up to 8 x 8 cells the second round (top 2 removed) fits before the flip search too (about 3 x cells queries).
SECOND_ROUND_CELLS = 64
# A group of the bisection whose removal moved the class by at most this share of p0, while its sibling explained
# their parent's drop, is *quiet*: its cells are not dropped out alone (they keep their group's small measure),
# so the conditional rounds start earlier on a large grid. Chosen on the training members (0.05 / 0.1 / 0.2).
QUIET_DROP = 0.1


class VisionAnytimeEpisode(AnytimeEpisode):
    """`AnytimeEpisode` whose ``widen`` and ranking work on single cells (see the module notes)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        n = self.ep.grid.n_cells
        self.solid = self.ep.grid.mean_fill(self.ep.clean)  # what a cell removed together with others takes
        self.single = np.full(n, np.nan)  # each cell's own dropout drop (over p0), once measured alone
        self.cond_prefix: np.ndarray = np.zeros(0, dtype=int)  # the prefix of the last conditional round
        self.cond_order: np.ndarray = np.zeros(0, dtype=int)  # the ranking that round started from
        self.cond_drop = np.full(n, np.nan)  # the extra drop of each cell on top of that prefix (NaN: not yet)
        self._round: dict | None = None  # the conditional round in progress
        self._next_k = 1
        self.rounds_done = False
        self.quiet = np.zeros(n, dtype=bool)  # the finest probed group holding the cell is quiet (QUIET_DROP)
        # on a video, the best density of a redundant group holding the cell (neither half moved the class half as
        # much as the group did): the floor of its key once it is measured alone (see `cell_scores`)
        self.redundant = np.zeros(n)

    # ---------------------------------------------------------------------------------------------- actions
    def unmeasured(self) -> np.ndarray:
        """Cells not yet dropped out alone and not in a quiet group, in the order of the current ranking."""
        order = np.argsort(-self.cell_scores(), kind="stable")
        return order[np.isnan(self.single[order]) & ~self.quiet[order]]

    def rounds_before_flips(self) -> bool:
        """The first conditional round comes before the flip search on a grid of at most `FIRST_ROUND_CELLS`, the
        second too on one of at most `SECOND_ROUND_CELLS`."""
        if self.rounds_done:
            return False
        n = self.ep.grid.n_cells
        return (self._next_k == 1 and n <= FIRST_ROUND_CELLS) or (self._next_k == 2 and n <= SECOND_ROUND_CELLS)

    def legal(self) -> dict[str, bool]:
        legal = super().legal()
        legal["widen"] = self.room() >= 2 and (bool(len(self.unmeasured())) or not self.rounds_done)
        return legal

    def _split_groups(self, n_groups: int) -> tuple[int, float]:
        out = super()._split_groups(n_groups)
        leaf = _leaf_depth(self.ep.grid.n_windows, self.ep.grid.n_leads)
        alone = (self.depth >= leaf) & np.isnan(self.single)
        # the bisection's leaves are cells measured alone (under the blur: re-measured under the mean colour, the
        # localised cell lost its place at the top more often, vit64_gray pointing .97 -> .83 at 50, 30 images)
        self.single[alone] = self.drop[alone]
        n_w = self.ep.grid.n_windows
        for group, drop, parent, sibling in self.last_split:
            cells = group.cells(n_w)
            if self.ep.grid.video and np.isfinite(parent) and max(drop, sibling) < _EXPLAINS * parent:
                # the parent's density (halves are equal up to one cell)
                own = parent / (2 * len(cells)) ** DENSITY_POWER
                self.redundant[cells] = np.maximum(self.redundant[cells], own)
            # The root's drop is the whole decision (removing every cell leaves nothing). Both halves of the root
            # quiet is redundancy (each keeps enough of the digit), not absence: neither is quiet. Below a parent
            # that moved nothing either, both are (the rounds measure them conditionally; asking the sibling to
            # move the class too: cnn96_rgb deletion .129 -> .143 at 200)
            parent = parent if np.isfinite(parent) else 1.0
            self.quiet[cells] = drop <= QUIET_DROP and sibling >= _EXPLAINS * parent
        return out

    def _widen(self) -> tuple[int, float]:
        rows_n = max(1, min(self.max_rows, self.room()))
        todo = self.unmeasured()
        if len(todo):
            cells = todo[:rows_n]
            p = self._drop_out([[int(c)] for c in cells], self.solid)
            self.single[cells] = (self.ep.p0 - p) / max(self.ep.p0, 1e-3)
            self._reordered = False
            return len(cells), float(p.min())
        return self._conditional(rows_n)

    def _conditional(self, rows_n: int) -> tuple[int, float]:
        ep = self.ep
        n = ep.grid.n_cells
        if self._round is None:
            order = np.argsort(-self.cell_scores(), kind="stable")
            k = min(self._next_k, n - 1)
            self._round = {"prefix": order[:k], "order": order, "todo": list(order[k:]), "base": None}
        rnd = self._round
        prefix = [int(c) for c in rnd["prefix"]]
        first = rnd["base"] is None
        cells = rnd["todo"][: rows_n - first]
        p = self._drop_out(([prefix] if first else []) + [prefix + [int(c)] for c in cells], self.solid)
        if first:
            rnd["base"], p = float(p[0]), p[1:]
            if rnd["base"] < _GONE * ep.p0:  # the prefix alone removed the decision: nothing left to measure against
                self.rounds_done = True
                self._round = None
                return len(prefix), rnd["base"]
            # the round's ranking replaces the last one from its first call on (the head is re-ranked first)
            self.cond_prefix, self.cond_order = rnd["prefix"], rnd["order"]
            self.cond_drop[:] = np.nan
        rnd["todo"] = rnd["todo"][len(cells) :]
        self.cond_drop[np.asarray(cells, dtype=int)] = (rnd["base"] - p) / max(ep.p0, 1e-3)
        self._reordered = False
        if not rnd["todo"]:
            self._next_k = 2 * len(prefix)
            self.rounds_done = self._next_k > n // 2
            self._round = None
        return len(cells) + len(prefix), float(p.min()) if len(p) else rnd["base"]

    def frame_detail(self) -> np.ndarray:
        """float64 ``[n_cells, tube_frames]``: the energy of what the dropout fill removes from each frame of each
        tube (NaN past a short last tube): which frame of a tube holds its content. A frame dropped out alone
        moves a model that reads the clip over several frames little (see `vision.frame_saliency`)."""
        grid = self.ep.grid
        detail = (self.ep.clean - self.flat) ** 2
        out = np.full((grid.n_cells, grid.tube_frames), np.nan)
        if grid.video:
            for c in range(grid.n_cells):
                e = detail[grid.cell_index(c)].sum(axis=(1, 2, 3))
                out[c, : len(e)] = e
        return out

    def result(self):
        out = super().result()
        out.extra["frame_detail"] = self.frame_detail()
        return out

    def _drop_out(self, cell_sets: list[list[int]], fill: np.ndarray) -> np.ndarray:
        """The diagnosed class's probability with each set of cells taken from ``fill`` in the clean input (one
        call)."""
        ep = self.ep
        rows = np.stack([np.where(ep.grid.cell_mask(s), fill, ep.clean) for s in cell_sets])
        return ep.probe_rows(self.counter, rows)[:, ep.target.index]

    # ---------------------------------------------------------------------------------------------- best so far
    def cell_scores(self) -> np.ndarray:
        """float64 ``[n_cells]`` in (0, 1]: measured-alone cells by their own drop (below the last conditional
        prefix, by the conditional drop), the others by their groups' evidence density."""
        n = self.drop.size
        single = getattr(self, "single", None)
        if single is None or np.isnan(single).all():
            return super().cell_scores()
        known = ~np.isnan(single)
        # A cell measured alone: its raw drop (one whose removal raises the class ranks below the ones that did
        # nothing). A moving object's evidence spreads over the tubes of its path, so a tube alone moves a clip's
        # class little while a group of them moves it a lot: a video cell keeps that group's density as a floor,
        # its energy breaking the tie inside the group (else its unmeasured, off-object siblings outrank it).
        # A cell not measured alone: its group's density times its energy share, as on an ECG but uncapped (within
        # a group no probe has split, the patch with most content ranks, and is measured, first)
        inherited = self.density * self.energy_share() ** ENERGY_POWER
        key = np.where(known, np.maximum(single, self.redundant) if self.ep.grid.video else single, inherited)
        # a quiet cell ranks by its own group's drop, not by a larger one inherited from an ancestor
        key = np.where(~known & self.quiet, np.minimum(key, self.drop), key)
        value = np.maximum(key, 0.0)
        order = np.lexsort((-self.energy, -self.density, -key))
        if len(self.cond_prefix):
            order = self._conditional_order()
        top = max(float(value[order[0]]), 1e-9)
        v = np.minimum.accumulate(np.clip(value[order] / top, 0.0, 1.0))
        scores = np.empty(n)
        scores[order] = v * (1 - 1e-3) + 1e-3 * (n - np.arange(n)) / max(n, 1)
        return scores

    def _conditional_order(self) -> np.ndarray:
        """The last conditional round's ranking: its prefix, the cells it has measured by their extra drop (largest
        first; the round measures in ranking order, so these are the head), then the cells it has not measured
        yet, in the ranking the round started from."""
        d = self.cond_drop
        head = set(self.cond_prefix.tolist())
        rest = np.asarray([c for c in self.cond_order if int(c) not in head], dtype=int)
        measured = rest[~np.isnan(d[rest])]
        by_drop = measured[np.argsort(-d[measured], kind="stable")]
        return np.concatenate([self.cond_prefix, by_drop, rest[np.isnan(d[rest])]]).astype(int)


# ---------------------------------------------------------------------------------------------------- policy
def vision_hand_policy(episode: AnytimeEpisode) -> str:
    """The fixed order for images and video (see the module notes)."""
    return first_legal(episode, _order(episode))


def _order(run: AnytimeEpisode) -> tuple[str, ...]:
    ep = run.ep
    if ep.flipped and not run.cleaned:
        return ("cleanup",)
    if run.depth.max(initial=0) < _leaf_depth(ep.grid.n_windows, ep.grid.n_leads):
        return ("localise",)
    if isinstance(run, VisionAnytimeEpisode) and (len(run.unmeasured()) or run.rounds_before_flips()):
        return ("widen",)
    if ep.flipped:  # the ranking's rounds before quieter flips: a flip is already in hand
        if run.redraw_idle >= 4:
            return ("restart", "widen", "redraw")
        return ("widen", "redraw")
    widen_turn = sum(s.action == "widen" for s in run.trace) * 2 < len(run.trace) - 10
    if run.best is None:
        return ("broad_top", "broad_all", "scan", "widen")
    return ("widen", "scan", "broad_top", "broad_all") if widen_turn else ("scan", "broad_top", "broad_all", "widen")


__all__ = ["VisionAnytimeEpisode", "vision_hand_policy"]
