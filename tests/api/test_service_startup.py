"""The server starts without torch (~180 MB): ``ecglens serve``'s parser and the app's start import none of the
training commands; torch comes in with the first analysis that needs a model."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

BACKEND = Path(__file__).resolve().parents[2] / "backend"

SCRIPT = """
import sys
from fastapi.testclient import TestClient
from ecglens.cli import build_parser
from ecglens.service.app import create_app

args = build_parser("serve").parse_args(["serve", "--port", "1"])
assert args.func.__module__ == "ecglens.service.cli", args.func
with TestClient(create_app()) as client:
    assert client.get("/healthz").status_code == 200
print("torch" in sys.modules, sorted(m for m in sys.modules if m.startswith("ecglens.classifiers.")))
"""


def test_serve_and_the_app_start_without_torch(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(BACKEND), "ECGLENS_DATA_DIR": str(tmp_path), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith("False"), out.stdout


def test_other_commands_are_still_found():
    from ecglens.cli import build_parser

    for command in ("serve", "audit", "create-key"):
        assert command in build_parser(command)._subparsers._group_actions[0].choices
