"""The agent's environment on an image or a video: the ECG `Episode` with the modality's distortions.

The anytime loop, the cleanup and the redraw see an `Episode`: cells, a distortion (kind, level, gain) per cell,
``with_cells`` / ``commit`` / ``probe``, energies and the SNR. `VisionEpisode` keeps all of that and supplies
what differs: what a cell's distortion is and what it costs.

- **Bank** (`VisionBank`, computed once per input): for every kind and level, the kind laid over the whole input
  at the strength whose PSNR is that level (`ecglens.vision.distortions.calibrated`); a cell distorted at
  (kind, level) takes that distortion's values on its pixels. The levels (`LEVELS_PSNR_DB`, weakest first) are
  therefore whole-input PSNRs: one distorted patch of 64 at level ``L`` leaves the image at about
  ``L + 18`` dB.
- **Energy**: a cell's distortion energy is measured on the bank (sum of squares over the cell), times its gain
  squared; the SNR the agent reports is the whole input's PSNR (`ecglens.vision.distortions.PEAK` = 1).
- **Redraw**: another realisation of a random kind (noise, dead pixels, dropped frames) on the cell, scaled to the
  cell's current RMS; for a deterministic kind (blur, JPEG, exposure, motion blur) the same kind at another
  level, scaled to that RMS.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ecglens.agent.env import Episode
from ecglens.agent.grid import SIGNAL_FEATURES
from ecglens.agent.patches import PatchGrid
from ecglens.targets import Target
from ecglens.vision import distortions as vd

LEVELS_PSNR_DB: tuple[float, ...] = (32.0, 26.0, 20.0, 14.0, 8.0)


@dataclass
class VisionBank:
    """Every kind at every level over one input: ``deltas`` float32 ``[kinds, levels, *shape]`` (distorted minus
    clean), ``strength`` and ``reached`` (PSNR dB) ``[kinds, levels]``, ``energy`` float64 ``[kinds, levels,
    n_cells]``."""

    kinds: tuple[str, ...]
    levels_db: tuple[float, ...]
    deltas: np.ndarray
    strength: np.ndarray
    reached: np.ndarray
    energy: np.ndarray


def make_bank(
    clean: np.ndarray,
    grid: PatchGrid,
    kinds: Sequence[str],
    levels_db: Sequence[float],
    rng: np.random.Generator,
) -> VisionBank:
    """Calibrate every kind at every level on ``clean`` (`ecglens.vision.distortions.calibrated_levels`)."""
    clean = np.asarray(clean, dtype=np.float32)
    deltas = np.zeros((len(kinds), len(levels_db), *clean.shape), dtype=np.float32)
    strength = np.zeros((len(kinds), len(levels_db)))
    reached = np.zeros((len(kinds), len(levels_db)))
    energy = np.zeros((len(kinds), len(levels_db), grid.n_cells))
    for k, kind in enumerate(kinds):
        for lv, (out, s, p) in enumerate(vd.calibrated_levels(kind, clean, levels_db, rng)):
            deltas[k, lv] = out - clean
            strength[k, lv], reached[k, lv] = s, p
            energy[k, lv] = grid.cell_energy(deltas[k, lv])
    return VisionBank(tuple(kinds), tuple(float(x) for x in levels_db), deltas, strength, reached, energy)


class VisionEpisode(Episode):
    """One explanation episode on an image ``[C, H, W]`` or a video ``[T, C, H, W]`` (float32 in [0, 1]).

    Parameters
    ----------
    signal : np.ndarray
        The clean input.
    probs0 : np.ndarray
        The classifier's answer on it, ``[classes]``.
    target : Target
        The finding to flip.
    grid : PatchGrid
        The cells.
    bank : VisionBank
        The calibrated distortions (`make_bank`; shared by the episodes of one input).
    query_budget : int
        Scale of the ``queries_used`` feature. Default: 500.
    """

    def __init__(
        self,
        signal: np.ndarray,
        probs0: np.ndarray,
        target: Target,
        *,
        grid: PatchGrid,
        bank: VisionBank,
        query_budget: int = 500,
    ):
        self.clean = np.asarray(signal, dtype=np.float32)
        if tuple(self.clean.shape) != tuple(grid.shape):
            raise ValueError(f"input shape {list(self.clean.shape)} is not the grid's {list(grid.shape)}")
        self.fs = 0.0
        self.target = target
        self.kinds = bank.kinds
        self.levels_db = bank.levels_db
        self.grid = grid
        self.bank = bank
        self.query_budget = int(query_budget)
        self.signal_features = np.zeros((grid.n_cells, len(SIGNAL_FEATURES)), dtype=np.float32)
        self.mains_hz = 0.0
        self.n_values = int(self.clean.size)
        centred = self.clean - self.clean.mean()
        self.signal_l2 = float(np.sqrt(np.sum(centred.astype(np.float64) ** 2))) + 1e-9
        self._sizes = np.array([grid.cell_size(c) for c in range(grid.n_cells)], dtype=np.float64)
        self._init_state(probs0)

    # ------------------------------------------------------------------ what a cell's distortion is
    def cell_noise(self, cell: int, kind: int, level: int) -> np.ndarray:
        """float32: the distortion ``kind`` at ``level`` on ``cell``'s values (distorted minus clean)."""
        return self.bank.deltas[kind, level][self.grid.cell_index(cell)]

    def energies(self, kind: np.ndarray | None = None, level: np.ndarray | None = None) -> np.ndarray:
        """float64 ``[n_cells]`` distortion energy per cell for a state (default: the current one)."""
        kind = self.kind if kind is None else kind
        level = self.level if level is None else level
        e = self.bank.energy[np.maximum(kind, 0), level, np.arange(kind.size)] * self.gain**2
        return np.where(kind >= 0, e, 0.0)

    def cell_rms(self, cell: int) -> float:
        """RMS of ``cell``'s current distortion as the energy bookkeeping counts it (0 when clean)."""
        if self.kind[cell] < 0:
            return 0.0
        e = self.bank.energy[self.kind[cell], self.level[cell], cell]
        return float(np.sqrt(e / self._sizes[cell]) * self.gain[cell])

    def snr_db(self) -> float:
        """The whole input's PSNR (dB, peak 1) under the current distortion; inf when none."""
        return vd.psnr_of_energy(float(self.energies().sum()), self.n_values)

    # ------------------------------------------------------------------ other realisations
    def _fresh(self, kind: int, level: int, rng: np.random.Generator) -> np.ndarray:
        """Another realisation of ``kind``: a new draw of a random kind at the level's strength; for a deterministic
        kind the same kind at another level (drawn from ``rng``), which the caller scales to the cell's RMS: a
        blend towards a blur of another sigma, another JPEG quality, another exposure."""
        name = self.kinds[kind]
        if not vd.is_random(name):
            return self.bank.deltas[kind, int(rng.integers(len(self.levels_db)))]
        return vd.apply(name, self.clean, float(self.bank.strength[kind, level]), rng) - self.clean

    def redrawn_unit(self, cell: int, kind: int, rng: np.random.Generator) -> np.ndarray:
        """float32: another realisation of ``kind`` (at the cell's level) on ``cell``, scaled to unit RMS."""
        idx = self.grid.cell_index(cell)
        return _unit(self._fresh(kind, int(self.level[cell]), rng)[idx])

    def redrawn_units(self, cells: Sequence[int], rng: np.random.Generator) -> dict[int, np.ndarray]:
        """Other realisations for many cells: one whole-input draw per (kind, level) in use."""
        out: dict[int, np.ndarray] = {}
        for k, lv in sorted({(int(self.kind[c]), int(self.level[c])) for c in cells}):
            fresh = self._fresh(k, lv, rng)
            for c in cells:
                if self.kind[c] == k and self.level[c] == lv:
                    out[int(c)] = _unit(fresh[self.grid.cell_index(int(c))])
        return out


def _unit(piece: np.ndarray) -> np.ndarray:
    rms = float(np.sqrt(np.mean(piece.astype(np.float64) ** 2)))
    return (piece / rms).astype(np.float32) if rms > 0 else np.zeros_like(piece, dtype=np.float32)
