"""The agent's environment: realistic distortions placed cell by cell on one classifier input.

`Episode` is the state of one explanation: the clean input, its `SegmentGrid`, a bank of unit-RMS noise per
distortion kind, the distortion currently on each cell (kind, strength level) and the classifier's last answer.
The search (`search.py`) drives an `Episode` directly with batched probes; training drives several at once
through `VecSegmentGridEnv`, whose ``reset(seed)`` / ``step(actions)`` follow the gym convention and answer all
environments with one classifier call per step.

Actions, per environment: ``(cell, action_type)``. ``action_type < n_kinds * n_levels`` adds distortion kind
``action_type // n_levels`` at level ``action_type % n_levels`` to the cell (replacing what was there);
``action_type == n_kinds * n_levels`` removes the cell's distortion.

Levels are cell-local SNRs in dB (`LEVELS_DB`, weakest first) against the lead's nst-style QRS power
(`ecglens.distortions.signal_power`). The whole-input SNR (against the mean-removed signal's energy, which is
typically ~10 dB below the QRS power) of one distorted 0.25-s cell of a 10-s 2-lead input is then about
``level + 10 log10(80) - 10 = level + 9 dB``.

Reward of one step (docs/agent.md): the drop of the diagnosed class's probability per unit of L2 added
(L2 in units of the clean input's L2), minus an energy cost, minus a cost per query, plus a bonus on the step
that flips the diagnosis (and the same malus on a step that un-flips it).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ecglens import distortions
from ecglens.agent.grid import SIGNAL_FEATURES, SegmentGrid, cell_features, make_grid
from ecglens.classifiers.base import Classifier, QueryCounter
from ecglens.distortions import KINDS
from ecglens.targets import Target, diagnosed_targets, is_normal

LEVELS_DB: tuple[float, ...] = (18.0, 12.0, 6.0, 0.0, -6.0)

# Dynamic per-cell features appended to the signal features (see `Episode.observe_cells`).
DYNAMIC_FEATURES = ("distorted", "strength", *(f"kind_{k}" for k in KINDS), "probed", "last_drop", "last_drop_per_l2")
CELL_FEATURES = SIGNAL_FEATURES + DYNAMIC_FEATURES
GLOBAL_FEATURES = ("p", "p0", "threshold", "p_over_p0", "queries_used", "flipped", "distorted_share", "l2", "log_cells")
_TAPER_ALPHA = 0.5  # Tukey taper on each cell's noise: no steps at cell edges (a step is not a realistic artifact)


@dataclass(frozen=True)
class RewardConfig:
    """Reward shaping. ``ratio_weight * clip(drop / (l2_floor + |dL2|)) - energy_cost * dL2 - query_cost
    + bonus * (flip event)`` with ``bonus = flip_bonus * (0.25 + 0.75 * clip(SNR_dB / flip_snr_full_db, 0, 1))``:
    a flip by a quiet distortion is worth up to four times one by a loud one. Probabilities in [0, 1], L2
    relative to the clean input's L2.

    Defaults: ratio_weight 1.0, l2_floor 0.05, ratio_clip 3.0, energy_cost 0.1, query_cost 0.02, flip_bonus 1.0,
    flip_snr_full_db 20.0. The energy cost is kept small: against a robust classifier a single cell's probability
    drop is small, and a larger energy cost teaches the policy to place nothing but the weakest noise.
    """

    ratio_weight: float = 1.0
    l2_floor: float = 0.05
    ratio_clip: float = 3.0
    energy_cost: float = 0.1
    query_cost: float = 0.02
    flip_bonus: float = 1.0
    flip_snr_full_db: float = 20.0

    def bonus(self, snr_db: float) -> float:
        """The flip bonus for a flip at ``snr_db`` dB."""
        return self.flip_bonus * (0.25 + 0.75 * float(np.clip(snr_db / self.flip_snr_full_db, 0.0, 1.0)))


def noise_bank(
    n_leads: int,
    n_samples: int,
    fs: float,
    rng: np.random.Generator,
    kinds: Sequence[str] = KINDS,
    *,
    mains_hz: float = 50.0,
) -> np.ndarray:
    """float32 ``[kinds, leads, samples]``: one zero-mean unit-RMS realisation per kind and lead
    (`ecglens.distortions.noise_batch`)."""
    return np.stack([distortions.noise_batch(k, n_leads, n_samples, fs, rng, mains_hz=mains_hz) for k in kinds]).astype(
        np.float32
    )


def lead_power(signal: np.ndarray, fs: float) -> np.ndarray:
    """float64 ``[leads]`` signal power (mV^2) the SNR levels refer to: the distortions module's QRS power."""
    power = np.asarray(distortions.signal_power(signal, fs), dtype=np.float64)
    fallback = np.var(signal, axis=1) + 1e-8  # a flat lead has no QRS power; its variance still scales noise
    return np.where(np.isfinite(power) & (power > 0), power, fallback)


