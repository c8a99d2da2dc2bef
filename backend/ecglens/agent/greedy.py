"""The greedy sensitivity scan: the published reference method, kept as the fallback when no policy fits.

Each step probes every cell once (one query per cell per step: the distortion added to a clean cell, or the
cell's distortion strengthened one level), then distorts the top cells by probability drop per unit of added
energy, until the diagnosis flips or the budget is spent (Sarkar et al., AAAI 2024, reference code). It needs no
training and makes no assumption about the input shape, which is why it is the fallback, and it is what the
learned policy must beat on queries.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from ecglens.agent.env import Episode
from ecglens.classifiers.base import QueryCounter


def greedy_scan(
    ep: Episode,
    counter: QueryCounter,
    budget: int,
    *,
    top_fraction: float = 0.05,
    start_level: int | None = None,
    max_level: int | None = None,
    candidates: np.ndarray | None = None,
    progress: Callable[[int], None] | None = None,
) -> None:
    """Distort ``ep`` greedily until its diagnosis flips or ``budget`` queries of ``counter`` are spent.

    Parameters
    ----------
    ep : Episode
        Changed in place; ``ep.probs`` holds the classifier's answer on the final state.
    counter : QueryCounter
        Every probe goes through it (its hard budget is never passed).
    budget : int
        Queries this scan may use (at most ``counter.remaining``).
    top_fraction : float
        Share of the cells distorted after each scan (at least one). Default: 0.05.
    start_level : int or None
        Level index the scan starts at. Default: the middle of ``ep.levels_db`` (6 dB with the defaults).
    max_level : int or None
        Strongest level index a cell may be raised to. Default: None (the strongest).
    progress : callable or None
        Called with the queries used so far after each batch. Default: None.
    """
    end = counter.queries + min(budget, counter.remaining if counter.remaining is not None else budget)
    n_levels = len(ep.levels_db)
    top = n_levels - 1 if max_level is None else int(np.clip(max_level, 0, n_levels - 1))
    level = min(top, (n_levels - 1) // 2 if start_level is None else int(start_level))
    pool = np.arange(ep.grid.n_cells) if candidates is None else np.asarray(candidates, dtype=int)
    m = max(1, int(math.ceil(top_fraction * len(pool))))
    step = 0
    while not ep.flipped and end - counter.queries >= 2:
        kind = step % len(ep.kinds)
        changes, cells = [], []
        for cell in pool:
            cell = int(cell)
            if ep.kind[cell] < 0:
                changes.append([(cell, kind, level)])
            elif ep.level[cell] + 1 <= top:
                changes.append([(cell, int(ep.kind[cell]), int(ep.level[cell]) + 1)])
            else:
                continue
            cells.append(cell)
        if not cells:
            break
        room = end - counter.queries - 1  # keep one query to check the combined change
        cells, changes = cells[:room], changes[:room]
        if not cells:
            break
        base_p, base_l2 = ep.p, ep.l2()
        probs = ep.probe(counter, changes)
        gains = base_p - probs[:, ep.target.index]
        d_energy = np.array([ep.energy_after(ch) - base_l2**2 for ch in changes])
        ep.record_probe(cells, probs, base_p, np.sqrt(np.maximum(d_energy, 0)) / ep.signal_l2)
        if progress:
            progress(counter.queries)
        flips = np.flatnonzero(ep.target.flipped(probs))
        if flips.size:  # one change flips it alone: take the cheapest such change
            best = int(flips[np.argmin(d_energy[flips])])
            ep.commit(changes[best], probs[best])
            break
        ratio = gains / np.maximum(d_energy, 1e-12)
        order = [int(i) for i in np.argsort(-ratio, kind="stable") if gains[i] > 0][:m]
        if not order:
            order = [int(np.argmax(gains))]  # nothing helped: still move, or the next scan repeats this one
        for i in order:
            for cell, k, lv in changes[i]:
                ep.set_cell(cell, k, lv)
        if len(order) == 1:
            ep.probs = probs[order[0]]
        else:
            ep.probs = ep.probe(counter, [[]])[0]
        step += 1
        if progress:
            progress(counter.queries)
