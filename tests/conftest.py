"""Shared fixtures: where the real PhysioNet data lives, and small generated records that are always there."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
# Real records live beside the project (never copied into it); tests that need them skip when absent.
SHARED_DATA = Path(os.environ.get("ECGLENS_SHARED_DATA", REPO.parent / "shared" / "data"))

# Keep each test process to one thread: the suite runs on 2 cores with pytest-xdist.
os.environ.setdefault("OMP_NUM_THREADS", "1")
try:
    import torch

    torch.set_num_threads(1)
except ImportError:  # pragma: no cover
    pass


def shared_path(*parts: str) -> Path:
    """A path under ../shared/data, or skip the test when it is not there."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not present: {path}")
    return path


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