class Episode:
    """One explanation episode on one ``[leads, samples]`` input.

    Parameters
    ----------
    signal : np.ndarray
        Clean input ``[leads, samples]`` in mV, already fitted to the classifier.
    fs : float
        Sampling rate in Hz.
    probs0 : np.ndarray
        The classifier's answer on the clean input, ``[classes]``.
    target : Target
        The finding to flip.
    rng : np.random.Generator
        Draws the noise bank.
    kinds : sequence of str
        Distortion kinds allowed. Default: all of `KINDS`.
    levels_db : sequence of float
        Cell-local SNR levels in dB, weakest first. Default: `LEVELS_DB`.
    grid : SegmentGrid or None
        Default: `make_grid(signal, fs, segment_s=segment_s, beat_aligned=beat_aligned)`.
    segment_s, beat_aligned : see `make_grid`. Defaults: 0.25, False.
    query_budget : int
        Scale of the ``queries_used`` feature. Default: 500.
    signal_features : np.ndarray or None
        Precomputed `cell_features` (training caches them per window). Default: computed.
    """

    def __init__(
        self,
        signal: np.ndarray,
        fs: float,
        probs0: np.ndarray,
        target: Target,
        rng: np.random.Generator,
        *,
        kinds: Sequence[str] = KINDS,
        levels_db: Sequence[float] = LEVELS_DB,
        grid: SegmentGrid | None = None,
        segment_s: float = 0.25,
        beat_aligned: bool = False,
        query_budget: int = 500,
        signal_features: np.ndarray | None = None,
        mains_hz: float = 50.0,
    ):
        unknown = [k for k in kinds if k not in KINDS]
        if unknown or not kinds:
            raise ValueError(f"unknown distortion kinds {unknown}; valid: {', '.join(KINDS)}")
        self.clean = np.asarray(signal, dtype=np.float32)
        self.fs = float(fs)
        self.target = target
        self.kinds = tuple(kinds)
        self.levels_db = tuple(float(x) for x in levels_db)
        self.grid = (
            grid if grid is not None else make_grid(self.clean, fs, segment_s=segment_s, beat_aligned=beat_aligned)
        )
        self.query_budget = int(query_budget)
        self.signal_features = signal_features if signal_features is not None else cell_features(self.clean, self.grid)
        n_leads, n_samples = self.clean.shape
        self.mains_hz = float(mains_hz)
        self._unit = self._unit_noise(noise_bank(n_leads, n_samples, fs, rng, self.kinds, mains_hz=mains_hz))
        power = lead_power(self.clean, fs)
        # amp[lead, level]: noise RMS in mV for each level.
        self.amp = np.sqrt(power)[:, None] * 10.0 ** (-np.asarray(self.levels_db)[None, :] / 20.0)
        centred = self.clean - self.clean.mean(axis=1, keepdims=True)
        self.signal_l2 = float(np.sqrt(np.sum(centred.astype(np.float64) ** 2))) + 1e-9
        self._cell_leads = np.repeat(np.arange(n_leads), self.grid.n_windows)
        widths = np.diff(self.grid.bounds, axis=1).ravel()
        self._cell_width = np.tile(widths, n_leads).astype(np.float64)
        self._init_state(probs0)

    def _init_state(self, probs0: np.ndarray) -> None:
        """The clean state: no cell distorted, nothing probed, the clean input's answer (every modality's)."""
        n_cells = self.grid.n_cells
        self.kind = np.full(n_cells, -1, dtype=int)  # index into self.kinds, -1 = clean
        self.level = np.zeros(n_cells, dtype=int)
        self.gain = np.ones(n_cells, dtype=np.float64)  # amplitude factor on top of the level (cleanup only)
        self.probed = np.zeros(n_cells, dtype=bool)
        self.last_drop = np.zeros(n_cells, dtype=np.float32)
        self.last_drop_per_l2 = np.zeros(n_cells, dtype=np.float32)
        self.max_drop = np.zeros(n_cells, dtype=np.float64)  # largest drop any probe of the cell caused (over p0)
        self.noise = np.zeros_like(self.clean)
        self.probs0 = np.asarray(probs0, dtype=np.float64).ravel()
        self.probs = self.probs0.copy()
        self.p0 = float(self.probs0[self.target.index])
        self.queries = 0
        self.order: list[int] = []  # cells in the order their distortion was committed

    # ------------------------------------------------------------------ noise
    def _unit_noise(self, bank: np.ndarray) -> np.ndarray:
        """Each cell's span of the bank tapered and rescaled to unit RMS: ``[kinds, leads, samples]``."""
        out = np.empty_like(bank)
        for a, b in self.grid.bounds:
            out[:, :, a:b] = _tapered_unit(bank[:, :, a:b])
        return out

    def redrawn_unit(self, cell: int, kind: int, rng: np.random.Generator) -> np.ndarray:
        """float32 ``[cell samples]``: a fresh realisation of ``kind`` for ``cell``, tapered, unit RMS."""
        lead, a, b = self.grid.cell_span(cell)
        n = self.clean.shape[1]
        return _tapered_unit(
            distortions.noise_batch(self.kinds[kind], 1, n, self.fs, rng, mains_hz=self.mains_hz)[0, a:b]
        )

    def redrawn_units(self, cells: Sequence[int], rng: np.random.Generator) -> dict[int, np.ndarray]:
        """Fresh tapered unit-RMS realisations for many distorted cells at once: one whole-record draw per kind in
        use (all leads), each cell cut from it; `redrawn_unit` draws a whole record per cell."""
        n_leads, n = self.clean.shape
        out: dict[int, np.ndarray] = {}
        cells = np.asarray([int(c) for c in cells], dtype=np.int64)
        for k in sorted({int(self.kind[c]) for c in cells}):
            bank = distortions.noise_batch(self.kinds[k], n_leads, n, self.fs, rng, mains_hz=self.mains_hz)
            of_kind = cells[self.kind[cells] == k]
            windows = self.grid.cell_window(of_kind)
            for w in np.unique(windows):  # all leads of one window tapered at once
                here = of_kind[windows == w]
                a, b = self.grid.bounds[w]
                units = _tapered_unit(bank[self.grid.cell_lead(here), a:b])
                out.update(zip(here.tolist(), units))
        return out

    def add_redrawn(self, noise: np.ndarray, cells: Sequence[int], rng: np.random.Generator, factor: float) -> None:
        """Write `redrawn_units` of many distorted ``cells`` into ``noise`` (the input's shape), each at its current
        RMS (`cell_rms`) times ``factor``. For ECG the same draws are cut and tapered a cell length at a time."""
        if not self._own_noise():
            fresh = self.redrawn_units(cells, rng)
            for c in cells:
                noise[self.grid.cell_index(c)] = fresh[c] * np.float32(self.cell_rms(c) * factor)
            return
        n_leads, n = self.clean.shape
        cells = np.asarray([int(c) for c in cells], dtype=np.int64)
        starts, widths = self.grid.bounds[:, 0], np.diff(self.grid.bounds, axis=1)[:, 0]
        for k in sorted({int(self.kind[c]) for c in cells}):
            bank = distortions.noise_batch(self.kinds[k], n_leads, n, self.fs, rng, mains_hz=self.mains_hz)
            of_kind = cells[self.kind[cells] == k]
            windows = self.grid.cell_window(of_kind)
            for width in np.unique(widths[windows]):
                here = of_kind[widths[windows] == width]
                leads = self.grid.cell_lead(here)[:, None]
                span = starts[self.grid.cell_window(here)][:, None] + np.arange(width)
                rms = self.amp[leads[:, 0], self.level[here]] * self.gain[here] * factor
                noise[leads, span] = _tapered_unit(bank[leads, span]) * rms.astype(np.float32)[:, None]

    def cell_rms(self, cell: int) -> float:
        """RMS (mV) of ``cell``'s current distortion as the energy bookkeeping counts it (0 when clean)."""
        if self.kind[cell] < 0:
            return 0.0
        return float(self.amp[self.grid.cell_lead(cell), self.level[cell]] * self.gain[cell])

    def cell_noise(self, cell: int, kind: int, level: int) -> np.ndarray:
        """float32 ``[cell samples]``: the distortion ``kind`` at ``level`` on ``cell`` (mV)."""
        lead, a, b = self.grid.cell_span(cell)
        return self._unit[kind, lead, a:b] * np.float32(self.amp[lead, level])

    def region_noise(self, cells, kind: int, level: int) -> np.ndarray:
        """float32, the input's shape: `cell_noise` on every cell of ``cells``, zero elsewhere (for ECG in one
        masked product)."""
        if not self._own_noise():
            noise = np.zeros_like(self.clean)
            for c in cells:
                noise[self.grid.cell_index(int(c))] = self.cell_noise(int(c), kind, level)
            return noise
        full = self._unit[kind] * self.amp[:, level].astype(np.float32)[:, None]
        return np.where(self.grid.cell_mask(cells), full, np.float32(0.0))

    def _own_noise(self) -> bool:
        """Whether cell noise is this class's (ECG's noise bank): a subclass that redefines it (images, video) gets
        the cell-by-cell paths of `region_noise` and `add_redrawn`."""
        kind = type(self)
        return all(getattr(kind, f) is getattr(Episode, f) for f in ("cell_noise", "cell_rms", "redrawn_units"))

    def energies(self, kind: np.ndarray | None = None, level: np.ndarray | None = None) -> np.ndarray:
        """float64 ``[n_cells]`` distortion energy per cell for a state (default: the current one)."""
        kind = self.kind if kind is None else kind
        level = self.level if level is None else level
        e = self.amp[self._cell_leads, level] ** 2 * self._cell_width * self.gain**2
        return np.where(kind >= 0, e, 0.0)

    def l2(self, kind: np.ndarray | None = None, level: np.ndarray | None = None) -> float:
        """L2 norm (mV) of the distortion of a state (cells do not overlap, so energies add)."""
        return float(np.sqrt(self.energies(kind, level).sum()))

    def snr_db(self) -> float:
        """10 log10(energy of the mean-removed clean input / energy of the current distortion); inf if none."""
        e = self.energies().sum()
        return float("inf") if e <= 0 else float(10 * np.log10(self.signal_l2**2 / e))

    # ------------------------------------------------------------------ state
    def signal(self) -> np.ndarray:
        """float32 ``[leads, samples]``: the clean input plus the current distortion."""
        return self.clean + self.noise

    def with_cells(self, changes: Sequence[tuple[int, int, int]]) -> np.ndarray:
        """The current signal with ``(cell, kind, level)`` changes applied (kind -1 = remove); no state change."""
        out = self.signal().copy()
        for cell, kind, level in changes:
            idx = self.grid.cell_index(cell)
            out[idx] = self.clean[idx] + (self.cell_noise(cell, kind, level) if kind >= 0 else 0.0)
        return out

    def snapshot(self) -> dict[str, np.ndarray | list[int]]:
        """The distortion state and last answer (not what probes taught), for `restore`."""
        return {
            "kind": self.kind.copy(),
            "level": self.level.copy(),
            "gain": self.gain.copy(),
            "noise": self.noise.copy(),
            "probs": self.probs.copy(),
            "order": list(self.order),
        }

    def restore(self, state: dict[str, np.ndarray | list[int]]) -> None:
        """Go back to a `snapshot`."""
        self.kind, self.level, self.gain = state["kind"].copy(), state["level"].copy(), state["gain"].copy()
        self.noise, self.probs, self.order = state["noise"].copy(), state["probs"].copy(), list(state["order"])

    def restore_clean(self) -> None:
        """Remove every distortion (the classifier's answer goes back to the clean input's)."""
        self.kind[:] = -1
        self.level[:] = 0
        self.gain[:] = 1.0
        self.noise[:] = 0.0
        self.probs = self.probs0.copy()
        self.order = []

    def scaled(self, factor: float) -> np.ndarray:
        """The clean input plus the current distortion times ``factor`` (cells do not overlap)."""
        return self.clean + np.float32(factor) * self.noise

    def cell_scaled(self, cell: int, factor: float) -> np.ndarray:
        """The current signal with ``cell``'s distortion times ``factor``; no state change."""
        idx = self.grid.cell_index(cell)
        out = self.signal().copy()
        out[idx] = self.clean[idx] + np.float32(factor) * self.noise[idx]
        return out

    def scale_cell(self, cell: int, factor: float) -> None:
        """Multiply ``cell``'s distortion amplitude by ``factor``."""
        self.noise[self.grid.cell_index(cell)] *= np.float32(factor)
        self.gain[cell] *= factor

    def scale(self, factor: float) -> None:
        """Multiply every current distortion's amplitude by ``factor`` (the cleanup's fine amplitude step)."""
        self.noise *= np.float32(factor)
        self.gain = np.where(self.kind >= 0, self.gain * factor, 1.0)

    def set_cell(self, cell: int, kind: int, level: int = 0) -> None:
        """Put ``kind`` at ``level`` on ``cell`` (kind -1 removes its distortion); resets the cell's gain."""
        idx = self.grid.cell_index(cell)
        self.gain[cell] = 1.0
        if kind >= 0:
            self.noise[idx] = self.cell_noise(cell, kind, level)
            if self.kind[cell] < 0:
                self.order.append(int(cell))
        else:
            self.noise[idx] = 0.0
            if cell in self.order:
                self.order.remove(int(cell))
        self.kind[cell] = kind
        self.level[cell] = level if kind >= 0 else 0

    def energy_after(self, changes: Sequence[tuple[int, int, int]]) -> float:
        """Total distortion energy if ``changes`` ``(cell, kind, level)`` were made; no state change."""
        kind, level = self.kind.copy(), self.level.copy()
        for cell, k, lv in changes:
            kind[cell], level[cell] = k, lv
        return float(self.energies(kind, level).sum())

    def commit(self, changes: Sequence[tuple[int, int, int]], probs: np.ndarray) -> None:
        """Make ``changes`` and take ``probs`` (the classifier's answer on the result) as the current answer."""
        for cell, k, lv in changes:
            self.set_cell(cell, k, lv)
        self.probs = np.asarray(probs, dtype=np.float64)

    def probe(self, classifier: Classifier, changes: Sequence[Sequence[tuple[int, int, int]]]) -> np.ndarray:
        """Ask ``classifier`` about several variants of the current signal in one batched call.

        ``changes[i]`` is a list of ``(cell, kind, level)`` changes (kind -1 = remove) making variant ``i``.
        Returns probabilities ``[len(changes), classes]``; the state is not changed.
        """
        rows = np.stack([self.with_cells(c) for c in changes])
        probs = np.asarray(classifier.predict_proba(rows), dtype=np.float64)
        self.queries += len(rows)
        return probs

    def probe_rows(self, classifier: Classifier, rows: np.ndarray) -> np.ndarray:
        """Ask ``classifier`` about ready-made variants ``[n, leads, samples]`` of the input in one call."""
        probs = np.asarray(classifier.predict_proba(np.asarray(rows, dtype=np.float32)), dtype=np.float64)
        self.queries += len(rows)
        return probs

    @property
    def p(self) -> float:
        """Current probability of the target class."""
        return float(self.probs[self.target.index])

    @property
    def flipped(self) -> bool:
        return bool(self.target.flipped(self.probs)[0])

    def distorted_cells(self) -> np.ndarray:
        return np.flatnonzero(self.kind >= 0)

    def record_probe(self, cells: Sequence[int], probs: np.ndarray, base_p: float, delta_l2: Sequence[float]) -> None:
        """Remember what probing ``cells`` did: drop of the target probability (over p0) and drop per L2."""
        probs = np.atleast_2d(probs)
        dl2 = np.asarray(delta_l2, dtype=np.float64).ravel()
        m = min(len(cells), len(probs), len(dl2))  # as zip would pair them
        cells = np.asarray([int(c) for c in cells[:m]], dtype=np.int64)
        drop = (base_p - probs[:m, self.target.index].astype(np.float64)) / max(self.p0, 1e-3)
        self.probed[cells] = True
        self.last_drop[cells] = drop.astype(np.float32)
        np.maximum.at(self.max_drop, cells, drop)  # a cell named twice keeps its largest drop
        self.last_drop_per_l2[cells] = np.clip(drop / np.maximum(np.abs(dl2[:m]), 1e-3), -10, 10).astype(np.float32)

    # ------------------------------------------------------------------ observation
    def observe_cells(self) -> np.ndarray:
        """float32 ``[n_cells, len(CELL_FEATURES)]``: signal features then the dynamic ones."""
        n_levels = len(self.levels_db)
        kind_onehot = np.zeros((self.grid.n_cells, len(KINDS)), dtype=np.float32)
        on = self.kind >= 0
        kind_onehot[np.flatnonzero(on), [KINDS.index(self.kinds[k]) for k in self.kind[on]]] = 1.0
        dyn = np.column_stack(
            [
                on.astype(np.float32),
                np.where(on, (self.level + 1) / n_levels, 0.0),
                kind_onehot,
                self.probed.astype(np.float32),
                self.last_drop,
                self.last_drop_per_l2 / 10.0,
            ]
        ).astype(np.float32)
        return np.concatenate([self.signal_features, dyn], axis=1)

    def observe_global(self) -> np.ndarray:
        """float32 ``[len(GLOBAL_FEATURES)]``."""
        thr = self.target.threshold if self.target.multilabel else 0.5
        return np.array(
            [
                self.p,
                self.p0,
                thr,
                self.p / max(self.p0, 1e-3),
                min(1.0, self.queries / max(1, self.query_budget)),
                float(self.flipped),
                float((self.kind >= 0).mean()),
                min(2.0, self.l2() / self.signal_l2),
                np.log(self.grid.n_cells) / 5.0,
            ],
            dtype=np.float32,
        )


