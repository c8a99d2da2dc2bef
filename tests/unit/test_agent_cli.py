"""``ecglens explain`` and ``ecglens train-agent`` on generated files: JSON out, budget, errors exit 2."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from shared_data import shared_path
from test_agent_support import BUMP_AT_S, FS, bump_ecg

from ecglens.classifiers.card import ModelCard
from ecglens.cli import main


class _TorchBump(torch.nn.Module):
    """The bump detector of test_agent_support as a TorchScript-able module (multilabel probabilities)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = 60
        low = torch.nn.functional.avg_pool1d(x, w, stride=1, padding=w // 2, count_include_pad=False)
        smooth = torch.nn.functional.avg_pool1d(x, 9, stride=1, padding=4, count_include_pad=False)
        high = torch.nn.functional.avg_pool1d((x - smooth) ** 2, w, stride=1, padding=w // 2, count_include_pad=False)
        feat = (low**2 / (high + 0.01)).amax(dim=(1, 2))
        p = torch.sigmoid(3.0 * (torch.log(feat + 1e-9) - torch.log(torch.tensor(20.0))))
        return torch.stack([1 - p, p], dim=1)


@pytest.fixture
def bump_model(tmp_path):
    path = tmp_path / "bump.pt"
    torch.jit.script(_TorchBump()).save(str(path))
    ModelCard(
        name="bump", classes=["normal", "bump"], sampling_rate=FS, leads=["MLII", "V1"], window_s=10.0, multilabel=True
    ).save(path.with_suffix(".json"))
    return path


@pytest.fixture
def bump_record(tmp_path):
    import wfdb

    ecg = bump_ecg()
    wfdb.wrsamp(
        "bumprec",
        fs=FS,
        units=["mV", "mV"],
        sig_name=["MLII", "V1"],
        p_signal=ecg.signal.T.astype(np.float64),
        fmt=["16", "16"],
        write_dir=str(tmp_path),
    )
    return tmp_path / "bumprec.hea", tmp_path / "bumprec.dat"


def test_explain_prints_the_explanation_json_within_budget(bump_model, bump_record, capsys):
    hea, dat = bump_record
    rc = main(
        [
            "explain",
            str(hea),
            str(dat),
            "--model",
            str(bump_model),
            "--budget",
            "300",
            "--seed",
            "1",
            "--policy",
            "hand",
            "--json",
        ]
    )
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["queries"] <= 300 and out["method"] == "anytime"
    assert out["diagnosis"]["label"] == "bump" and out["adversarial"]["flipped"]
    top = out["segments"][0]
    assert top["lead"] == "MLII" and top["start_s"] - 0.15 <= BUMP_AT_S <= top["end_s"] + 0.15
    assert np.asarray(out["saliency"]).shape == (2, 2000)


def test_explain_summary_names_the_diagnosis_and_segments(bump_model, bump_record, capsys):
    hea, _ = bump_record
    rc = main(["explain", str(hea), "--model", str(bump_model), "--budget", "200", "--policy", "hand"])
    out = capsys.readouterr().out
    assert rc == 0 and "diagnosis: bump" in out and "critical segments" in out and "MLII" in out


def test_explain_missing_file_exits_2_naming_it(bump_model, tmp_path, capsys):
    missing = tmp_path / "nothere.hea"
    rc = main(["explain", str(missing), "--model", str(bump_model)])
    err = capsys.readouterr().err
    assert rc == 2 and f"{missing}: no such file" in err and "Traceback" not in err


def test_explain_unreadable_record_exits_2_naming_the_file(bump_model, tmp_path, capsys):
    bad = tmp_path / "broken.hea"
    bad.write_text("this is not a header\n")
    rc = main(["explain", str(bad), "--model", str(bump_model)])
    err = capsys.readouterr().err
    assert rc == 2 and "broken.hea" in err and "Traceback" not in err


def test_explain_unknown_distortion_exits_2(bump_model, bump_record, capsys):
    hea, dat = bump_record
    rc = main(["explain", str(hea), str(dat), "--model", str(bump_model), "--distortions", "thunder"])
    assert rc == 2 and "valid kinds: baseline_wander" in capsys.readouterr().err


def test_robustness_prints_the_report_json(bump_model, bump_record, capsys):
    hea, dat = bump_record
    rc = main(["robustness", str(hea), str(dat), "--model", str(bump_model), "--distortions", "gaussian", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["label"] == "bump" and [d["distortion"] for d in out["distortions"]] == ["gaussian"]


def test_train_agent_writes_a_policy_and_its_card(bump_model, tmp_path, capsys):
    data = shared_path("mitdb")
    out = tmp_path / "policy.pt"
    rc = main(
        [
            "train-agent",
            "--model",
            str(bump_model),
            "--data",
            str(data),
            "--records",
            "101",
            "--steps",
            "64",
            "--n-envs",
            "2",
            "--out",
            str(out),
        ]
    )
    assert rc == 0 and out.exists()
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["extra"]["data"]["records"] == ["101"] and card["extra"]["training"]["seed"] == 0
    assert card["extra"]["training"]["rollouts"] == 1 and card["extra"]["training"]["env_steps"] == 128
    assert "reward_curve" in card["extra"]["training"]


def test_train_agent_refuses_ds2_records(bump_model, tmp_path, capsys):
    rc = main(["train-agent", "--model", str(bump_model), "--records", "100", "--out", str(tmp_path / "p.pt")])
    assert rc == 2 and "not in DS1" in capsys.readouterr().err
