"""QRS detection and the nst-style ECG signal power that SNRs in ECG Lens are measured against.

The MIT-BIH Noise Stress Test tool ``nst`` (G. Moody, WFDB software package, ``app/nst.c``) does not use the
mean square of the ECG as its signal power. It calls ``sigamp -a atr`` (``app/sigamp.c``), which measures, for
each of the first 300 beats annotated NORMAL, the peak-to-peak amplitude of each signal in the window from
0.05 s before to 0.05 s after the beat annotation, sorts these amplitudes, drops the lowest and the highest
``n // 20`` (5 % each side: the outliers), and averages the rest (a trimmed mean ``A``). ``nst`` then sets the
noise gain so that ``RMS(noise) = A * sqrt(2) / 4 * 10**(-SNR / 20)``, i.e.

    SNR = 10 * log10(S / N),   S = A**2 / 8,   N = RMS(noise)**2,

``S`` being the power of a sinusoid whose peak-to-peak amplitude is ``A``. `signal_power` computes ``S`` that
way, with beats found by `detect_qrs` (there are no reference annotations on an uploaded record, and beats are
not typed, so all detected beats are measured; the 5 % trimming discards ectopic or noisy outliers).

References
----------
Moody GB, Muldrow WE, Mark RG. A noise stress test for arrhythmia detectors. Computers in Cardiology 11:381-384
(1984). WFDB Software Package, ``nst.c`` and ``sigamp.c`` (https://physionet.org/physiotools/wfdb.shtml).
Pan J, Tompkins WJ. A real-time QRS detection algorithm. IEEE Trans Biomed Eng 32(3):230-236 (1985).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from functools import lru_cache

import numpy as np
from scipy import signal as sps

# sigamp's default measurement window around each beat annotation: 0.05 s either side.
QRS_HALF_WINDOW_S = 0.05
# sigamp's trimmed mean drops namp // 20 amplitudes at each end.
TRIM_FRACTION = 1 / 20

_POWER_CACHE: OrderedDict[tuple, np.ndarray] = OrderedDict()
_POWER_CACHE_SIZE = 64


@lru_cache(maxsize=32)
def _qrs_band_sos(fs: float) -> np.ndarray:
    # The QRS energy band of Pan & Tompkins (5-15 Hz); the upper corner is capped below Nyquist.
    high = min(15.0, 0.45 * fs)
    low = min(5.0, 0.5 * high)
    return sps.butter(2, [low, high], btype="bandpass", fs=fs, output="sos")


def detect_qrs(signal: np.ndarray, fs: float, *, refractory_s: float = 0.25) -> np.ndarray:
    """QRS fiducial points (samples) of a one- or multi-lead ECG strip, Pan-Tompkins style.

    All leads vote: each lead is band-passed to 5-15 Hz and differentiated, its squared slope is normalised by
    its own median so that no single lead dominates, the leads are summed, integrated over 150 ms, and peaks
    at least ``refractory_s`` apart that reach 20 % of the strip's 99th-percentile energy are QRS complexes
    (20 %, not higher: ectopic beats several times larger than the normal ones must not hide them). Each
    fiducial point is moved to the largest band-passed deflection of the complex (near the R peak, where
    MIT-BIH annotations put it: median offset 6 ms on 14 MIT-BIH records).

    Parameters
    ----------
    signal : np.ndarray
        ``[samples]`` or ``[leads, samples]``, any unit.
    fs : float
        Sampling rate in Hz.
    refractory_s : float
        Shortest RR interval in seconds (0.25 s: 240 bpm). Default: 0.25.

    Returns
    -------
    np.ndarray
        int64 ``[beats]`` sample indices, ascending; empty when the strip is too short or flat.
    """
    x = np.atleast_2d(np.asarray(signal, dtype=np.float64))
    n = x.shape[1]
    if n < int(0.5 * fs) or fs < 20:
        return np.zeros(0, dtype=np.int64)
    sos = _qrs_band_sos(float(fs))
    band = sps.sosfiltfilt(sos, x - x.mean(axis=1, keepdims=True), axis=1, padlen=min(n - 1, 3 * (2 * len(sos) + 1)))
    slope = np.diff(band, axis=1, prepend=band[:, :1]) ** 2
    energy = _lead_normalised_sum(slope)
    width = max(1, int(round(0.15 * fs)))
    integrated = np.convolve(energy, np.ones(width) / width, mode="same")
    top = np.percentile(integrated, 99)
    if not np.isfinite(top) or top <= 0:
        return np.zeros(0, dtype=np.int64)
    peaks, _ = sps.find_peaks(integrated, height=0.2 * top, distance=max(1, int(refractory_s * fs)))
    # The integrated energy peaks after the complex's middle; its largest band-passed deflection is the R peak.
    deflection = _lead_normalised_sum(band**2)
    half = width // 2 + 1
    fiducials = np.empty(len(peaks), dtype=np.int64)
    for i, p in enumerate(peaks):
        a, b = max(0, p - half), min(n, p + half)
        fiducials[i] = a + int(np.argmax(deflection[a:b]))
    return np.unique(fiducials)


def _lead_normalised_sum(x: np.ndarray) -> np.ndarray:
    """``[leads, samples]`` -> ``[samples]``: each lead divided by its median, then summed."""
    scale = np.median(x, axis=1, keepdims=True)
    scale[scale <= 0] = 1.0
    return (x / scale).sum(axis=0)


def qrs_amplitudes(signal: np.ndarray, fs: float, beats: np.ndarray) -> np.ndarray:
    """Peak-to-peak amplitude of every lead in the sigamp window (``beat ± 0.05 s``) around each beat.

    Returns float64 ``[leads, beats]`` in the signal's unit; beats whose window leaves the strip are dropped
    (sigamp stops at the record's end the same way).
    """
    x = np.atleast_2d(np.asarray(signal, dtype=np.float64))
    half = int(round(QRS_HALF_WINDOW_S * fs))
    beats = np.asarray(beats, dtype=np.int64)
    beats = beats[(beats - half >= 0) & (beats + half < x.shape[1])]
    if len(beats) == 0:
        return np.zeros((x.shape[0], 0))
    idx = beats[:, None] + np.arange(-half, half + 1)[None, :]
    windows = x[:, idx]  # [leads, beats, window]
    return windows.max(axis=2) - windows.min(axis=2)


def trimmed_mean(values: np.ndarray, axis: int = -1) -> np.ndarray:
    """sigamp's trimmed mean: sort, drop ``n // 20`` values at each end, average the rest."""
    v = np.sort(np.asarray(values, dtype=np.float64), axis=axis)
    n = v.shape[axis]
    k = int(n * TRIM_FRACTION)
    return np.take(v, np.arange(k, n - k), axis=axis).mean(axis=axis)


def signal_power(signal: np.ndarray, fs: float, *, max_beats: int | None = None, min_beats: int = 2) -> np.ndarray:
    """nst-style ECG signal power per lead: ``S = A**2 / 8`` with ``A`` the trimmed mean QRS peak-to-peak.

    ``A`` is measured as ``sigamp -a`` does for ``nst`` (see the module docstring): peak-to-peak amplitude in
    ``beat ± 0.05 s`` for each detected beat (`detect_qrs`, all leads voting), sorted, the lowest and highest
    ``n // 20`` dropped, the rest averaged. Fallback when fewer than ``min_beats`` complexes are found (a flat,
    very short or non-ECG strip): ``A`` = the lead's 99th minus 1st percentile, which for a clean ECG is close
    to the QRS peak-to-peak.

    Results are cached on the strip's bytes (64 entries), so calling this again on the same record is ~free.

    Parameters
    ----------
    signal : np.ndarray
        ``[leads, samples]`` or ``[samples]``, in mV (any unit; the power is in that unit squared).
    fs : float
        Sampling rate in Hz.
    max_beats : int or None
        Measure only the first this many beats (nst uses 300). Default: None (all beats in the strip).
    min_beats : int
        Fewest beats for the QRS measurement; below it the percentile fallback is used. Default: 2.

    Returns
    -------
    np.ndarray
        float64 ``[leads]`` for a 2-D input, a 0-d array for a 1-D input; mV² for mV input.
    """
    x = np.asarray(signal)
    if x.ndim not in (1, 2):
        raise ValueError(f"signal must be [samples] or [leads, samples], got shape {x.shape}")
    x64 = np.ascontiguousarray(np.atleast_2d(x), dtype=np.float64)
    key = (hashlib.blake2b(x64.tobytes(), digest_size=16).digest(), x64.shape, float(fs), max_beats, min_beats)
    power = _POWER_CACHE.get(key)
    if power is None:
        power = _signal_power(x64, float(fs), max_beats, min_beats)
        _POWER_CACHE[key] = power
        if len(_POWER_CACHE) > _POWER_CACHE_SIZE:
            _POWER_CACHE.popitem(last=False)
    else:
        _POWER_CACHE.move_to_end(key)
    power = power.copy()
    return power[0] if x.ndim == 1 else power


def _signal_power(x: np.ndarray, fs: float, max_beats: int | None, min_beats: int) -> np.ndarray:
    beats = detect_qrs(x, fs)
    if max_beats is not None:
        beats = beats[:max_beats]
    amplitudes = qrs_amplitudes(x, fs, beats)
    if amplitudes.shape[1] >= max(1, min_beats):
        a = trimmed_mean(amplitudes, axis=1)
    else:
        a = np.percentile(x, 99, axis=1) - np.percentile(x, 1, axis=1)
    return a**2 / 8.0
