"""ECGLENS_TORCH_THREADS: one knob for torch's CPU threads in the CLI, the API and the workers."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from ecglens.cli import main
from ecglens.threads import configure_torch_threads, torch_threads


def test_the_variable_wins_then_omp_then_one(monkeypatch):
    monkeypatch.delenv("ECGLENS_TORCH_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert torch_threads() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert torch_threads() == 3
    monkeypatch.setenv("ECGLENS_TORCH_THREADS", "2")
    assert torch_threads() == 2


@pytest.mark.parametrize("bad", ["two", "0", "-1", "1.5"])
def test_a_bad_value_is_refused_naming_the_variable(monkeypatch, bad):
    monkeypatch.setenv("ECGLENS_TORCH_THREADS", bad)
    with pytest.raises(ValueError, match="ECGLENS_TORCH_THREADS"):
        torch_threads()


def test_configure_sets_torch_once_it_is_imported():
    before = torch.get_num_threads()
    try:
        assert configure_torch_threads(1) == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_before_torch_is_imported_only_the_openmp_variable_is_set():
    code = (
        "import os, sys; from ecglens.threads import configure_torch_threads; configure_torch_threads(2); "
        "assert 'torch' not in sys.modules; print(os.environ['OMP_NUM_THREADS'])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "2"


def test_cli_refuses_a_bad_thread_count_with_a_message(monkeypatch, capsys):
    monkeypatch.setenv("ECGLENS_TORCH_THREADS", "many")
    assert main(["explain", "no-such-record.hea"]) == 2
    assert "ECGLENS_TORCH_THREADS" in capsys.readouterr().err
