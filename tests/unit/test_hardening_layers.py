"""The hardening package's place in the layers: a library that never imports the service, nor torch on import."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BACKEND = Path(__file__).resolve().parents[2] / "backend"


def _modules_after(statement: str) -> set[str]:
    """The modules loaded in a fresh interpreter after ``statement``."""
    code = f"import sys\n{statement}\nprint('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(BACKEND), "PATH": "/usr/bin:/bin"},
    )
    return set(out.stdout.split())


def test_hardening_imports_neither_the_service_nor_torch():
    loaded = _modules_after("import ecglens.hardening, ecglens.hardening.cli")
    assert "ecglens.hardening.trainer" in loaded
    assert not {m for m in loaded if m.startswith("ecglens.service")}
    assert "torch" not in loaded
