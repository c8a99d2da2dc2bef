"""Result types: what `ecglens.explain` and `ecglens.robustness` return, and their JSON form.

The JSON form (``to_dict``) is the contract the REST API stores and the browser draws by field name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Diagnosis:
    """The classifier's answer on the clean record.

    label : the finding the explanation is about (the most probable class above its threshold, else the most
        probable class).
    probabilities : class name -> probability, in the classifier's class order.
    findings : every class at or above its operating threshold.
    """

    label: str
    probabilities: dict[str, float]
    findings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "probabilities": dict(self.probabilities), "findings": list(self.findings)}


@dataclass
class Segment:
    """One critical segment: lead, time span in seconds from the record's start, score in [0, 1], and the
    distortion type whose placement there mattered most."""

    lead: str
    start_s: float
    end_s: float
    score: float
    distortion: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "lead": self.lead,
            "start_s": round(float(self.start_s), 4),
            "end_s": round(float(self.end_s), 4),
            "score": round(float(self.score), 4),
            "distortion": self.distortion,
        }


@dataclass
class Adversarial:
    """The minimal flipping distortion found.

    signal : float32 ``[leads, samples]`` in mV, the distorted record (same grid as the explained input); for an
        image or video the distorted input, of its shape.
    noise : float32, ``signal - original``.
    snr_db : 10·log10(energy of the mean-removed original / energy of the noise); inf when no noise. For an image
        or video its PSNR: 10·log10(1 / mean squared noise), the peak being 1 (inputs in [0, 1]).
    l2 : L2 norm of the noise (mV for an ECG).
    flipped : whether the diagnosis changed.
    label : the diagnosis on ``signal``.
    """

    signal: np.ndarray
    noise: np.ndarray
    snr_db: float
    l2: float
    flipped: bool
    label: str

    def to_dict(self, include_signals: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "snr_db": _finite_or_none(self.snr_db),
            "l2": float(self.l2),
            "flipped": bool(self.flipped),
            "label": self.label,
        }
        if include_signals:
            out["signal"] = np.round(self.signal.astype(float), 5).tolist()
            out["noise"] = np.round(self.noise.astype(float), 5).tolist()
        return out


@dataclass
class Explanation:
    """Why the classifier said what it said, and the smallest realistic distortion that changes it.

    diagnosis : `Diagnosis` on the clean input.
    segments : critical `Segment` list, highest score first.
    saliency : float32 ``[leads, samples]`` in [0, 1], on the same grid as the explained input; ``[H, W]`` for an
        image, ``[T, H, W]`` for a video.
    adversarial : `Adversarial` or None when no flip was found within the budget.
    queries : classifier rows used (never above the query budget).
    elapsed_s : wall time in seconds.
    method : "anytime" (the anytime agent in its fixed order of actions), "agent" (its actions chosen by the
        learned policy), or a baseline's name; `extra["trace"]` lists the
        actions and `extra["findings"][i]["found_by"]` the action that found each flip.
    fallback_reason : why the greedy scan was used instead of the policy, else None.
    fs, leads, start_s : the explained input's sampling rate (Hz), lead names and start within the record (s).
    modality : "ecg", "image" or "video". An image or video explanation has no segments; its top cells (pixels,
        frames, score, distortion) are ``extra["regions"]``, and ``to_dict`` adds ``"modality"``.
    """

    diagnosis: Diagnosis
    segments: list[Segment]
    saliency: np.ndarray
    adversarial: Adversarial | None
    queries: int
    elapsed_s: float
    method: str = "anytime"
    fallback_reason: str | None = None
    fs: float = 0.0
    leads: tuple[str, ...] = ()
    start_s: float = 0.0
    cell_scores: np.ndarray | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    modality: str = "ecg"

    def to_dict(self, include_signals: bool = True) -> dict[str, Any]:
        adversarial = None
        if self.adversarial is not None:
            adversarial = self.adversarial.to_dict(include_signals)
        if self.adversarial is not None and self.modality == "ecg":
            adversarial.update(
                noise_spans(
                    self.adversarial, self.fs, self.leads, self.start_s, (self.extra.get("grid") or {}).get("bounds_s")
                )
            )
        out: dict[str, Any] = {
            "diagnosis": self.diagnosis.to_dict(),
            "segments": [s.to_dict() for s in self.segments],
            "adversarial": adversarial,
            "queries": int(self.queries),
            "elapsed_s": round(float(self.elapsed_s), 4),
            "method": self.method,
            "fallback_reason": self.fallback_reason,
            "fs": float(self.fs),
            "leads": list(self.leads),
            "start_s": float(self.start_s),
            "extra": _jsonable(self.extra),
        }
        if include_signals:
            out["saliency"] = np.round(np.asarray(self.saliency, dtype=float), 4).tolist()
        if self.modality != "ecg":
            out["modality"] = self.modality
        return out


@dataclass
class DistortionRobustness:
    """Robustness to one distortion type laid over the whole record.

    flip_snr_db : highest SNR (dB) at which the diagnosis flips (None when it holds down to the lowest tested).
    probability_at_snr : SNR level (dB) -> mean probability of the diagnosed class over seeds.
    flip_rate_at_snr : SNR level (dB) -> share of seeds for which the diagnosis flipped.
    """

    distortion: str
    flip_snr_db: float | None
    probability_at_snr: dict[float, float]
    flip_rate_at_snr: dict[float, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "distortion": self.distortion,
            "flip_snr_db": _finite_or_none(self.flip_snr_db),
            "probability_at_snr": {str(k): float(v) for k, v in self.probability_at_snr.items()},
            "flip_rate_at_snr": {str(k): float(v) for k, v in self.flip_rate_at_snr.items()},
        }


@dataclass
class RobustnessReport:
    """How much realistic noise the diagnosis withstands. ``score`` in [0, 1]; see README for its meaning."""

    label: str
    score: float
    distortions: list[DistortionRobustness]
    snr_levels_db: list[float]
    queries: int
    elapsed_s: float
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "score": float(self.score),
            "snr_levels_db": list(self.snr_levels_db),
            "distortions": [d.to_dict() for d in self.distortions],
            "queries": int(self.queries),
            "elapsed_s": round(float(self.elapsed_s), 4),
            "extra": _jsonable(self.extra),
        }


def noise_spans(
    adversarial: Adversarial,
    fs: float,
    leads: tuple[str, ...] | list[str],
    start_s: float,
    bounds_s: list | None = None,
) -> dict[str, Any]:
    """Where the minimal flipping distortion put its noise: every distorted stretch, not only the top-scored
    critical segments (the two differ: the segments rank where the classifier is sensitive, the noise is what the
    search needed to flip it).

    A cell of the explanation grid (``bounds_s``, seconds within the window) is distorted when any of its noise
    samples is non-zero; adjacent distorted cells of a lead are merged. Without a grid, runs of non-zero samples
    are used. Returns ``{"spans": [{"lead", "start_s", "end_s", "noise_rms_mv", "snr_db"}], "distorted_s",
    "span_snr_db"}``: times from the record's start; a span's ``snr_db`` compares the ECG's (mean-removed)
    energy inside the span with the noise's there, ``span_snr_db`` the same over all spans together (None when
    no noise).
    """
    noise = np.asarray(adversarial.noise, dtype=np.float64)
    clean = np.asarray(adversarial.signal, dtype=np.float64) - noise
    if noise.ndim != 2 or fs <= 0:
        return {"spans": [], "distorted_s": 0.0, "span_snr_db": None}
    n = noise.shape[1]
    if bounds_s:
        cells = [(int(round(a * fs)), min(n, int(round(b * fs)))) for a, b in bounds_s]
    else:
        cells = [(i, i + 1) for i in range(n)]
    centred = clean - clean.mean(axis=1, keepdims=True)
    spans, e_signal, e_noise, samples = [], 0.0, 0.0, 0
    for row in range(noise.shape[0]):
        run: list[int] | None = None
        for a, b in cells + [(n, n)]:  # a sentinel closes the last run
            hit = b > a and bool(np.any(noise[row, a:b] != 0.0))
            if hit and run is not None and a <= run[1]:
                run[1] = b
                continue
            if run is not None:
                sig = float(np.sum(centred[row, run[0] : run[1]] ** 2))
                noi = float(np.sum(noise[row, run[0] : run[1]] ** 2))
                e_signal, e_noise, samples = e_signal + sig, e_noise + noi, samples + run[1] - run[0]
                spans.append(
                    {
                        "lead": leads[row] if row < len(leads) else str(row),
                        "start_s": round(start_s + run[0] / fs, 4),
                        "end_s": round(start_s + run[1] / fs, 4),
                        "noise_rms_mv": round(float(np.sqrt(noi / max(1, run[1] - run[0]))), 5),
                        "snr_db": _db(sig, noi),
                    }
                )
                run = None
            if hit:
                run = [a, b]
    return {"spans": spans, "distorted_s": round(samples / fs, 4), "span_snr_db": _db(e_signal, e_noise)}


def _db(signal_energy: float, noise_energy: float) -> float | None:
    if noise_energy <= 0 or signal_energy <= 0:
        return None
    return round(float(10 * np.log10(signal_energy / noise_energy)), 2)


def _finite_or_none(x: float | None) -> float | None:
    if x is None or not np.isfinite(x):
        return None
    return float(x)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    return obj
