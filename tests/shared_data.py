"""Where the real PhysioNet data lives. Test modules import `shared_path` from here (``tests/`` is on the
pytest python path), since ``from conftest import ...`` is ambiguous with several conftest files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Real records live beside the project (never copied into it); tests that need them skip when absent.
SHARED_DATA = Path(os.environ.get("ECGLENS_SHARED_DATA", REPO.parent / "shared" / "data"))


def shared_path(*parts: str) -> Path:
    """A path under ../shared/data, or skip the test when it is not there."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not present: {path}")
    return path
