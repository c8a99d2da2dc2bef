"""The training data of a hardening: window sources (in memory, or the parent's MIT-BIH DS1 split), the agent's
pool of minimal flips, and `HardeningMix`, which draws batches of clean, noisy and agent-distorted rows."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from scipy.signal import resample_poly

from ecglens.agent.env import lead_power
from ecglens.agent.search import explain
from ecglens.datasets.mitdb import CLASS_NAMES, DS1, FS_HZ
from ecglens.distortions import KINDS, NSTDB_SNR_LEVELS_DB, noise_batch, scale_to_snr
from ecglens.ecg import Ecg
from ecglens.errors import ClassifierError
from ecglens.hardening.config import MAINS_HZ, HardenConfig
from ecglens.hardening.parent import Trainable


class WindowSource(Protocol):
    """Anything that draws labelled windows: ``draw(batch, rng) -> (X [batch, leads, samples] float32 mV,
    Y [batch, classes] float32)`` (e.g. `ecglens.classifiers.train.WindowSampler`, `ArraySampler`)."""

    def draw(self, batch: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]: ...


class ArraySampler:
    """Labelled windows held in memory, drawn uniformly with replacement.

    X : float32 ``[n, leads, samples]`` in mV; Y : ``[n, classes]`` targets.
    """

    def __init__(self, X: np.ndarray, Y: np.ndarray):
        if len(X) != len(Y) or len(X) == 0:
            raise ValueError(f"need as many targets as windows and at least one window, got {len(X)} and {len(Y)}")
        self.X = np.asarray(X, dtype=np.float32)
        self.Y = np.asarray(Y, dtype=np.float32)

    def draw(self, batch: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        i = rng.integers(len(self.X), size=batch)
        return self.X[i].copy(), self.Y[i].copy()


@dataclass
class AdversarialPool:
    """The agent's minimal flipping distortions of training windows, with the windows' original labels.

    X : float32 ``[m, leads, samples]`` clean windows (mV); noise : float32 ``[m, leads, samples]`` the
    distortion ``adversarial.signal - window``; Y : ``[m, classes]`` original targets; snr_db : ``[m]`` the
    flipping SNR (dB); tried : windows explained; queries : classifier rows the agent used in all.
    """

    X: np.ndarray
    noise: np.ndarray
    Y: np.ndarray
    snr_db: np.ndarray
    tried: int = 0
    queries: int = 0
    method: str = ""

    def __len__(self) -> int:
        return int(self.X.shape[0])

    def summary(self) -> dict[str, Any]:
        """JSON-able figures for the card."""
        finite = self.snr_db[np.isfinite(self.snr_db)]
        return {
            "windows_explained": int(self.tried),
            "flipped": len(self),
            "agent_queries": int(self.queries),
            "method": self.method,
            "median_flip_snr_db": round(float(np.median(finite)), 2) if finite.size else None,
            "label_counts": [int(v) for v in (self.Y > 0.5).sum(axis=0)] if len(self) else [],
        }


def adversarial_pool(
    classifier: Any,
    source: WindowSource,
    n_windows: int,
    rng: np.random.Generator,
    *,
    query_budget: int = 300,
    seed: int = 0,
    progress: Callable[[float], None] | None = None,
) -> AdversarialPool:
    """Run `ecglens.explain` against ``classifier`` on ``n_windows`` windows drawn from ``source``.

    Parameters
    ----------
    classifier : Classifier
        The parent (its input rate, leads and window must be those of ``source``'s windows).
    source : WindowSource
        Training windows (never validation or test windows).
    n_windows : int
        Windows to explain.
    rng : np.random.Generator
        Draws the windows.
    query_budget : int
        Budget of each explanation. Default: 300.
    seed : int
        Explanation ``i`` gets seed ``seed * 100_003 + i``. Default: 0.
    progress : callable or None
        Called with the fraction of windows done. Default: None.

    Returns
    -------
    AdversarialPool
        The flipped windows only.
    """
    if n_windows <= 0:
        leads, n = len(classifier.lead_names), int(round(classifier.window_s * classifier.sampling_rate))
        empty = np.zeros((0, leads, n), np.float32)
        return AdversarialPool(
            empty, empty.copy(), np.zeros((0, len(classifier.class_names)), np.float32), np.zeros(0), 0, 0, "none"
        )
    X, Y = source.draw(n_windows, rng)
    keep_x, keep_noise, keep_y, snrs, queries, methods = [], [], [], [], 0, set()
    for i in range(n_windows):
        ecg = Ecg(
            signal=X[i],
            fs=float(classifier.sampling_rate),
            leads=tuple(classifier.lead_names),
            name=f"train-window-{i}",
        )
        exp = explain(ecg, classifier, query_budget=query_budget, seed=seed * 100_003 + i)
        queries += int(exp.queries)
        methods.add(exp.method)
        adv = exp.adversarial
        if adv is not None and adv.flipped and adv.noise.shape == X[i].shape and np.any(adv.noise):
            keep_x.append(X[i])
            keep_noise.append(adv.noise.astype(np.float32))
            keep_y.append(Y[i])
            snrs.append(float(adv.snr_db))
        if progress:
            progress((i + 1) / n_windows)
    shape = (0,) + X.shape[1:]
    return AdversarialPool(
        X=np.stack(keep_x) if keep_x else np.zeros(shape, np.float32),
        noise=np.stack(keep_noise) if keep_noise else np.zeros(shape, np.float32),
        Y=np.stack(keep_y) if keep_y else np.zeros((0, Y.shape[1]), np.float32),
        snr_db=np.asarray(snrs, dtype=np.float64),
        tried=n_windows,
        queries=queries,
        method="+".join(sorted(methods)),
    )


@dataclass
class MixBatch:
    """One training batch of the hardening mix.

    X : float32 ``[batch, leads, samples]`` mV; Y : float32 ``[batch, classes]`` original labels;
    clean : float32 ``[batch, leads, samples]`` each row's window before any noise (equal to X for clean rows);
    source : int8 ``[batch]`` index into `SOURCES` (clean, noise, adversarial); snr_db : ``[batch]`` the noise SNR
    (dB) of noisy rows, NaN elsewhere; kind : ``[batch]`` the noise kind of noisy rows, "" elsewhere.
    """

    X: np.ndarray
    Y: np.ndarray
    clean: np.ndarray
    source: np.ndarray
    snr_db: np.ndarray
    kind: np.ndarray


class HardeningMix:
    """Training batches mixing clean windows, realistic noise at NSTDB SNRs and the agent's distortions.

    Parameters
    ----------
    source : WindowSource
        The parent's training windows.
    pool : AdversarialPool or None
        The agent's distortions; when empty, its share goes to the noisy rows.
    fs : float
        Sampling rate of the windows in Hz.
    config : HardenConfig
        ``mix``, ``snr_levels_db``, ``snr_jitter_db``, ``kinds``, ``adversarial_gain_db``.

    The same generator state gives the same batch, bit for bit (`draw`).
    """

    def __init__(self, source: WindowSource, pool: AdversarialPool | None, fs: float, config: HardenConfig):
        self.source = source
        self.pool = pool if pool is not None and len(pool) else None
        self.fs = float(fs)
        self.config = config
        mix = np.asarray(config.mix, dtype=np.float64)
        if mix.shape != (3,) or (mix < 0).any() or mix.sum() <= 0:
            raise ValueError(f"mix must be three non-negative shares (clean, noise, adversarial), got {config.mix}")
        if self.pool is None:
            mix = np.array([mix[0], mix[1] + mix[2], 0.0])
        self.mix = mix / mix.sum()
        # Kinds that cannot exist at this rate (e.g. 60 Hz mains at 100 Hz) are left out with the reason.
        self.skipped: dict[str, str] = {}
        self.kinds: list[tuple[str, float]] = []
        given = dict(config.kind_weights)
        if set(given) - set(KINDS) or any(w < 0 for w in given.values()):
            raise ValueError(f"kind_weights must map kinds ({', '.join(KINDS)}) to non-negative weights, got {given}")
        weights = [float(given.get(kind, 1.0)) for kind in config.kinds]
        kind_p: list[float] = []
        for kind, weight in zip(config.kinds, weights):
            variants = MAINS_HZ if kind == "powerline" else (MAINS_HZ[0],)
            for mains in variants:
                try:
                    noise_batch(kind, 1, 8, self.fs, np.random.default_rng(0), mains_hz=mains)
                except ValueError as exc:
                    self.skipped[f"{kind}@{mains:g}Hz" if kind == "powerline" else kind] = str(exc)
                    continue
                self.kinds.append((kind, mains))
                kind_p.append(weight / len(variants))  # 50 and 60 Hz mains share powerline's weight
        if (not self.kinds or sum(kind_p) <= 0) and self.mix[1] > 0:
            raise ValueError(f"no distortion kind can be drawn at {self.fs:g} Hz: {self.skipped}")
        self.kind_p = np.asarray(kind_p, dtype=np.float64) / max(sum(kind_p), 1e-12)

    def draw(self, batch: int, rng: np.random.Generator) -> MixBatch:
        """A batch of ``batch`` rows; shares follow ``mix`` in expectation (multinomial per batch)."""
        counts = rng.multinomial(batch, self.mix)
        n_clean, n_noise, n_adv = (int(c) for c in counts)
        X, Y = self.source.draw(n_clean + n_noise, rng)
        X = X.astype(np.float32, copy=True)
        clean = [X.copy()]
        snr = np.full(batch, np.nan)
        kinds = np.full(batch, "", dtype="<U16")
        # Noisy rows: kind (and mains) and SNR per row; one noise_batch call per kind for all its rows and leads.
        if n_noise:
            rows = np.arange(n_clean, n_clean + n_noise)
            pick = rng.choice(len(self.kinds), size=n_noise, p=self.kind_p)
            levels = np.asarray(self.config.snr_levels_db, dtype=np.float64)
            snr[rows] = rng.choice(levels, size=n_noise) + rng.uniform(
                -self.config.snr_jitter_db, self.config.snr_jitter_db, size=n_noise
            )
            leads, n = X.shape[1], X.shape[2]
            for k, (kind, mains) in enumerate(self.kinds):
                mine = rows[pick == k]
                if not mine.size:
                    continue
                raw = noise_batch(kind, mine.size * leads, n, self.fs, rng, mains_hz=mains).reshape(mine.size, leads, n)
                power = quick_signal_power(X[mine])
                for j, r in enumerate(mine):
                    X[r] += scale_to_snr(raw[j], power[j], float(snr[r]))
                    kinds[r] = kind
        parts_x, parts_y = [X], [Y]
        if n_adv:
            i = rng.integers(len(self.pool), size=n_adv)
            lo, hi = self.config.adversarial_gain_db
            gain = (10.0 ** (rng.uniform(lo, hi, size=n_adv) / 20.0)).astype(np.float32)
            parts_x.append(self.pool.X[i] + self.pool.noise[i] * gain[:, None, None])
            parts_y.append(self.pool.Y[i])
            clean.append(self.pool.X[i])
        source = np.concatenate([np.zeros(n_clean, np.int8), np.ones(n_noise, np.int8), np.full(n_adv, 2, np.int8)])
        return MixBatch(
            np.concatenate(parts_x).astype(np.float32),
            np.concatenate(parts_y).astype(np.float32),
            np.concatenate(clean).astype(np.float32),
            source,
            snr,
            kinds,
        )


def quick_signal_power(X: np.ndarray) -> np.ndarray:
    """A fast stand-in for the nst signal power of each lead of each window: ``((p99 - p1) ** 2) / 8`` (mV²).

    ``X`` is ``[n, leads, samples]``; returns float64 ``[n, leads]``. The exact measure
    (`ecglens.qrs.signal_power`, QRS detection) costs ~15 ms a window, more than a training step's forward pass
    for a batch's noisy rows; on 80 DS1 windows this proxy read 1.2 dB (MLII) and 2.6 dB (V1) higher in the
    median (5-95 %: -1.5 to +8.8 dB), so training noise is, if anything, a little stronger than its nominal SNR.
    A flat lead gets its variance (so noise still scales).
    """
    lo, hi = np.percentile(np.asarray(X, dtype=np.float64), [1.0, 99.0], axis=-1)
    power = (hi - lo) ** 2 / 8.0
    return np.where(power > 0, power, np.var(X, axis=-1) + 1e-8)


def noisy_copies(
    X: np.ndarray, fs: float, seed: int, kinds: Sequence[str] = KINDS, levels_db: Sequence[float] = NSTDB_SNR_LEVELS_DB
) -> np.ndarray:
    """``X`` with seeded noise, window ``i`` getting kind ``i % len(kinds)`` at level ``(i // len(kinds)) %
    len(levels)`` (nst-style SNR per lead): a fixed noisy validation set. float32, the shape of ``X``."""
    rng = np.random.default_rng([seed, 7])
    out = np.asarray(X, dtype=np.float32).copy()
    for i in range(len(out)):
        kind = kinds[i % len(kinds)]
        level = float(levels_db[(i // len(kinds)) % len(levels_db)])
        try:
            raw = noise_batch(kind, out.shape[1], out.shape[2], fs, rng)
        except ValueError:  # a kind that cannot exist at this rate: the window stays clean
            continue
        out[i] += scale_to_snr(raw, lead_power(out[i], fs), level)
    return out


# -------------------------------------------------------------------------------------------------- MIT-BIH
def mitdb_sources(
    parent: Trainable, data_dir: str | Path | None = None, *, hold_out: Sequence[str] = ()
) -> tuple[WindowSource, np.ndarray, np.ndarray]:
    """The parent's DS1 training sampler and DS1 validation windows (``classifiers.train.split_ds1``) at its
    input leads, window and rate; records in ``hold_out`` are left out of both (for patient-wise recipe
    experiments on DS1). Raises ClassifierError when its classes are not the MIT-BIH ones, ValueError when a
    held-out record is not a DS1 record."""
    from ecglens.classifiers.train import WindowSampler, split_ds1  # imports torch

    card = parent.card
    if tuple(card.classes) != CLASS_NAMES:
        raise ClassifierError(
            f"{parent.path}: hardening on MIT-BIH needs the classes {list(CLASS_NAMES)} "
            f"(its training data's labels), the card has {card.classes}"
        )
    unknown = sorted(set(hold_out) - set(DS1))
    if unknown:
        raise ValueError(f"hold-out records {unknown} are not DS1 records ({', '.join(DS1)})")
    train_spans, val_spans = split_ds1(
        data_dir, leads=tuple(card.leads), records=tuple(r for r in DS1 if r not in set(hold_out))
    )
    window = int(round(card.window_s * FS_HZ))
    sampler: WindowSource = WindowSampler(train_spans, window)
    val_X, val_Y = WindowSampler(val_spans, window).grid_windows(window)
    if abs(card.sampling_rate - FS_HZ) > 1e-9:
        sampler = _Resampled(sampler, FS_HZ, card.sampling_rate)
        val_X = _resample(val_X, FS_HZ, card.sampling_rate)
    return sampler, val_X, val_Y


def _resample(X: np.ndarray, fs_in: float, fs_out: float) -> np.ndarray:
    r = Fraction(fs_out / fs_in).limit_denominator(1000)
    return resample_poly(X, r.numerator, r.denominator, axis=-1).astype(np.float32)


class _Resampled:
    """A window source at another sampling rate (polyphase resampling of each drawn batch)."""

    def __init__(self, source: WindowSource, fs_in: float, fs_out: float):
        self.source, self.fs_in, self.fs_out = source, fs_in, fs_out

    def draw(self, batch: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        X, Y = self.source.draw(batch, rng)
        return _resample(X, self.fs_in, self.fs_out), Y
