"""Shared fixtures: where the real PhysioNet data lives, and small generated records that are always there."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]

# Keep each test process to one thread: the suite runs on 2 cores with pytest-xdist.
os.environ.setdefault("OMP_NUM_THREADS", "1")
try:
    import torch

    torch.set_num_threads(1)
except ImportError:  # pragma: no cover
    pass


from shared_data import SHARED_DATA, shared_path  # noqa: E402,F401  (importable by test modules too)


@pytest.fixture
def shared_data() -> Path:
    return shared_path()


@pytest.fixture
def synthetic_ecg():
    """A deterministic 10-s, 2-lead (MLII, V1) 360-Hz Ecg made with neurokit2's simulator."""
    import neurokit2 as nk

    from ecglens.ecg import Ecg

    a = nk.ecg_simulate(duration=10, sampling_rate=360, heart_rate=70, random_state=1)
    b = nk.ecg_simulate(duration=10, sampling_rate=360, heart_rate=70, random_state=2) * 0.6
    return Ecg(signal=np.stack([a, b]).astype(np.float32), fs=360.0, leads=("MLII", "V1"), name="synthetic")
