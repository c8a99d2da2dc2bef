"""Small known classifiers and synthetic records for the agent's tests (no tests here)."""

from __future__ import annotations

import numpy as np
from scipy.ndimage import uniform_filter1d

from ecglens.ecg import Ecg

FS = 200.0
BUMP_AT_S = 6.1  # centre of the wide bump on lead MLII, seconds


class BumpClassifier:
    """A fixed detector of a wide smooth bump: matched low-pass energy over local high-frequency energy.

    Multilabel with classes ("normal", "bump"); "bump" is found when some 0.3-s stretch of any lead carries a
    smooth deflection much larger than its local high-frequency content, so noise on the bump hides it.
    """

    class_names = ("normal", "bump")
    lead_names = ("MLII", "V1")
    multilabel = True
    thresholds = {"normal": 0.5, "bump": 0.5}

    def __init__(self, sampling_rate: float = FS, window_s: float = 10.0):
        self.sampling_rate = sampling_rate
        self.window_s = window_s
        self.rows = 0

    def predict_proba(self, batch: np.ndarray) -> np.ndarray:
        x = np.asarray(batch, dtype=np.float64)
        self.rows += x.shape[0]
        w = int(0.3 * self.sampling_rate)
        low = uniform_filter1d(x, w, axis=-1)
        high = x - uniform_filter1d(x, 9, axis=-1)
        feat = (low**2 / (uniform_filter1d(high**2, w, axis=-1) + 0.01)).max(axis=(1, 2))
        p = 1.0 / (1.0 + np.exp(-3.0 * (np.log(feat + 1e-9) - np.log(20.0))))
        return np.stack([1.0 - p, p], axis=1)


class ArgmaxBumpClassifier(BumpClassifier):
    """The same detector with mutually exclusive classes (flip = the argmax changes)."""

    multilabel = False


class QualityClassifier(BumpClassifier):
    """A robust black box: "normal" until high-frequency energy exceeds ``limit`` of the record's energy.

    Noise on a few cells, however strong, barely moves the whole-record ratio, so only wide noise flips it (the
    case `agent.broad` is for).
    """

    class_names = ("normal", "noisy")
    thresholds = {"normal": 0.5, "noisy": 0.5}

    def __init__(self, limit: float = 0.7, **kw):
        super().__init__(**kw)
        self.limit = limit

    def predict_proba(self, batch: np.ndarray) -> np.ndarray:
        x = np.asarray(batch, dtype=np.float64)
        self.rows += x.shape[0]
        high = x - uniform_filter1d(x, 9, axis=-1)
        ratio = (high**2).sum(axis=(1, 2)) / np.maximum((x**2).sum(axis=(1, 2)), 1e-12)
        p = 1.0 / (1.0 + np.exp(-40.0 * (self.limit - ratio)))
        return np.stack([p, 1.0 - p], axis=1)


def bump_ecg(seed: int = 1, duration_s: float = 10.0, bump_at_s: float | None = BUMP_AT_S, fs: float = FS) -> Ecg:
    """A 2-lead (MLII, V1) neurokit2 ECG with a 1-mV, 0.08-s-sigma bump on MLII at ``bump_at_s``."""
    import neurokit2 as nk

    a = nk.ecg_simulate(duration=duration_s, sampling_rate=int(fs), heart_rate=70, random_state=seed)
    b = nk.ecg_simulate(duration=duration_s, sampling_rate=int(fs), heart_rate=70, random_state=seed + 1) * 0.6
    t = np.arange(len(a)) / fs
    if bump_at_s is not None:
        a = a + 1.0 * np.exp(-0.5 * ((t - bump_at_s) / 0.08) ** 2)
    return Ecg(signal=np.stack([a, b]).astype(np.float32), fs=fs, leads=("MLII", "V1"), name="bump")
