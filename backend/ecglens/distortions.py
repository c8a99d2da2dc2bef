"""Realistic ECG noise at a calibrated signal-to-noise ratio.

Five kinds (`KINDS`), each a parametric model of the noise in the MIT-BIH Noise Stress Test Database (NSTDB):

``baseline_wander`` (alias ``bw``)
    Respiration (a sinusoid at 0.12-0.35 Hz whose depth varies by ±20 %, 20-60 % of the power) plus a random
    drift: Gaussian noise with the spectrum of an analog Butterworth band-pass, first order from 0.05 Hz, and a
    0.12 Hz corner of order 1.75 (-35 dB/decade), fitted to NSTDB ``bw``; ~98 % of the energy lies below 0.5 Hz,
    as in ``bw``.
``powerline`` (aliases ``pli``, ``powerline_50``, ``powerline_60``)
    The mains frequency (``mains_hz``: 50 Hz in Europe, 60 Hz in North America; a per-site setting) plus its
    2nd-5th harmonics (odd ones stronger, as non-linear loads make them), each with a random phase, and a slow
    random amplitude modulation of up to ±10 %. A harmonic at or above Nyquist is left out; a fundamental at or
    above Nyquist raises `ValueError` (it cannot be represented at that sampling rate).
``muscle`` (aliases ``ma``, ``emg``, ``muscle_artifact``)
    EMG: Gaussian noise band-limited like NSTDB ``ma`` above 3 Hz (a first-order rise to a 15 Hz corner and a
    fourth-order fall above 40 Hz, so most energy lies in 10-50 Hz), modulated by a log-normal envelope
    (sigma 0.6) with a new level every 0.25 s (bursts of contraction). NSTDB ``ma`` also carries slow electrode
    drift (about 3/4 of its energy is below 0.5 Hz); that part is `baseline_wander`'s job, so ``muscle`` leaves
    it out and stays what a reader calls muscle noise.
``electrode_motion`` (aliases ``em``, ``motion``)
    Like ``118e00 - 118`` (scaled NSTDB ``em``): a slow drift (0.05-0.15 Hz corners, 40-70 % of the power) plus
    motion jolts, about one per second at random times, each a spike that decays in 30-150 ms followed by a
    step that recovers in 0.5-2 s, smoothed above 12 Hz. Energy sits in 0.05-10 Hz with a plateau over
    0.5-3 Hz.
``gaussian`` (aliases ``white``, ``awgn``)
    White Gaussian noise.

The spectral corners and orders are few parameters, fitted by matching the band-energy distribution (0-0.5,
0.5-1, 1-3, 3-10, 10-20, 20-45, 45-100, 100-180 Hz) of the NSTDB records; ``tests/unit/test_distortions.py``
checks the fit against the spread between real 5-minute chunks.

Signal-to-noise ratio, the nst way
----------------------------------
``SNR = 10 * log10(S / N)`` dB, where ``S = A**2 / 8`` is the ECG signal power measured as the MIT-BIH noise
stress test tool ``nst`` does (``A`` = trimmed mean peak-to-peak QRS amplitude of the lead; see
`ecglens.qrs.signal_power`) and ``N`` is the mean square of the added noise over the span where it is added.
(``nst`` measures ``N`` as a trimmed mean of 1-s RMS values of its noise record; over a short distorted span
we use the exact mean square, so the requested SNR holds exactly for that span.) The NSTDB levels are
24, 18, 12, 6, 0 and -6 dB.

All generators take an explicit ``numpy.random.Generator`` and return float32; the same generator state gives
the same noise. `noise_batch` is vectorised (one FFT per batch) for the explainer's inner loop.

References
----------
Moody GB, Muldrow WE, Mark RG. A noise stress test for arrhythmia detectors. Computers in Cardiology
11:381-384 (1984). Friesen GM et al. A comparison of the noise sensitivity of nine QRS detection algorithms.
IEEE Trans Biomed Eng 37(1):85-98 (1990) (the noise types and their frequency ranges).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np
from scipy import fft as spfft

from ecglens.ecg import Ecg
from ecglens.qrs import signal_power

KINDS = ("baseline_wander", "powerline", "muscle", "electrode_motion", "gaussian")
NSTDB_SNR_LEVELS_DB = (24.0, 18.0, 12.0, 6.0, 0.0, -6.0)

_ALIASES = {
    "baseline_wander": "baseline_wander",
    "bw": "baseline_wander",
    "baseline": "baseline_wander",
    "wander": "baseline_wander",
    "powerline": "powerline",
    "pli": "powerline",
    "powerline_50": "powerline",
    "powerline_60": "powerline",
    "mains": "powerline",
    "power_line": "powerline",
    "muscle": "muscle",
    "ma": "muscle",
    "emg": "muscle",
    "muscle_artifact": "muscle",
    "muscle_artefact": "muscle",
    "electrode_motion": "electrode_motion",
    "em": "electrode_motion",
    "motion": "electrode_motion",
    "gaussian": "gaussian",
    "white": "gaussian",
    "awgn": "gaussian",
    "white_noise": "gaussian",
    "gaussian_noise": "gaussian",
}
# Each kind's other names (what `parse_kinds` accepts besides the canonical name), sorted.
ALIASES: dict[str, tuple[str, ...]] = {
    kind: tuple(sorted(alias for alias, name in _ALIASES.items() if name == kind and alias != kind)) for kind in KINDS
}
# Aliases that also fix the mains frequency.
_ALIAS_MAINS = {"powerline_50": 50.0, "powerline_60": 60.0}

# Shortest noise realisation (s) for the low-frequency kinds: a 0.05 Hz FFT resolution, so a 1-s segment of
# baseline wander is a piece of a slow wave rather than a 1 Hz oscillation.
_MIN_DURATION_S = {"baseline_wander": 20.0, "electrode_motion": 20.0}
# The slow kinds are drawn at a low rate (all but < -60 dB of their energy lies below its Nyquist) and linearly
# interpolated to the record's rate: the same noise for a fraction of the FFT work.
_LOW_RATE_HZ = {"baseline_wander": 25.0, "electrode_motion": 100.0}


def canonical_kind(kind: str) -> str:
    """The canonical name in `KINDS` for ``kind`` or one of its aliases (case, spaces and dashes ignored).

    Raises `ValueError` listing the valid kinds for an unknown name.
    """
    return _resolve(kind)[0]


def parse_kinds(distortions: Sequence[str] | str | None) -> tuple[str, ...]:
    """The canonical kinds (`KINDS`) a caller asks for: the one parser of every ``distortions`` argument (the
    explainer, the robustness report, the REST API, the command line).

    Parameters
    ----------
    distortions : sequence of str, comma-separated str, or None
        Kind names or their aliases (see the module docstring; case, spaces and dashes ignored). Default: None
        (all of `KINDS`).

    Returns
    -------
    tuple of str
        Canonical names in the order first asked for, each once.

    Raises
    ------
    ValueError
        A name that is no kind nor alias (the message lists the valid kinds and aliases), or no name at all.
    """
    if distortions is None:
        return KINDS
    items = distortions.split(",") if isinstance(distortions, str) else list(distortions)
    items = [str(d).strip() for d in items if str(d).strip()]
    unknown = [d for d in items if _key(d) not in _ALIASES]
    if unknown or not items:
        given = (
            f"unknown distortion kind(s) {', '.join(map(repr, unknown))}" if unknown else "no distortion kinds given"
        )
        raise ValueError(f"{given}; {_valid()}")
    return tuple(dict.fromkeys(_ALIASES[_key(d)] for d in items))


def _key(kind: str) -> str:
    return str(kind).strip().lower().replace("-", "_").replace(" ", "_")


def _valid() -> str:
    aliases = ", ".join(sorted(k for k in _ALIASES if k not in KINDS))
    return f"valid kinds: {', '.join(KINDS)} (aliases: {aliases})"


def _resolve(kind: str) -> tuple[str, float | None]:
    key = _key(kind)
    if key not in _ALIASES:
        raise ValueError(f"unknown distortion kind {kind!r}; {_valid()}")
    return _ALIASES[key], _ALIAS_MAINS.get(key)


def noise(kind: str, n_samples: int, fs: float, rng: np.random.Generator, *, mains_hz: float = 50.0) -> np.ndarray:
    """One realisation of a noise kind: zero mean, unit RMS.

    Parameters
    ----------
    kind : str
        One of `KINDS` or an alias ("bw", "em", "ma"/"emg", "pli"/"powerline_50"/"powerline_60", "white").
    n_samples : int
        Length in samples.
    fs : float
        Sampling rate in Hz.
    rng : np.random.Generator
        Source of randomness (the same state gives the same noise).
    mains_hz : float
        Mains frequency for ``powerline`` in Hz (50 or 60, a per-site setting). Default: 50.0.

    Returns
    -------
    np.ndarray
        float32 ``[n_samples]``, mean 0 and RMS 1 (scale it with `scale_to_snr` or by an amplitude in mV).
    """
    return noise_batch(kind, 1, n_samples, fs, rng, mains_hz=mains_hz)[0]


def noise_batch(
    kind: str, n: int, n_samples: int, fs: float, rng: np.random.Generator, *, mains_hz: float = 50.0
) -> np.ndarray:
    """``n`` independent realisations of a noise kind at once (vectorised; one FFT pass for the batch).

    Same parameters as `noise` plus ``n``; returns float32 ``[n, n_samples]``, each row with mean 0 and RMS 1.
    Cost (one core): a 256 x 3600 batch takes about 8-20 ms of CPU per kind, the noise for one 12-lead
    10-s record well under 1 ms.
    """
    name, alias_mains = _resolve(kind)
    n, n_samples, fs = int(n), int(n_samples), float(fs)
    if n < 0 or n_samples < 1:
        raise ValueError(f"need n >= 0 and n_samples >= 1, got n={n}, n_samples={n_samples}")
    if not np.isfinite(fs) or fs <= 0:
        raise ValueError(f"sampling rate must be positive, got {fs}")
    if n == 0:
        return np.zeros((0, n_samples), dtype=np.float32)
    if name == "powerline":
        out = _powerline(n, n_samples, fs, rng, alias_mains or float(mains_hz))
    else:
        rate = min(fs, _LOW_RATE_HZ.get(name, fs))
        needed = n_samples if rate == fs else int(np.ceil((n_samples - 1) * rate / fs)) + 2
        length = max(needed, int(np.ceil(_MIN_DURATION_S.get(name, 0.0) * rate)))
        if rate == fs:
            out = _GENERATORS[name](n, length, n_samples, fs, rng)
        else:
            out = _interpolate_rows(_GENERATORS[name](n, length, length, rate, rng), rate, n_samples, fs)
    return _standardise(out)


def _standardise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)  # float64: short, nearly constant rows lose their mean in float32
    x = x - x.mean(axis=1, keepdims=True)
    rms = np.sqrt(np.einsum("ij,ij->i", x, x) / x.shape[1])[:, None]
    rms[rms == 0] = 1.0  # a constant row (n_samples == 1) stays zero
    return (x / rms).astype(np.float32)


# -- spectral shaping ------------------------------------------------------------------------------------------
# Band-limited Gaussian noise is drawn directly in the frequency domain: a complex Gaussian per rFFT bin (the
# spectrum of white Gaussian noise), times the kind's gain, then one inverse FFT. Only bins where the gain is
# not negligible get random numbers, which is what makes `noise_batch` fast.


def _butterworth_gain(
    f: np.ndarray, low: float | None, high: float | None, low_order: float = 1.0, high_order: float = 1.0
) -> np.ndarray:
    """Magnitude of an analog Butterworth band-pass (fractional orders allowed: slope 20·order dB/decade)."""
    g = np.ones_like(f)
    with np.errstate(divide="ignore"):
        if low:
            g = g / np.sqrt(1.0 + (low / np.maximum(f, 1e-12)) ** (2 * low_order))
        if high:
            g = g / np.sqrt(1.0 + (f / high) ** (2 * high_order))
    return g


@lru_cache(maxsize=64)
def _freqs(n_samples: int, fs: float) -> np.ndarray:
    return spfft.rfftfreq(n_samples, 1.0 / fs).astype(np.float32)


# Spectral models (corner Hz, order) fitted to the NSTDB records; see the module docstring.
_BW_DRIFT = dict(low=0.05, high=0.12, low_order=1.0, high_order=1.75)
_MA_BAND = dict(low=15.0, high=40.0, low_order=1.0, high_order=4.0)
_EM_DRIFT = dict(low=0.05, high=0.15, low_order=1.0, high_order=1.5)
_EM_SMOOTH_HZ = 12.0
# Bins above this (Hz) are left empty: the gain there is below -60 dB.
_BAND_EDGE_HZ = {"baseline_wander": 12.0, "electrode_motion": 40.0}


@lru_cache(maxsize=64)
def _shaped_gain(name: str, n_samples: int, fs: float) -> np.ndarray:
    """Fixed spectral gain per kind on the rFFT grid, float32 ``[n_freqs]``; DC is zeroed."""
    f = _freqs(n_samples, fs).astype(np.float64)
    if name == "baseline_wander":
        g = _butterworth_gain(f, **_BW_DRIFT)
    elif name == "muscle":
        g = _butterworth_gain(f, **_MA_BAND)
    elif name == "electrode_motion":
        g = _butterworth_gain(f, **_EM_DRIFT)
    elif name == "gaussian":
        g = np.ones_like(f)
    else:
        raise KeyError(name)
    g[0] = 0.0
    edge = _BAND_EDGE_HZ.get(name)
    if edge is not None:
        g = g[: int(np.searchsorted(f, edge)) + 1]
    return g.astype(np.float32)


def _complex_gaussian(rng: np.random.Generator, n: int, n_bins: int) -> np.ndarray:
    """Standard complex Gaussian ``[n, n_bins]`` (Box-Muller from uniforms: cheaper than standard_normal)."""
    u = rng.random((2, n, n_bins), dtype=np.float32)
    radius = np.sqrt(-np.log1p(-u[0]))  # Rayleigh(1/sqrt(2)) per component
    angle = np.float32(2 * np.pi) * u[1]
    z = np.empty((n, n_bins), dtype=np.complex64)
    z.real = radius * np.cos(angle)
    z.imag = radius * np.sin(angle)
    return z


def _gaussian_spectrum(rng: np.random.Generator, n: int, n_samples: int, gain: np.ndarray) -> np.ndarray:
    """rFFT spectrum ``[n, n_samples // 2 + 1]`` of Gaussian noise with PSD ∝ gain² (bins past gain are 0)."""
    spectrum = np.zeros((n, n_samples // 2 + 1), dtype=np.complex64)
    spectrum[:, : len(gain)] = _complex_gaussian(rng, n, len(gain)) * gain
    return spectrum


def _irfft(spectrum: np.ndarray, n_samples: int) -> np.ndarray:
    return spfft.irfft(spectrum, n=n_samples, axis=1, workers=1).astype(np.float32, copy=False)


def _unit_rms(x: np.ndarray) -> np.ndarray:
    return x / (np.sqrt(np.einsum("ij,ij->i", x, x, dtype=np.float64) / x.shape[1])[:, None] + 1e-12)


@lru_cache(maxsize=64)
def _knot_matrix(n_samples: int, fs: float, spacing_s: float) -> np.ndarray:
    """Linear-interpolation weights ``[knots, n_samples]`` from knots every ``spacing_s`` seconds."""
    t = np.arange(n_samples) / fs
    k = int(np.ceil(t[-1] / spacing_s)) + 2 if n_samples > 1 else 2
    knots = np.arange(k) * spacing_s
    w = np.zeros((k, n_samples), dtype=np.float32)
    j = np.minimum((t // spacing_s).astype(int), k - 2)
    frac = (t - knots[j]) / spacing_s
    w[j, np.arange(n_samples)] = 1.0 - frac
    w[j + 1, np.arange(n_samples)] = frac
    return w


@lru_cache(maxsize=64)
def _interpolation_grid(n_keep: int, fs: float, rate: float) -> tuple[np.ndarray, np.ndarray]:
    position = np.arange(n_keep) * (rate / fs)
    left = np.floor(position).astype(np.intp)
    return left, (position - left).astype(np.float32)


def _interpolate_rows(x: np.ndarray, rate: float, n_keep: int, fs: float) -> np.ndarray:
    """Rows sampled at ``rate`` Hz, linearly interpolated to ``n_keep`` samples at ``fs`` Hz."""
    left, frac = _interpolation_grid(n_keep, float(fs), float(rate))
    a = x[:, left]
    return a + (x[:, left + 1] - a) * frac


def _smooth_random(n: int, n_samples: int, fs: float, spacing_s: float, rng: np.random.Generator) -> np.ndarray:
    """A slowly varying process ``[n, n_samples]``: uniform(-1, 1) knots every ``spacing_s``, interpolated."""
    w = _knot_matrix(n_samples, fs, spacing_s)
    return rng.uniform(-1.0, 1.0, (n, w.shape[0])).astype(np.float32) @ w


# -- the generators (each [n, >= n_samples] float32, not yet standardised) ------------------------------------


def _baseline_wander(n: int, n_samples: int, n_keep: int, fs: float, rng: np.random.Generator) -> np.ndarray:
    gain = _shaped_gain("baseline_wander", n_samples, fs)
    drift = _unit_rms(_irfft(_gaussian_spectrum(rng, n, n_samples, gain), n_samples))[:, :n_keep]
    # Respiration: 7-21 breaths per minute, its depth changing slowly (a new level every 4 s).
    t = np.arange(n_keep, dtype=np.float32) / np.float32(fs)
    rate = rng.uniform(0.12, 0.35, (n, 1)).astype(np.float32)
    phase = rng.uniform(0, 2 * np.pi, (n, 1)).astype(np.float32)
    depth = 1.0 + 0.2 * _smooth_random(n, n_keep, fs, 4.0, rng)
    breath = np.float32(np.sqrt(2.0)) * np.sin(np.float32(2 * np.pi) * rate * t + phase) * depth
    share = rng.uniform(0.2, 0.6, (n, 1)).astype(np.float32)  # respiration's share of the power
    return np.sqrt(share) * breath + np.sqrt(1 - share) * drift


def _muscle(n: int, n_samples: int, n_keep: int, fs: float, rng: np.random.Generator) -> np.ndarray:
    emg = _irfft(_gaussian_spectrum(rng, n, n_samples, _shaped_gain("muscle", n_samples, fs)), n_samples)
    # Bursts: a log-normal envelope (sigma 0.6) with a new level every 0.25 s.
    w = _knot_matrix(n_samples, fs, 0.25)
    envelope = np.exp(np.float32(0.6) * rng.standard_normal((n, w.shape[0]), dtype=np.float32)) @ w
    return emg * envelope


def _electrode_motion(n: int, n_samples: int, n_keep: int, fs: float, rng: np.random.Generator) -> np.ndarray:
    gain = _shaped_gain("electrode_motion", n_samples, fs)
    nb = len(gain)
    f = _freqs(n_samples, fs)[:nb]
    drift = _complex_gaussian(rng, n, nb) * gain
    drift *= 1.0 / (np.sqrt(np.sum(np.abs(drift) ** 2, axis=1, keepdims=True)) + 1e-12)
    # Motion events at random times (Poisson-like, _EM_EVENT_RATE_HZ): a jolt, i.e. a fast spike (decay
    # 30-150 ms) followed by a slow step that recovers in 0.5-2 s, with a Gaussian amplitude; smoothed above 12 Hz.
    n_events = max(1, int(np.ceil(_EM_EVENT_RATE_HZ * n_samples / fs)))
    times = rng.integers(0, n_samples, (n, n_events))
    impulses = np.zeros((n, n_samples), dtype=np.float32)
    impulses[np.repeat(np.arange(n), n_events), times.ravel()] = rng.standard_normal(n * n_events, dtype=np.float32)
    tau_spike = rng.uniform(0.03, 0.15, (n, 1)).astype(np.float32)
    tau_step = rng.uniform(0.5, 2.0, (n, 1)).astype(np.float32)
    step_weight = rng.uniform(-1.0, 1.0, (n, 1)).astype(np.float32) * np.float32(_EM_STEP_WEIGHT)
    smooth = _butterworth_gain(f, None, _EM_SMOOTH_HZ, 1.0, 2.0).astype(np.float32)
    # An exponential decay exp(-t/tau) has the spectrum tau / (1 + i 2 pi f tau).
    i_two_pi_f = 1j * np.float32(2 * np.pi) * f
    kernel = smooth * (
        1.0 / (1.0 + i_two_pi_f * tau_spike) + step_weight * (tau_step / tau_spike) / (1.0 + i_two_pi_f * tau_step)
    )
    events = spfft.rfft(impulses, axis=1, workers=1)[:, :nb] * kernel
    events[:, 0] = 0
    events *= 1.0 / (np.sqrt(np.sum(np.abs(events) ** 2, axis=1, keepdims=True)) + 1e-12)
    share = rng.uniform(*_EM_DRIFT_SHARE, (n, 1)).astype(np.float32)  # the slow drift's share of the power
    spectrum = np.zeros((n, n_samples // 2 + 1), dtype=np.complex64)
    spectrum[:, :nb] = np.sqrt(share) * drift + np.sqrt(1 - share) * events
    return _irfft(spectrum, n_samples)[:, :n_keep]


_EM_EVENT_RATE_HZ = 1.0
_EM_STEP_WEIGHT = 0.1
_EM_DRIFT_SHARE = (0.4, 0.7)


def _gaussian(n: int, n_samples: int, n_keep: int, fs: float, rng: np.random.Generator) -> np.ndarray:
    return _irfft(_gaussian_spectrum(rng, n, n_samples, _shaped_gain("gaussian", n_samples, fs)), n_samples)


# Relative amplitude ranges of mains harmonics 1-5 (odd harmonics dominate in building wiring).
_HARMONIC_AMPLITUDE = ((1.0, 1.0), (0.0, 0.1), (0.05, 0.3), (0.0, 0.05), (0.0, 0.15))


def _powerline(n: int, n_samples: int, fs: float, rng: np.random.Generator, mains_hz: float) -> np.ndarray:
    nyquist = fs / 2
    if not np.isfinite(mains_hz) or mains_hz <= 0:
        raise ValueError(f"mains frequency must be positive, got {mains_hz} Hz")
    if mains_hz >= nyquist:
        raise ValueError(
            f"powerline noise at {mains_hz:g} Hz cannot be represented at {fs:g} Hz sampling "
            f"(Nyquist {nyquist:g} Hz); the record needs fs > {2 * mains_hz:g} Hz"
        )
    harmonics = [k for k in range(1, len(_HARMONIC_AMPLITUDE) + 1) if k * mains_hz < nyquist]
    basis = _harmonic_basis(n_samples, fs, float(mains_hz), tuple(harmonics))  # [2K, n_samples]
    lo = np.array([_HARMONIC_AMPLITUDE[k - 1][0] for k in harmonics])
    hi = np.array([_HARMONIC_AMPLITUDE[k - 1][1] for k in harmonics])
    amp = rng.uniform(lo, hi, (n, len(harmonics)))
    phase = rng.uniform(0, 2 * np.pi, (n, len(harmonics)))
    # a sin(w t + p) = a cos(p) sin(w t) + a sin(p) cos(w t)
    coef = np.concatenate([amp * np.cos(phase), amp * np.sin(phase)], axis=1).astype(np.float32)
    wave = coef @ basis
    # Slight amplitude modulation (load changes): up to ±10 %, new level every 2 s.
    depth = rng.uniform(0.0, 0.1, (n, 1)).astype(np.float32)
    return wave * (1.0 + depth * _smooth_random(n, n_samples, fs, 2.0, rng))


@lru_cache(maxsize=16)
def _harmonic_basis(n_samples: int, fs: float, mains_hz: float, harmonics: tuple[int, ...]) -> np.ndarray:
    t = np.arange(n_samples) / fs
    w = 2 * np.pi * mains_hz * np.array(harmonics)[:, None] * t[None, :]
    return np.concatenate([np.sin(w), np.cos(w)]).astype(np.float32)


_GENERATORS = {
    "baseline_wander": _baseline_wander,
    "muscle": _muscle,
    "electrode_motion": _electrode_motion,
    "gaussian": _gaussian,
}


# -- scaling and applying -------------------------------------------------------------------------------------


def scale_to_snr(noise: np.ndarray, signal_power: float | np.ndarray, snr_db: float) -> np.ndarray:
    """Noise scaled so that ``10 * log10(signal_power / noise_power) == snr_db``.

    Parameters
    ----------
    noise : np.ndarray
        ``[..., samples]``; its power is the mean square over the last axis.
    signal_power : float or np.ndarray
        Signal power (e.g. `ecglens.qrs.signal_power`, mV²), a scalar or one per row of ``noise``
        (shape ``noise.shape[:-1]``).
    snr_db : float
        Target SNR in dB.

    Returns
    -------
    np.ndarray
        float32, the shape of ``noise``. Rows with zero noise power or zero signal power come back as zeros
        (no SNR can be set against nothing).
    """
    x = np.asarray(noise, dtype=np.float64)
    p_noise = np.mean(x**2, axis=-1, keepdims=True)
    p_signal = np.broadcast_to(np.asarray(signal_power, dtype=np.float64), x.shape[:-1])[..., None]
    target = p_signal * 10.0 ** (-float(snr_db) / 10.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        gain = np.where((p_noise > 0) & (p_signal > 0), np.sqrt(target / p_noise), 0.0)
    return (x * gain).astype(np.float32)


def distort(
    ecg: Ecg,
    kind: str,
    snr_db: float,
    rng: np.random.Generator,
    *,
    start_s: float | None = None,
    end_s: float | None = None,
    leads: Sequence[str] | None = None,
    mains_hz: float = 50.0,
) -> Ecg:
    """The record with noise of ``kind`` added at ``snr_db`` on ``[start_s, end_s)`` of the given leads.

    Each lead gets its own noise realisation, scaled against that lead's nst-style signal power (measured on
    the whole lead of ``ecg``, `ecglens.qrs.signal_power`) with the noise power measured over the distorted
    span, so ``10*log10(S_lead / mean((noisy - ecg)[span]**2)) == snr_db``. When the span starts or ends inside
    the record the noise is faded in / out there with a raised-cosine edge (at most 0.1 s and a quarter of the
    span) before scaling, so it joins the untouched signal without a step.

    Parameters
    ----------
    ecg : Ecg
        The record (``[leads, samples]`` mV).
    kind : str
        One of `KINDS` or an alias.
    snr_db : float
        Target SNR in dB (NSTDB levels: 24, 18, 12, 6, 0, -6).
    rng : np.random.Generator
        Source of randomness; the same state gives the same result.
    start_s, end_s : float or None
        Span in seconds from the record's start. Default: None (the record's start / end).
    leads : sequence of str or None
        Leads to distort (canonical names or stand-ins). Default: None (all leads).
    mains_hz : float
        Mains frequency for ``powerline`` in Hz. Default: 50.0.

    Returns
    -------
    Ecg
        A new record; the samples outside the span and the other leads are unchanged bit for bit.

    Notes
    -----
    The signal power is measured on ``ecg`` as given. To layer noise on a record that is already distorted at
    SNRs that refer to the clean one, take `signal_power` of the clean record once and add
    ``scale_to_snr(noise_batch(...), power, snr_db)`` yourself (what the explainer's inner loop does).
    """
    name, alias_mains = _resolve(kind)
    a, b = _span(ecg, start_s, end_s)
    rows = list(range(ecg.n_leads)) if leads is None else [ecg.lead_index(lead) for lead in leads]
    raw = noise_batch(name, len(rows), b - a, ecg.fs, rng, mains_hz=alias_mains or mains_hz)
    raw = raw * _edge_taper(b - a, ecg.fs, fade_in=a > 0, fade_out=b < ecg.n_samples)
    power = signal_power(ecg.signal, ecg.fs)[rows]
    out = ecg.signal.copy()
    out[rows, a:b] += scale_to_snr(raw, power, snr_db)
    return ecg.replace(signal=out)


def _span(ecg: Ecg, start_s: float | None, end_s: float | None) -> tuple[int, int]:
    a = 0 if start_s is None else int(round(float(start_s) * ecg.fs))
    b = ecg.n_samples if end_s is None else int(round(float(end_s) * ecg.fs))
    if a < 0 or b > ecg.n_samples or b <= a:
        raise ValueError(
            f"distortion span [{start_s}, {end_s}) s is empty or outside the {ecg.duration_s:.3f} s record"
        )
    return a, b


def _edge_taper(n_samples: int, fs: float, *, fade_in: bool, fade_out: bool) -> np.ndarray:
    w = np.ones(n_samples, dtype=np.float32)
    m = int(min(0.1 * fs, n_samples // 4))
    if m > 0:
        ramp = (0.5 - 0.5 * np.cos(np.pi * (np.arange(m) + 0.5) / m)).astype(np.float32)
        if fade_in:
            w[:m] = ramp
        if fade_out:
            w[n_samples - m :] = ramp[::-1]
    return w


def baseline_wander(ecg: Ecg, snr_db: float, rng: np.random.Generator, **kw: Any) -> Ecg:
    """`distort` with baseline wander (respiration + drift below ~1 Hz)."""
    return distort(ecg, "baseline_wander", snr_db, rng, **kw)


def powerline(ecg: Ecg, snr_db: float, rng: np.random.Generator, *, mains_hz: float = 50.0, **kw: Any) -> Ecg:
    """`distort` with powerline interference at ``mains_hz`` (50 or 60 Hz) and its harmonics."""
    return distort(ecg, "powerline", snr_db, rng, mains_hz=mains_hz, **kw)


def muscle_artifact(ecg: Ecg, snr_db: float, rng: np.random.Generator, **kw: Any) -> Ecg:
    """`distort` with muscle artifact (EMG bursts, mostly 10-60 Hz)."""
    return distort(ecg, "muscle", snr_db, rng, **kw)


def electrode_motion(ecg: Ecg, snr_db: float, rng: np.random.Generator, **kw: Any) -> Ecg:
    """`distort` with electrode-motion artifact (transients and drift, 0.05-10 Hz)."""
    return distort(ecg, "electrode_motion", snr_db, rng, **kw)


def gaussian(ecg: Ecg, snr_db: float, rng: np.random.Generator, **kw: Any) -> Ecg:
    """`distort` with white Gaussian noise."""
    return distort(ecg, "gaussian", snr_db, rng, **kw)
