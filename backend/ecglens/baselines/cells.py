"""Signal operations on the cells of a segment grid (`ecglens.agent.grid.SegmentGrid`, the agent's grid).

The agent, the peers and the metrics share that grid, so a ranking from any of them names the same cells.
These helpers only read ``grid.bounds`` (the time windows shared by all leads) and the lead-major numbering
``cell = lead * n_windows + window``, so fixed and beat-aligned grids both work.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from ecglens.agent.grid import SegmentGrid, make_grid


def fixed_grid(signal: np.ndarray, fs: float, segment_s: float = 0.25) -> SegmentGrid:
    """The fixed grid (lead × ``segment_s`` windows, the last one shorter) over a ``[leads, samples]`` input.

    No R-peak detection: the fixed windows do not depend on it.
    """
    signal = np.asarray(signal)
    if signal.ndim != 2:
        raise ValueError(f"signal must be [leads, samples], got shape {signal.shape}")
    return make_grid(signal, fs, segment_s=segment_s, r_peaks=np.zeros(0, dtype=int))


def feature_mask(grid: SegmentGrid) -> np.ndarray:
    """int64 ``[leads, samples]``: the cell number of every sample (captum's ``feature_mask``)."""
    return grid.feature_mask()


def cell_mask(grid: SegmentGrid, cells: Iterable[int]) -> np.ndarray:
    """bool ``[leads, samples]``: True on the samples of ``cells``."""
    return grid.cell_mask(cells)


def cell_medians(grid: SegmentGrid, signal: np.ndarray) -> np.ndarray:
    """float32 ``[leads, samples]``: every sample replaced by its cell's median (each cell a flat line)."""
    return grid.dropout_fill(_check(grid, signal))


def flatten(grid: SegmentGrid, signal: np.ndarray, cells: Iterable[int]) -> np.ndarray:
    """A copy of ``signal`` with each of ``cells`` a flat line at that cell's own median."""
    signal = _check(grid, signal)
    out = signal.astype(np.float32, copy=True)
    for c in cells:
        lead, a, b = grid.cell_span(int(c))
        out[lead, a:b] = np.median(signal[lead, a:b])
    return out


def cell_energy(grid: SegmentGrid, x: np.ndarray) -> np.ndarray:
    """float64 ``[n_cells]``: sum of squares of ``x`` (``[leads, samples]``, e.g. a distortion) in each cell."""
    return grid.cell_energy(_check(grid, x))


def cell_means(grid: SegmentGrid, x: np.ndarray) -> np.ndarray:
    """float64 ``[n_cells]``: mean of a ``[leads, samples]`` map (e.g. a saliency) over each cell."""
    x = _check(grid, x).astype(np.float64)
    mask = feature_mask(grid).ravel()
    total = np.bincount(mask, weights=x.ravel(), minlength=grid.n_cells)
    return total / np.maximum(np.bincount(mask, minlength=grid.n_cells), 1)


def ranking_from_scores(scores: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
    """Cell numbers, highest score first; ties broken at random with ``rng`` (by cell number when None).

    Random tie-breaking keeps a method that scores only a few cells from being credited (or blamed) for the
    arbitrary order of the cells it left at zero.
    """
    scores = np.asarray(scores, dtype=np.float64).ravel()
    scores = np.where(np.isfinite(scores), scores, -np.inf)
    tie = rng.random(scores.size) if rng is not None else np.arange(scores.size, dtype=np.float64)
    return np.lexsort((tie, -scores)).astype(np.int64)


def _check(grid: SegmentGrid, x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    if x.shape != (grid.n_leads, grid.n_samples):
        raise ValueError(f"expected a [{grid.n_leads}, {grid.n_samples}] array for this grid, got {x.shape}")
    return x
