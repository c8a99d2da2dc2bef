"""The segment grid over one classifier input, and the per-cell signal features the policy ranks cells by.

A *cell* is one lead x one time window of the input. Cells are numbered lead-major:
``cell = lead * n_windows + window``. Time windows are either fixed (``segment_s`` long, default 0.25 s) or
beat-aligned (one QRS cell per R-peak, ``[R - 0.10 s, R + 0.15 s)``, the gaps between filled with
windows of about ``segment_s``).

The features are computed from the signal alone (never from the classifier): energy, slope, QRS-ness, distance
to the nearest R-peak, prematurity of the beat and how unusual the beat's morphology is on that lead. They are
what lets the policy rank cells *before* it spends a single query.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

# Beat template span around each R-peak, in seconds (covers P wave to T wave onset for typical rates).
_BEAT_BEFORE_S = 0.20
_BEAT_AFTER_S = 0.40
# QRS span around each R-peak, in seconds.
_QRS_BEFORE_S = 0.10
_QRS_AFTER_S = 0.15

SIGNAL_FEATURES = (
    "log_energy",  # log of the cell's mean-removed RMS over the lead's RMS
    "log_slope",  # log of the cell's largest sample-to-sample slope over the lead's
    "qrs_overlap",  # share of the cell inside a QRS span
    "r_distance",  # distance from the cell to the nearest R-peak, in median RR intervals (capped at 1)
    "beat_deviation",  # morphology distance of the nearest beat from the lead's median beat (0 = typical)
    "beat_prematurity",  # 1 - RR before the nearest beat / median RR (positive = premature)
    "beat_amplitude",  # log of the nearest beat's peak-to-peak over the lead's median beat's
    "time_position",  # cell centre / input length, in [0, 1]
    "lead_energy",  # log of the lead's RMS over the mean lead RMS
)


@dataclass(frozen=True)
class SegmentGrid:
    """Cells of one classifier input.

    Attributes
    ----------
    fs : float
        Sampling rate in Hz.
    n_leads, n_samples : int
        Input shape ``[leads, samples]``.
    bounds : np.ndarray
        int ``[n_windows, 2]``: start (inclusive) and end (exclusive) sample of each time window; the windows
        partition ``[0, n_samples)`` and are shared by all leads.
    r_peaks : np.ndarray
        int ``[beats]``: R-peak sample positions (may be empty).
    beat_aligned : bool
        Whether the windows were aligned to the R-peaks.
    """

    fs: float
    n_leads: int
    n_samples: int
    bounds: np.ndarray
    r_peaks: np.ndarray
    beat_aligned: bool = False

    @property
    def n_windows(self) -> int:
        return int(self.bounds.shape[0])

    @property
    def n_cells(self) -> int:
        return self.n_leads * self.n_windows

    @cached_property
    def sample_window(self) -> np.ndarray:
        """int ``[n_samples]``: the time window holding each sample (computed once per grid)."""
        out = np.zeros(self.n_samples, dtype=np.int64)
        for w, (a, b) in enumerate(self.bounds):
            out[a:b] = w
        out.flags.writeable = False
        return out

    def cell_lead(self, cell: int | np.ndarray) -> int | np.ndarray:
        return cell // self.n_windows

    def cell_window(self, cell: int | np.ndarray) -> int | np.ndarray:
        return cell % self.n_windows

    def cell_span(self, cell: int) -> tuple[int, int, int]:
        """``(lead, start_sample, end_sample)`` of ``cell``."""
        a, b = self.bounds[cell % self.n_windows]
        return int(cell // self.n_windows), int(a), int(b)

    def cell_index(self, cell: int) -> tuple[int, slice]:
        """The numpy index of ``cell`` in a ``[leads, samples]`` input (the agent writes a cell as ``x[index]``)."""
        a, b = self.bounds[cell % self.n_windows]
        return int(cell // self.n_windows), slice(int(a), int(b))

    @property
    def shape(self) -> tuple[int, int]:
        """The input shape ``(leads, samples)``."""
        return (self.n_leads, self.n_samples)

    def feature_mask(self) -> np.ndarray:
        """int64 ``[leads, samples]``: the cell number of every sample (captum's ``feature_mask``)."""
        return np.arange(self.n_leads, dtype=np.int64)[:, None] * self.n_windows + self.sample_window[None, :]

    def cell_mask(self, cells) -> np.ndarray:
        """bool ``[leads, samples]``: True on the samples of ``cells``."""
        return self.cell_masks([cells])[0]

    def cell_masks(self, groups) -> np.ndarray:
        """bool ``[len(groups), leads, samples]``: the `cell_mask` of each group of cells, in one gather (instead of
        a slice per cell: a 12-lead ranking's prefixes hold hundreds of cells)."""
        on = np.zeros((len(groups), self.n_cells), dtype=bool)
        for i, cells in enumerate(groups):
            if isinstance(cells, np.ndarray) and cells.dtype.kind in "iu":
                on[i, cells.ravel()] = True
            else:
                on[i, np.fromiter((int(c) for c in cells), dtype=np.int64)] = True
        return on.reshape(len(groups), self.n_leads, self.n_windows)[:, :, self.sample_window]

    def dropout_fill(self, signal: np.ndarray) -> np.ndarray:
        """float32 ``[leads, samples]``: what dropout puts in place of a cell, every sample replaced by its cell's
        median (each cell a flat line)."""
        out = np.empty(signal.shape, dtype=np.float32)
        for a, b in self.bounds:
            out[:, a:b] = np.median(signal[:, a:b], axis=1, keepdims=True)
        return out

    def cell_energy(self, x: np.ndarray) -> np.ndarray:
        """float64 ``[n_cells]``: sum of squares of ``x`` (``[leads, samples]``, e.g. a distortion) in each cell."""
        x = np.asarray(x).astype(np.float64)
        return np.bincount(self.feature_mask().ravel(), weights=(x**2).ravel(), minlength=self.n_cells)

    def cell_times(self, cell: int) -> tuple[int, float, float]:
        """``(lead, start_s, end_s)`` of ``cell``, seconds from the input's start."""
        lead, a, b = self.cell_span(cell)
        return lead, a / self.fs, b / self.fs

    def to_samples(self, cell_values: np.ndarray) -> np.ndarray:
        """Spread per-cell values ``[n_cells]`` onto the input grid: float32 ``[leads, samples]``."""
        out = np.zeros((self.n_leads, self.n_samples), dtype=np.float32)
        values = np.asarray(cell_values, dtype=np.float32).reshape(self.n_leads, self.n_windows)
        for w, (a, b) in enumerate(self.bounds):
            out[:, a:b] = values[:, w : w + 1]
        return out


def detect_r_peaks(signal: np.ndarray, fs: float) -> np.ndarray:
    """R-peak sample positions of a ``[leads, samples]`` signal in mV sampled at ``fs`` Hz.

    neurokit2's default detector runs on the lead with the largest cleaned peak-to-peak amplitude among the two
    with the steepest slopes (where QRS complexes stand out most). Returns an empty int array when none are found (flat or too short).
    """
    import neurokit2 as nk

    signal = np.asarray(signal, dtype=np.float64)
    if signal.shape[1] < int(fs):  # neurokit2 needs about a second of signal
        return np.zeros(0, dtype=int)
    # Clean only the two leads with the steepest robust slopes (QRS complexes); cleaning all 12 costs ~0.1 s.
    slopes = [float(np.percentile(np.abs(np.diff(lead)), 99)) if np.all(np.isfinite(lead)) else -1.0 for lead in signal]
    best, best_ptp = None, 0.0
    for i in np.argsort(slopes)[::-1][:2]:
        lead = signal[i]
        if slopes[i] <= 0 or np.ptp(lead) == 0:
            continue
        cleaned = nk.ecg_clean(lead, sampling_rate=int(round(fs)))
        ptp = float(np.percentile(cleaned, 99.5) - np.percentile(cleaned, 0.5))
        if ptp > best_ptp:
            best, best_ptp = cleaned, ptp
    if best is None:
        return np.zeros(0, dtype=int)
    try:
        _, info = nk.ecg_peaks(best, sampling_rate=int(round(fs)))
    except Exception:  # neurokit2 raises assorted errors on pathological input; no peaks is the honest answer
        return np.zeros(0, dtype=int)
    peaks = np.asarray(info.get("ECG_R_Peaks", []), dtype=int)
    return np.unique(peaks[(peaks >= 0) & (peaks < signal.shape[1])])


def make_grid(
    signal: np.ndarray,
    fs: float,
    *,
    segment_s: float = 0.25,
    beat_aligned: bool = False,
    r_peaks: np.ndarray | None = None,
) -> SegmentGrid:
    """The segment grid over a ``[leads, samples]`` input.

    Parameters
    ----------
    signal : np.ndarray
        ``[leads, samples]`` in mV.
    fs : float
        Sampling rate in Hz.
    segment_s : float
        Window length in seconds (the last window takes the remainder). Default: 0.25.
    beat_aligned : bool
        One window per QRS complex (``[R - 0.10 s, R + 0.15 s)``), gaps filled with windows of about
        ``segment_s``; falls back to fixed windows when no R-peak is found. Default: False.
    r_peaks : np.ndarray or None
        R-peak samples; detected with `detect_r_peaks` when None. Default: None.
    """
    if segment_s <= 0:
        raise ValueError(f"segment_s must be positive, got {segment_s}")
    n_leads, n_samples = signal.shape
    if r_peaks is None:
        r_peaks = detect_r_peaks(signal, fs)
    step = max(1, int(round(segment_s * fs)))
    cuts: list[int]
    if beat_aligned and len(r_peaks):
        cuts = [0]
        for r in r_peaks:
            a = max(int(r - _QRS_BEFORE_S * fs), cuts[-1])
            b = min(int(r + _QRS_AFTER_S * fs), n_samples)
            if b <= a:
                continue
            cuts.extend(_fill(cuts[-1], a, step))
            cuts.extend([a, b])
        cuts.extend(_fill(cuts[-1], n_samples, step))
        cuts.append(n_samples)
        cuts = sorted(set(cuts))
    else:
        # Same numbering as ecglens.baselines.cells.fixed_grid (the baselines' and metrics' grid): the last window of a
        # lead is shorter when the input is not a whole number of windows.
        cuts = list(range(0, n_samples, step)) + [n_samples]
    bounds = np.array([[a, b] for a, b in zip(cuts[:-1], cuts[1:]) if b > a], dtype=int)
    return SegmentGrid(
        fs=float(fs),
        n_leads=int(n_leads),
        n_samples=int(n_samples),
        bounds=bounds,
        r_peaks=np.asarray(r_peaks, dtype=int),
        beat_aligned=bool(beat_aligned and len(r_peaks)),
    )


def _fill(a: int, b: int, step: int) -> list[int]:
    """Cut points strictly inside ``(a, b)`` making pieces of about ``step`` samples."""
    if b - a <= step:
        return []
    n = int(round((b - a) / step))
    return [int(round(a + i * (b - a) / n)) for i in range(1, n)]


def cell_features(signal: np.ndarray, grid: SegmentGrid) -> np.ndarray:
    """Signal features per cell (see `SIGNAL_FEATURES`): float32 ``[n_cells, len(SIGNAL_FEATURES)]``.

    Computed from the clean ``[leads, samples]`` input alone, in a few milliseconds for a 10-s 12-lead input.
    """
    x = np.asarray(signal, dtype=np.float64)
    x = x - np.median(x, axis=1, keepdims=True)
    fs, n_leads, n_samples = grid.fs, grid.n_leads, grid.n_samples
    eps = 1e-6
    lead_rms = np.sqrt(np.mean(x**2, axis=1)) + eps
    slope = np.abs(np.diff(x, axis=1, prepend=x[:, :1]))
    lead_slope = np.percentile(slope, 99, axis=1) + eps

    peaks = grid.r_peaks
    rr = np.diff(peaks) if len(peaks) > 1 else np.array([fs], dtype=float)
    median_rr = float(np.median(rr)) if len(rr) else fs
    dev, prem, amp = _beat_stats(x, peaks, fs, median_rr)  # [leads, beats], [beats], [leads, beats]

    qrs_mask = np.zeros(n_samples, dtype=bool)
    for r in peaks:
        qrs_mask[max(0, int(r - 0.06 * fs)) : min(n_samples, int(r + 0.08 * fs))] = True

    n_w = grid.n_windows
    feats = np.zeros((n_leads, n_w, len(SIGNAL_FEATURES)), dtype=np.float64)
    for w, (a, b) in enumerate(grid.bounds):
        piece = x[:, a:b]
        centre = 0.5 * (a + b)
        feats[:, w, 0] = np.log(
            np.sqrt(np.mean((piece - piece.mean(axis=1, keepdims=True)) ** 2, axis=1)) / lead_rms + eps
        )
        feats[:, w, 1] = np.log(slope[:, a:b].max(axis=1) / lead_slope + eps)
        feats[:, w, 2] = qrs_mask[a:b].mean()
        if len(peaks):
            inside = (peaks >= a) & (peaks < b)
            j = int(np.flatnonzero(inside)[0]) if inside.any() else int(np.argmin(np.abs(peaks - centre)))
            dist = 0.0 if inside.any() else min(abs(peaks[j] - a), abs(peaks[j] - b)) / median_rr
            feats[:, w, 3] = min(1.0, dist)
            feats[:, w, 4] = dev[:, j]
            feats[:, w, 5] = prem[j]
            feats[:, w, 6] = amp[:, j]
        else:
            feats[:, w, 3] = 1.0
        feats[:, w, 7] = centre / n_samples
    feats[:, :, 8] = np.log(lead_rms / lead_rms.mean())[:, None]
    feats = np.clip(np.nan_to_num(feats, nan=0.0, posinf=0.0, neginf=0.0), -10.0, 10.0)
    return feats.reshape(n_leads * n_w, -1).astype(np.float32)


def _beat_stats(
    x: np.ndarray, peaks: np.ndarray, fs: float, median_rr: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-beat morphology deviation ``[leads, beats]``, prematurity ``[beats]`` and log amplitude ratio
    ``[leads, beats]`` against the lead's median beat."""
    n_leads, n_samples = x.shape
    n_beats = len(peaks)
    dev = np.zeros((n_leads, n_beats))
    amp = np.zeros((n_leads, n_beats))
    prem = np.zeros(n_beats)
    if n_beats == 0:
        return dev, prem, amp
    before, after = int(_BEAT_BEFORE_S * fs), int(_BEAT_AFTER_S * fs)
    padded = np.pad(x, ((0, 0), (before, after)), mode="edge")
    beats = np.stack([padded[:, r : r + before + after] for r in peaks], axis=1)  # [leads, beats, span]
    beats = beats - np.median(beats, axis=2, keepdims=True)
    template = np.median(beats, axis=1, keepdims=True)
    norm = np.sqrt(np.mean(template**2, axis=2)) + 1e-6  # [leads, 1]
    dev = np.sqrt(np.mean((beats - template) ** 2, axis=2)) / norm
    amp = np.log((np.ptp(beats, axis=2) + 1e-6) / (np.ptp(template, axis=2) + 1e-6))
    rr_before = np.diff(peaks, prepend=peaks[0] - median_rr)
    prem = 1.0 - rr_before / median_rr
    return dev, prem, amp