class VecSegmentGridEnv:
    """Several `Episode` s stepped together; one classifier call per step answers all of them.

    Parameters
    ----------
    classifier : Classifier
        The black box (only ``predict_proba`` and the card fields are used).
    inputs : np.ndarray
        float32 ``[n_inputs, leads, samples]`` training inputs, already fitted to the classifier.
    n_envs : int
        Parallel episodes. Default: 8.
    seed : int
        Seeds the input draws and the noise banks. Default: 0.
    max_steps : int
        Episode length cap (the episode also ends on a flip). Default: 32.
    reward : RewardConfig
        Default: `RewardConfig()`.
    kinds, levels_db, segment_s, beat_aligned : as in `Episode`.
    localize_budget : int
        Queries of `localize.coarse_to_fine` run on every fresh episode before its first step, so the policy
        trains on the probe features it sees at inference (`search.explain` localises first). Default: 0 (off).
    only_findings : bool
        Draw only inputs on which the classifier reports a non-normal finding (multilabel) or a non-first
        class (all inputs when there is none). Default: True.

    Observations are a dict of ``cells`` float32 ``[n_envs, n_cells, len(CELL_FEATURES)]``, ``globals`` float32
    ``[n_envs, len(GLOBAL_FEATURES)]`` and ``mask`` bool ``[n_envs, n_cells]`` (cells differ in number only
    with beat-aligned grids; padding is masked).
    """

    def __init__(
        self,
        classifier: Classifier,
        inputs: np.ndarray,
        *,
        n_envs: int = 8,
        seed: int = 0,
        max_steps: int = 32,
        reward: RewardConfig | None = None,
        kinds: Sequence[str] = KINDS,
        levels_db: Sequence[float] = LEVELS_DB,
        segment_s: float = 0.25,
        beat_aligned: bool = False,
        only_findings: bool = True,
        probs: np.ndarray | None = None,
        batch_size: int = 256,
        localize_budget: int = 0,
        localize: Callable[[Episode, Classifier, int], Any] | None = None,
    ):
        if localize_budget and localize is None:
            raise ValueError("localize_budget needs the localisation to run (e.g. agent.localize.coarse_to_fine)")
        self.localize = localize
        self.classifier = classifier
        self.inputs = np.asarray(inputs, dtype=np.float32)
        self.fs = float(classifier.sampling_rate)
        self.n_envs = int(n_envs)
        self.max_steps = int(max_steps)
        self.reward_cfg = reward or RewardConfig()
        self.kinds = tuple(kinds)
        self.levels_db = tuple(levels_db)
        self.segment_s = float(segment_s)
        self.beat_aligned = bool(beat_aligned)
        self.n_types = len(self.kinds) * len(self.levels_db) + 1
        self.localize_budget = int(localize_budget)
        if probs is None:
            probs = np.concatenate(
                [
                    classifier.predict_proba(self.inputs[i : i + batch_size])
                    for i in range(0, len(self.inputs), batch_size)
                ]
            )
        self.probs = np.asarray(probs, dtype=np.float64)
        self.targets = [diagnosed_targets(p, classifier)[0] for p in self.probs]
        pool = [
            i
            for i, t in enumerate(self.targets)
            if not only_findings
            or (t.multilabel and self.probs[i, t.index] >= t.threshold and not is_normal(t.label))
            or (not t.multilabel and t.index != 0)
        ]
        if not pool:  # a classifier that reports no finding anywhere: learn to flip whatever it says
            pool = list(range(len(self.inputs)))
        if not pool:
            raise ValueError("no training inputs")
        self.pool = np.asarray(pool)
        self._grids: dict[int, tuple[SegmentGrid, np.ndarray]] = {}
        self._probed: dict[int, tuple] = {}  # input -> its localisation's probe features (see localize_budget)
        self.rng = np.random.default_rng(seed)
        self.episodes: list[Episode] = []
        self.steps = np.zeros(self.n_envs, dtype=int)
        self.episode_returns = np.zeros(self.n_envs)
        self.finished: list[dict] = []  # one dict per finished episode: return, flipped, steps, snr_db

    # ------------------------------------------------------------------ gym-like API
    def reset(self, seed: int | None = None) -> dict[str, np.ndarray]:
        """Start ``n_envs`` fresh episodes; ``seed`` re-seeds the draws. Returns the observation dict."""
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        self.episodes = [self._new_episode() for _ in range(self.n_envs)]
        self.steps[:] = 0
        self.episode_returns[:] = 0.0
        return self.observe()

    def step(self, actions: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, list[dict]]:
        """Apply ``actions`` int ``[n_envs, 2]`` (cell, action_type), one batched classifier call.

        Returns ``(obs, reward [n_envs], done [n_envs], infos)``. A finished episode (flipped, or ``max_steps``
        reached) is replaced by a fresh one at once, so ``obs`` row ``i`` is then the fresh episode's first
        state; ``infos[i]`` holds the finished episode's return, flip, steps and SNR.
        """
        actions = np.asarray(actions, dtype=int).reshape(self.n_envs, 2)
        cfg = self.reward_cfg
        n_add = len(self.kinds) * len(self.levels_db)
        rows, before = [], []
        for ep, (cell, atype) in zip(self.episodes, actions):
            cell = int(np.clip(cell, 0, ep.grid.n_cells - 1))
            kind, level = (atype // len(self.levels_db), atype % len(self.levels_db)) if atype < n_add else (-1, 0)
            before.append((ep.p, ep.l2(), ep.flipped, cell, kind))
            ep.set_cell(cell, int(kind), int(level))
            rows.append(ep.signal())
        probs = self.classifier.predict_proba(np.stack(rows))
        rewards = np.zeros(self.n_envs)
        dones = np.zeros(self.n_envs, dtype=bool)
        infos: list[dict] = [{} for _ in range(self.n_envs)]
        for i, ep in enumerate(self.episodes):
            p_prev, l2_prev, flipped_prev, cell, kind = before[i]
            ep.probs = np.asarray(probs[i], dtype=np.float64)
            ep.queries += 1
            d_l2 = (ep.l2() - l2_prev) / ep.signal_l2
            drop = p_prev - ep.p
            ep.record_probe([cell], probs[i : i + 1], p_prev, [d_l2])
            ratio = np.clip(drop / (cfg.l2_floor + abs(d_l2)), -cfg.ratio_clip, cfg.ratio_clip)
            r = cfg.ratio_weight * ratio - cfg.energy_cost * d_l2 - cfg.query_cost
            if ep.flipped and not flipped_prev:
                r += cfg.bonus(ep.snr_db())
            elif flipped_prev and not ep.flipped:
                r -= cfg.flip_bonus
            rewards[i] = r
            self.steps[i] += 1
            self.episode_returns[i] += r
            if ep.flipped or self.steps[i] >= self.max_steps:
                dones[i] = True
                infos[i] = {
                    "episode_return": float(self.episode_returns[i]),
                    "flipped": ep.flipped,
                    "steps": int(self.steps[i]),
                    "snr_db": ep.snr_db(),
                    "truncated": not ep.flipped,
                }
                self.finished.append(infos[i])
                self.episodes[i] = self._new_episode()
                self.steps[i] = 0
                self.episode_returns[i] = 0.0
        return self.observe(), rewards, dones, infos

    def observe(self) -> dict[str, np.ndarray]:
        n_cells = max(ep.grid.n_cells for ep in self.episodes)
        cells = np.zeros((self.n_envs, n_cells, len(CELL_FEATURES)), dtype=np.float32)
        mask = np.zeros((self.n_envs, n_cells), dtype=bool)
        for i, ep in enumerate(self.episodes):
            c = ep.grid.n_cells
            cells[i, :c] = ep.observe_cells()
            mask[i, :c] = True
        glob = np.stack([ep.observe_global() for ep in self.episodes])
        return {"cells": cells, "globals": glob, "mask": mask}

    # ------------------------------------------------------------------ helpers
    def _new_episode(self) -> Episode:
        i = int(self.pool[self.rng.integers(len(self.pool))])
        if i not in self._grids:
            x = self.inputs[i]
            grid = make_grid(x, self.fs, segment_s=self.segment_s, beat_aligned=self.beat_aligned)
            self._grids[i] = (grid, cell_features(x, grid))
        grid, feats = self._grids[i]
        ep = Episode(
            self.inputs[i],
            self.fs,
            self.probs[i],
            self.targets[i],
            self.rng,
            kinds=self.kinds,
            levels_db=self.levels_db,
            grid=grid,
            signal_features=feats,
            query_budget=self.max_steps + self.localize_budget,
        )
        if self.localize_budget:
            if i not in self._probed:  # dropout probes are deterministic: measure each input once
                self.localize(ep, QueryCounter(self.classifier), self.localize_budget)
                self._probed[i] = (
                    ep.probed.copy(),
                    ep.last_drop.copy(),
                    ep.last_drop_per_l2.copy(),
                    ep.max_drop.copy(),
                    ep.queries,
                )
            probed, last, per_l2, max_drop, queries = self._probed[i]
            ep.probed, ep.last_drop, ep.last_drop_per_l2 = probed.copy(), last.copy(), per_l2.copy()
            ep.max_drop, ep.queries = max_drop.copy(), queries
        return ep


@functools.lru_cache(maxsize=64)
def _taper(n: int) -> np.ndarray:
    """float32 Tukey window of ``n`` samples (cached: every episode tapers the same cell lengths)."""
    from scipy.signal.windows import tukey

    out = tukey(n, _TAPER_ALPHA).astype(np.float32)
    out.flags.writeable = False
    return out


def _tapered_unit(piece: np.ndarray) -> np.ndarray:
    """float32 noise ``[..., samples]`` of one cell, tapered (`_taper`) and scaled to unit RMS on its last axis."""
    piece = piece * _taper(int(piece.shape[-1]))
    rms = np.sqrt(np.mean(piece.astype(np.float64) ** 2, axis=-1, keepdims=True)) + 1e-12
    return (piece / rms).astype(np.float32)
