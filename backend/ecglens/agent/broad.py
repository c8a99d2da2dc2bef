"""Broad noise: a first flip for classifiers that local probes cannot move.

A robust classifier may hold its diagnosis against noise on a few cells however strong, so the cell-by-cell
searches spend their share without a flip. Noise laid over a wide region does flip it, as the robustness report
shows. One batched call tries every kind at the strongest levels over two regions (the cells the localisation
ranked highest, then the whole record), and the quietest flipping one is kept for the cleanup to thin out.
Measured on 60 DS1 one-PVC windows at budget 500 (`benchmarks/explainers.py --records ds1`): the unseen GRU
classifier was flipped in 98% of cases against 80% without it; the built-in CNN, which the local searches
already flip, was unchanged.
"""

from __future__ import annotations

import numpy as np

from ecglens.agent.env import Episode
from ecglens.classifiers.base import QueryCounter


def broad_flip(
    ep: Episode,
    counter: QueryCounter,
    end: int,
    ranked: np.ndarray,
    *,
    top_cells: int = 16,
    levels: int = 3,
    reserve: int = 60,
) -> bool:
    """Distort a wide region of ``ep`` so that its diagnosis flips; returns whether it did.

    Parameters
    ----------
    ep : Episode
        Changed only when a flip is found: every cell of the chosen region then carries one kind at one level.
    counter : QueryCounter
        The probes go through it, in one call.
    end : int
        Nothing is probed unless the call and ``reserve`` queries fit before this.
    ranked : np.ndarray
        Cell indices, most sensitive first (the localisation's order); the first region is its head.
    top_cells : int
        Size of the first region. Default: 16.
    levels : int
        How many of the strongest levels are tried. Default: 3 (6, 0 and -6 dB cell-local SNR).
    reserve : int
        Queries that must remain after the call, for the cleanup. Default: 60.
    """
    n_levels = len(ep.levels_db)
    regions = [np.asarray(ranked[:top_cells], dtype=int), np.arange(ep.grid.n_cells)]
    if len(regions[0]) >= ep.grid.n_cells:
        regions = regions[1:]
    configs = [
        (r, k, lv)
        for lv in range(max(0, n_levels - levels), n_levels)
        for r in range(len(regions))
        for k in range(len(ep.kinds))
    ]
    if counter.left_before(end) < len(configs) + reserve:
        return False
    rows, energy = [], []
    for r, k, lv in configs:
        noise = np.zeros_like(ep.clean)
        for c in regions[r]:
            lead, a, b = ep.grid.cell_span(int(c))
            noise[lead, a:b] = ep.cell_noise(int(c), k, lv)
        rows.append(ep.clean + noise)
        energy.append(float(np.square(noise, dtype=np.float64).sum()))
    probs = ep.probe_rows(counter, np.stack(rows))
    ok = np.flatnonzero(ep.target.flipped(probs))
    if ok.size == 0:
        return False
    best = int(ok[np.lexsort((probs[ok, ep.target.index], np.asarray(energy)[ok]))[0]])
    r, k, lv = configs[best]
    ep.restore_clean()
    for c in regions[r]:
        ep.set_cell(int(c), k, lv)
    ep.probs = probs[best]
    return True
