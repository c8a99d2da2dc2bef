"""Hardening: the data mix, the refusal of models we cannot fine-tune, and a smoke run on a tiny TorchScript model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ecglens.classifiers import load_classifier
from ecglens.classifiers.card import ModelCard, card_path_for
from ecglens.classifiers.train import Calibrated
from ecglens.datasets.mitdb import CLASS_NAMES
from ecglens.errors import ClassifierError
from ecglens.hardening import (
    AdversarialPool,
    ArraySampler,
    HardenConfig,
    HardeningMix,
    file_sha256,
    harden,
    harden_module,
    hardened_card,
    highpass_length,
    load_trainable,
    quick_signal_power,
    save_hardened,
    validation_warnings,
)

FS = 200.0
WINDOW_S = 2.0
N = int(FS * WINDOW_S)


class TinyNet(torch.nn.Module):
    """Two convolutions and a linear head: logits for the four MIT-BIH classes from [n, 2, 400] at 200 Hz."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Sequential(
            torch.nn.Conv1d(2, 6, 9, stride=4, padding=4),
            torch.nn.BatchNorm1d(6),
            torch.nn.ReLU(),
            torch.nn.Conv1d(6, 8, 5, stride=2, padding=2),
            torch.nn.ReLU(),
        )
        self.head = torch.nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x - x.mean(dim=2, keepdim=True)
        return self.head(self.conv(x).amax(dim=2))


def _card(name: str) -> ModelCard:
    return ModelCard(
        name=name,
        classes=list(CLASS_NAMES),
        sampling_rate=FS,
        leads=["MLII", "V1"],
        window_s=WINDOW_S,
        multilabel=True,
        output="probabilities",
        version="3",
    )


def _save(module: torch.nn.Module, path, name: str = "tiny", script: bool = True):
    scripted = torch.jit.script(module.eval()) if script else module
    torch.jit.save(scripted, str(path))
    _card(name).save(card_path_for(path))
    return path


@pytest.fixture
def tiny_model(tmp_path):
    torch.manual_seed(0)
    return _save(Calibrated(TinyNet(), [1.0] * 4, [0.0] * 4), tmp_path / "tiny.pt")


def _windows(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Generated 2-s, 2-lead strips: narrow beats every ~0.8 s; a wide inverted beat marks ventricular ectopy."""
    t = np.arange(N) / FS
    X = np.zeros((n, 2, N), np.float32)
    Y = np.zeros((n, 4), np.float32)
    for i in range(n):
        for b in np.arange(rng.uniform(0.1, 0.4), WINDOW_S, rng.uniform(0.7, 0.9)):
            X[i] += np.exp(-0.5 * ((t - b) / 0.012) ** 2)[None] * np.array([[1.0], [0.5]])
        ectopic = i % 2 == 1
        if ectopic:
            X[i] -= 1.2 * np.exp(-0.5 * ((t - rng.uniform(0.5, 1.5)) / 0.04) ** 2)[None]
        X[i] += 0.02 * rng.standard_normal((2, N))
        Y[i, 1 if ectopic else 0] = 1.0
    return X, Y


def _pool(rng: np.random.Generator, m: int = 4) -> AdversarialPool:
    X, Y = _windows(m, rng)
    noise = (0.1 * rng.standard_normal(X.shape)).astype(np.float32)
    return AdversarialPool(X, noise, Y, np.full(m, 12.0), tried=m, queries=10 * m, method="test")


def test_data_mix_is_deterministic_under_seed():
    X, Y = _windows(24, np.random.default_rng(1))
    mix = HardeningMix(ArraySampler(X, Y), _pool(np.random.default_rng(2)), FS, HardenConfig())
    a = mix.draw(32, np.random.default_rng(7))
    b = mix.draw(32, np.random.default_rng(7))
    c = mix.draw(32, np.random.default_rng(8))
    assert np.array_equal(a.X, b.X) and np.array_equal(a.Y, b.Y) and np.array_equal(a.source, b.source)
    assert np.array_equal(a.kind, b.kind) and np.allclose(a.snr_db, b.snr_db, equal_nan=True)
    assert not np.array_equal(a.X, c.X)


def test_data_mix_keeps_labels_and_draws_noise_at_nstdb_levels():
    X, Y = _windows(24, np.random.default_rng(1))
    config = HardenConfig(mix=(0.2, 0.6, 0.2))
    mix = HardeningMix(ArraySampler(X, Y), _pool(np.random.default_rng(2)), FS, config)
    rows = [mix.draw(64, np.random.default_rng(s)) for s in range(6)]
    source = np.concatenate([r.source for r in rows])
    shares = np.bincount(source, minlength=3) / len(source)
    assert np.allclose(shares, config.mix, atol=0.07)
    # Every row carries a generated label (exactly one of normal / ventricular ectopy), noise or not.
    for r in rows:
        assert np.array_equal(r.Y[:, :2].sum(axis=1), np.ones(len(r.Y)))
    # Noisy rows: the added noise sits at the drawn SNR against the (clean) window's power proxy.
    batch = rows[0]
    noisy = np.flatnonzero(batch.source == 1)
    assert noisy.size and set(batch.kind[noisy]) <= {
        "baseline_wander",
        "powerline",
        "muscle",
        "electrode_motion",
        "gaussian",
    }
    levels = np.asarray(config.snr_levels_db)
    assert np.all(np.min(np.abs(batch.snr_db[noisy, None] - levels[None]), axis=1) <= config.snr_jitter_db + 1e-9)
    assert np.all(np.isnan(batch.snr_db[batch.source != 1]))


def test_noise_share_reaches_requested_snr():
    X, Y = _windows(4, np.random.default_rng(3))
    config = HardenConfig(mix=(0.0, 1.0, 0.0), snr_levels_db=(6.0,), snr_jitter_db=0.0, kinds=("gaussian",))
    batch = HardeningMix(ArraySampler(X[:1], Y[:1]), None, FS, config).draw(3, np.random.default_rng(0))
    added = batch.X - X[:1]
    power = quick_signal_power(X[:1])[0]
    snr = 10 * np.log10(power[None] / np.mean(added.astype(np.float64) ** 2, axis=2))
    assert np.allclose(snr, 6.0, atol=1e-3)


def test_empty_agent_pool_moves_its_share_to_noise():
    X, Y = _windows(8, np.random.default_rng(1))
    mix = HardeningMix(ArraySampler(X, Y), None, FS, HardenConfig(mix=(0.4, 0.4, 0.2)))
    assert mix.mix[2] == 0 and np.isclose(mix.mix[1], 0.6)
    assert not np.any(mix.draw(50, np.random.default_rng(0)).source == 2)


def test_frozen_torchscript_is_refused_with_a_clear_error(tmp_path, capsys):
    from ecglens.cli import main

    torch.manual_seed(0)
    frozen = torch.jit.freeze(torch.jit.script(TinyNet().eval()))
    path = _save(frozen, tmp_path / "frozen.pt", script=False)
    with pytest.raises(ClassifierError, match="no trainable floating-point parameters") as err:
        load_trainable(path)
    assert str(path) in str(err.value)
    assert main(["harden", "--model", str(path), "--out", str(tmp_path / "out.pt")]) == 2
    message = capsys.readouterr().err
    assert "frozen.pt" in message and "Traceback" not in message


def test_hardened_model_may_not_overwrite_its_parent(tiny_model):
    with pytest.raises(ValueError, match="must not overwrite its parent"):
        harden(tiny_model, tiny_model)


def test_hardening_on_other_classes_is_refused(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "other.pt"
    torch.jit.save(torch.jit.script(TinyNet().eval()), str(path))
    card = _card("other")
    card.classes = ["a", "b", "c", "d"]
    card.thresholds = {}
    card.save(card_path_for(path))
    with pytest.raises(ClassifierError, match="needs the classes"):
        harden(path, tmp_path / "out.pt", data_dir=tmp_path)


def _tiny_run(tiny_model, seed: int = 0):
    parent = load_trainable(tiny_model)
    X, Y = _windows(24, np.random.default_rng(10))
    vX, vY = _windows(12, np.random.default_rng(11))
    config = HardenConfig(
        seed=seed, epochs=2, steps_per_epoch=3, batch_size=8, threads=1, agent_windows=2, agent_budget=24
    )
    return parent, harden_module(parent, ArraySampler(X, Y), vX, vY, config, log=None)


def test_smoke_hardening_writes_model_and_card_with_parent_and_recipe(tiny_model, tmp_path):
    parent, result = _tiny_run(tiny_model)
    assert parent.calibrated
    card = hardened_card(parent, result, "tiny_hardened")
    out = save_hardened(result, card, tmp_path / "tiny_hardened.pt")
    written = json.loads(card_path_for(out).read_text())
    assert written["parent"] == "tiny@3"
    assert written["training"]["parent"] == {
        "name": "tiny",
        "version": "3",
        "sha256": file_sha256(tiny_model),
        "file": "tiny.pt",
        "architecture": "",
    }
    recipe = written["training"]
    assert recipe["seed"] == 0 and recipe["epochs"] == 2 and recipe["lr"] == HardenConfig().lr
    assert set(recipe["data_mix"]["shares"]) == {"clean", "noise", "adversarial"}
    assert recipe["agent_pool"]["windows_explained"] == 2 and len(recipe["history"]) == 2 * HardenConfig().soup
    assert written["extra"]["known_issues"] == validation_warnings(result.figures, False)
    assert written["thresholds"] == {c: 0.5 for c in CLASS_NAMES}  # the parent's operating point, kept
    assert recipe["thresholds"].startswith("the parent's")
    assert set(written["metrics"]["ds1_validation"]) == set(CLASS_NAMES)
    # Same input contract as the parent; it loads and answers like any TorchScript classifier.
    for key in ("classes", "sampling_rate", "leads", "window_s", "multilabel", "output", "input_scale"):
        assert written[key] == parent.card.to_dict()[key]
    clf = load_classifier(out, device="cpu")
    probs = clf.predict_proba(np.zeros((3, 2, N), np.float32))
    assert probs.shape == (3, 4) and np.all((probs >= 0) & (probs <= 1))
    # The weights moved and the parent file is untouched.
    new = torch.jit.load(str(out))
    old = torch.jit.load(str(tiny_model))
    assert any(not torch.equal(a, b) for a, b in zip(new.parameters(), old.parameters()))
    assert file_sha256(tiny_model) == written["training"]["parent"]["sha256"]


def test_recalibration_keeps_the_parents_threshold_where_validation_separates_the_class(tiny_model):
    from ecglens.hardening.trainer import _probabilities, _recalibrate

    parent = load_trainable(tiny_model)
    X, _ = _windows(40, np.random.default_rng(12))
    p = _probabilities(parent, X)
    Y = np.zeros((40, 4), np.float32)
    Y[:, 0] = p[:, 0] > np.median(p[:, 0])  # ordered by the model itself: perfectly separated
    Y[:, 1] = np.random.default_rng(13).random(40) < 0.5  # unrelated to it: Youden picks a new threshold
    thresholds, kept = _recalibrate(parent, X, Y, "youden")
    assert kept == [CLASS_NAMES[0]] and thresholds[CLASS_NAMES[0]] == 0.5  # the parent's (card default)
    assert thresholds[CLASS_NAMES[1]] != 0.5
    # The default keeps every threshold the parent's.
    assert _recalibrate(parent, X, Y) == ({c: 0.5 for c in CLASS_NAMES}, [])
    with pytest.raises(ValueError, match="'parent' or 'youden'"):
        _recalibrate(parent, X, Y, "median")


def test_hardening_is_deterministic_under_seed(tiny_model):
    _, a = _tiny_run(tiny_model, seed=3)
    _, b = _tiny_run(tiny_model, seed=3)
    for (ka, va), (kb, vb) in zip(a.module.state_dict().items(), b.module.state_dict().items()):
        assert ka == kb and torch.equal(va, vb), ka
    assert a.thresholds == b.thresholds


def test_hardening_job_refuses_models_whose_weights_we_do_not_hold(tmp_path):
    from ecglens.service.config import Settings
    from ecglens.service.db import Model, utcnow
    from ecglens.service.hardening_job import run_hardening_job
    from ecglens.service.runtime import Runtime

    runtime = Runtime(Settings(_env_file=None, data_dir=tmp_path / "var", database_url="", broker_url=""))
    try:
        with runtime.sessions() as session:
            session.add(
                Model(name="remote", kind="http", spec="https://models.example/ecg", card={}, created_at=utcnow())
            )
            session.add(Model(name="remote-hardened-s0", kind="onnx", spec="x.onnx", card={}, created_at=utcnow()))
            session.commit()
        with pytest.raises(LookupError, match="'absent' is not registered"):
            run_hardening_job(runtime, "absent")
        with pytest.raises(ValueError, match="already registered"):
            run_hardening_job(runtime, "remote")
        with pytest.raises(ClassifierError, match="is http: hardening fine-tunes weights"):
            run_hardening_job(runtime, "remote", new_name="remote-h")
        with runtime.sessions() as session:  # nothing was registered by the refusals
            assert session.get(Model, "remote-h") is None
    finally:
        runtime.close()


def test_shipped_hardened_model_records_its_parent_recipe_and_ds2_figures():
    from ecglens.classifiers import models_dir

    path = models_dir() / "builtin_hardened.pt"
    if not path.exists():
        pytest.skip(f"{path} not built (ecglens harden --model builtin --out {path})")
    card = ModelCard.load(card_path_for(path))
    parent = card.training["parent"]
    assert card.parent == f"{parent['name']}@{parent['version']}" and len(parent["sha256"]) == 64
    levels = card.training["data_mix"]["snr_levels_db"]
    assert levels == card.training["config"]["snr_levels_db"] and {24.0, 18.0, 12.0, 6.0, 0.0, -6.0} <= set(levels)
    assert card.training["agent_pool"]["windows_explained"] > 0
    assert set(card.metrics["ds2"]) == set(CLASS_NAMES)
    assert set(card.metrics["hardening_ds2"]["targets"]["flip_snr_gain_db"]) == {
        "baseline_wander",
        "powerline",
        "muscle",
        "electrode_motion",
        "gaussian",
    }
    clf = load_classifier(path, device="cpu")
    assert clf.predict_proba(np.zeros((1, 2, 3600), np.float32)).shape == (1, 4)


def test_kind_weights_set_the_share_of_each_noise_kind():
    X, Y = _windows(8, np.random.default_rng(1))
    config = HardenConfig(
        mix=(0.0, 1.0, 0.0),
        kind_weights={"baseline_wander": 3.0, "muscle": 0.0, "electrode_motion": 0.0, "gaussian": 0.0},
    )
    kinds = np.concatenate(
        [HardeningMix(ArraySampler(X, Y), None, FS, config).draw(100, np.random.default_rng(s)).kind for s in range(4)]
    )
    share = np.mean(kinds == "baseline_wander")
    assert abs(share - 0.75) < 0.06 and set(kinds) == {"baseline_wander", "powerline"}
    with pytest.raises(ValueError, match="must map kinds"):
        HardeningMix(ArraySampler(X, Y), None, FS, HardenConfig(kind_weights={"hum": 1.0}))


def test_baseline_removal_front_end_ignores_slow_drift_and_exports(tiny_model, tmp_path):
    from ecglens.hardening import with_baseline_removal
    from ecglens.hardening.trainer import _probabilities

    parent = load_trainable(tiny_model)
    wrapped = with_baseline_removal(parent, 0.5)
    X, _ = _windows(6, np.random.default_rng(4))
    t = np.arange(N) / FS
    drift = (1.5 * np.sin(2 * np.pi * 0.1 * t + 1.0)).astype(np.float32)[None, None]  # 0.1 Hz, 1.5 mV
    moved_parent = np.abs(_probabilities(parent, X + drift) - _probabilities(parent, X)).max()
    moved_wrapped = np.abs(_probabilities(wrapped, X + drift) - _probabilities(wrapped, X)).max()
    assert moved_wrapped < 0.2 * moved_parent
    # Hardening with the front end exports it inside the module, and the card says so.
    vX, vY = _windows(12, np.random.default_rng(11))
    config = HardenConfig(
        epochs=1, steps_per_epoch=2, batch_size=8, agent_windows=0, baseline_removal_s=0.5, export_highpass_hz=0.0
    )  # the moving average alone
    result = harden_module(
        load_trainable(tiny_model), ArraySampler(X, _windows(6, np.random.default_rng(4))[1]), vX, vY, config, log=None
    )
    card = hardened_card(parent, result, "tiny_filtered")
    out = save_hardened(result, card, tmp_path / "tiny_filtered.pt")
    assert torch.jit.load(str(out)).net.original_name == "BaselineRemoved"
    assert card.training["front_end"].startswith("BaselineRemoved")


def test_highpass_front_end_removes_a_slow_drift_and_keeps_the_qrs(tmp_path):
    from ecglens.hardening import with_highpass

    fs, seconds = 360.0, 10.0
    card = ModelCard(
        name="tiny360",
        classes=list(CLASS_NAMES),
        sampling_rate=fs,
        leads=["MLII", "V1"],
        window_s=seconds,
        multilabel=True,
        output="probabilities",
        version="1",
    )
    torch.manual_seed(0)
    path = tmp_path / "tiny360.pt"
    torch.jit.save(torch.jit.script(Calibrated(TinyNet(), [1.0] * 4, [0.0] * 4).eval()), str(path))
    card.save(card_path_for(path))
    front = with_highpass(load_trainable(path), 0.67).module.net  # default 1081 taps (3 s)
    t = np.arange(int(fs * seconds)) / fs
    beats = np.arange(0.4, seconds, 0.8)
    qrs = sum(np.exp(-0.5 * ((t - c) / 0.015) ** 2) for c in beats)  # 1-mV QRS-like beats, 35 ms wide at half height
    drift = 1.5 * np.sin(2 * np.pi * 0.3 * t + 0.7)  # 0.3 Hz respiration-like drift, 1.5 mV
    rng = np.random.default_rng(3)
    x = np.stack([qrs + drift, 0.5 * qrs - drift]).astype(np.float32)[None] + rng.normal(
        0, 0.01, (1, 2, len(t))
    ).astype(np.float32)
    out = front.filtered(torch.from_numpy(x)).numpy()[0]
    assert out.shape == x.shape[1:]
    # Drift: what is left at 0.3 Hz is under 1 % of its power (-20 dB), edges included (reflect padding).
    residual = out[0] - (qrs - qrs.mean())
    assert np.mean(residual**2) < 0.01 * np.mean(drift**2)
    # QRS: linear phase, so each beat's peak stays in place and within 5 % of its height above its neighbourhood.
    for c in beats[1:-1]:
        i = int(round(c * fs))
        near = out[0, i - 40 : i + 41]
        assert abs(int(np.argmax(near)) - 40) <= 1
        assert abs(near.max() - np.median(out[0, i - 144 : i + 145]) - 1.0) < 0.05
    # The filter is part of the scripted model; a filter longer than twice the window is refused.
    assert front.original_name == "HighPassed"
    with pytest.raises(ValueError, match="needs windows of more than"):
        with_highpass(load_trainable(path), 0.67, taps=int(fs * seconds) * 2 + 1)


def test_hardening_with_the_highpass_exports_it_and_says_so(tiny_model, tmp_path):
    X, Y = _windows(6, np.random.default_rng(4))
    vX, vY = _windows(12, np.random.default_rng(11))
    config = HardenConfig(
        epochs=1, steps_per_epoch=2, batch_size=8, agent_windows=0, highpass_hz=0.67, highpass_taps=201
    )  # 1 s at the tiny model's 200 Hz (its windows are 2 s)
    result = harden_module(load_trainable(tiny_model), ArraySampler(X, Y), vX, vY, config, log=None)
    card = hardened_card(load_trainable(tiny_model), result, "tiny_highpassed")
    out = save_hardened(result, card, tmp_path / "tiny_highpassed.pt")
    loaded = torch.jit.load(str(out))
    assert loaded.net.original_name == "HighPassed" and loaded.net.taps.numel() == 201
    assert card.training["front_end"].startswith("HighPassed")
    with torch.no_grad():
        probs = loaded(torch.from_numpy(vX)).numpy()
    assert probs.shape == (12, 4) and np.all((probs >= 0) & (probs <= 1))


def test_l2sp_and_frozen_batch_norm_keep_the_fine_tune_near_its_parent(tiny_model):
    X, Y = _windows(24, np.random.default_rng(10))
    vX, vY = _windows(12, np.random.default_rng(11))
    base = dict(
        epochs=1, steps_per_epoch=6, batch_size=8, agent_windows=0, lr=1e-2, weight_decay=0.0, export_highpass_hz=0.0
    )  # compare the bare network with its parent
    parent_state = {k: v.clone() for k, v in load_trainable(tiny_model).module.net.state_dict().items()}

    def distance(**kw) -> tuple[float, dict]:
        state = harden_module(
            load_trainable(tiny_model), ArraySampler(X, Y), vX, vY, HardenConfig(**base, **kw), log=None
        ).module.net.state_dict()
        d = sum(
            float(((state[k] - parent_state[k]) ** 2).sum())
            for k in state
            if "running" not in k and "num_batches" not in k
        )
        return d, state

    free, free_state = distance()
    anchored, _ = distance(l2sp=50.0)
    assert anchored < free
    _, frozen_state = distance(freeze_bn=True)
    bn = [k for k in parent_state if k.endswith("running_mean")]
    assert bn and all(torch.equal(frozen_state[k], parent_state[k]) for k in bn)
    assert any(not torch.equal(free_state[k], parent_state[k]) for k in bn)


def _benchmark_module(name: str = "hardening"):
    """A script of benchmarks/ imported as a module."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"{name}_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_breakable_median_is_zero_gain_for_an_unchanged_model_and_floors_held_trials():
    bench = _benchmark_module()
    original = [10.0, None, -3.0, 4.0, None, 20.0]
    a, b, m = bench.breakable_medians(original, original, -12.0)
    assert m == 4 and a == b == 7.0
    # The hardened model holds on two of the original's breakable trials: they count at the floor.
    a, b, m = bench.breakable_medians(original, [None, None, -8.0, None, 5.0, 0.0], -12.0)
    assert m == 4 and a == 7.0 and b == -10.0  # median of -12, -8, -12 (held), 0
    assert np.isnan(bench.breakable_medians([None, None], [1.0, None], -12.0)[0])


def test_breakable_gain_interval_resamples_cases_and_is_zero_for_an_unchanged_model():
    bench = _benchmark_module()
    original = [10.0, None, -3.0, 4.0, None, 20.0, 8.0, 6.0]
    cases = ["a", "a", "b", "b", "c", "c", "d", "d"]
    assert bench.breakable_gain_ci(original, original, cases, -12.0) == (0.0, 0.0)
    lo, hi = bench.breakable_gain_ci(original, [None, 1.0, -8.0, None, 5.0, 0.0, 8.0, 2.0], cases, -12.0)
    gain = bench.breakable_medians(original, [None, 1.0, -8.0, None, 5.0, 0.0, 8.0, 2.0], -12.0)
    assert lo <= gain[0] - gain[1] <= hi and lo < hi
    assert np.isnan(bench.breakable_gain_ci([None, None], [1.0, None], ["a", "b"], -12.0)[0])


def test_soup_is_the_average_of_its_members_fine_tunes(tiny_model):
    X, Y = _windows(24, np.random.default_rng(10))
    vX, vY = _windows(12, np.random.default_rng(11))
    base = dict(epochs=1, steps_per_epoch=3, batch_size=8, agent_windows=0)

    def net_state(**kw) -> dict:
        result = harden_module(
            load_trainable(tiny_model), ArraySampler(X, Y), vX, vY, HardenConfig(**base, **kw), log=None
        )
        return result.module.net.state_dict()

    a, b, soup = net_state(seed=4, soup=1), net_state(seed=5, soup=1), net_state(seed=4, soup=2)
    weights = [k for k, v in soup.items() if v.is_floating_point()]
    assert weights and all(torch.allclose(soup[k], (a[k] + b[k]) / 2, atol=1e-6) for k in weights)
    assert any(not torch.allclose(a[k], b[k]) for k in weights)


def test_highpass_length_is_three_seconds_at_the_cards_rate_within_its_window():
    from types import SimpleNamespace

    assert highpass_length(SimpleNamespace(window_s=10.0, sampling_rate=360.0)) == 1081
    assert highpass_length(SimpleNamespace(window_s=10.0, sampling_rate=500.0)) == 1501
    # A 1-s window at 200 Hz allows fewer than 400 taps (reflect padding needs the window past half the filter).
    assert highpass_length(SimpleNamespace(window_s=1.0, sampling_rate=200.0)) == 399
    assert highpass_length(SimpleNamespace(window_s=10.0, sampling_rate=360.0), 201) == 201


def test_the_export_high_pass_comes_after_recalibration_and_keeps_the_thresholds(tiny_model):
    import torch

    X, Y = _windows(24, np.random.default_rng(10))
    vX, vY = _windows(12, np.random.default_rng(11))
    common = dict(epochs=1, steps_per_epoch=2, batch_size=8, agent_windows=0)
    bare = harden_module(
        load_trainable(tiny_model), ArraySampler(X, Y), vX, vY, HardenConfig(**common, export_highpass_hz=0.0), log=None
    )
    filtered = harden_module(load_trainable(tiny_model), ArraySampler(X, Y), vX, vY, HardenConfig(**common), log=None)
    assert filtered.thresholds == bare.thresholds  # same fine-tune, same recalibration: the filter comes after
    assert filtered.config.highpass_taps == 601  # 3 s at the tiny model's 200 Hz (its 2-s windows allow < 800)
    card = hardened_card(load_trainable(tiny_model), filtered, "tiny_export")
    assert "at export" in card.training["front_end"]
    t = np.arange(N) / FS
    drift = vX[:2] + (2.0 * np.sin(2 * np.pi * 0.2 * t)).astype(np.float32)  # slow baseline wander, 2 mV
    with torch.no_grad():
        moved_bare = np.abs(bare.module(torch.from_numpy(drift)) - bare.module(torch.from_numpy(vX[:2]))).max()
        moved = np.abs(filtered.module(torch.from_numpy(drift)) - filtered.module(torch.from_numpy(vX[:2]))).max()
    assert float(moved) < float(moved_bare)


def test_validation_warnings_name_auc_drops_and_thresholds_the_data_does_not_set():
    def fig(auc, threshold=0.5, support=10):
        return {"auc": auc, "threshold": threshold, "support": support}

    figures = {
        "parent": {"clean": {"V": fig(0.90), "AF": fig(1.0)}, "noisy": {"V": fig(0.80), "AF": fig(0.99)}},
        "hardened": {
            "clean": {"V": fig(0.895), "AF": fig(1.0, 0.746, 73)},
            "noisy": {"V": fig(0.70), "AF": fig(0.995)},
        },
    }
    warnings = validation_warnings(figures, thresholds_from_validation=True)
    assert len(warnings) == 2
    assert warnings[0].startswith("V: noisy validation AUC fell from 0.800 (parent) to 0.700")
    assert warnings[1].startswith("AF: the 73 validation positives are (almost) perfectly separated")
    assert "0.746" in warnings[1]
    # Thresholds kept from the parent (a single-label model): only the AUC drop is news.
    assert validation_warnings(figures, thresholds_from_validation=False) == warnings[:1]
    # AF's threshold kept from the parent by the recalibration: said so, instead of the unset-threshold warning.
    kept = validation_warnings(figures, thresholds_from_validation=True, kept_thresholds=["AF"])
    assert kept[0] == warnings[0] and len(kept) == 2 and "the parent's (0.746) is kept" in kept[1]


def test_folds_refuse_validation_and_both_af_records_and_tabulate_the_benchmark_summaries(tmp_path):
    folds = _benchmark_module("hardening_folds")
    # a validation record, both AF records (one alone may be held out), a DS2 record
    for records in (["116"], ["201", "203"], ["100"]):
        with pytest.raises(ValueError, match="cannot be held out"):
            folds.run_fold(1, records, tmp_path, "t", {}, 1)
    gain = {"gain_db": 7.25, "gain_ci95_db": [3.0, 9.5], "trials": 40}
    row = {
        "fold": 1,
        "records": ["101", "108"],
        "cases": 32,
        "score": {"original": 0.7, "hardened": 0.9},
        "targets": {"ventricular_auc_delta": -0.004, "breakable_flip_snr_db": {k: gain for k in folds.KINDS}},
    }
    text = folds.table([row])
    assert "| 1 | 101,108 | 32 | -0.0040 | 7.2 [3.0, 9.5] (n=40) |" in text and "0.700 → 0.900" in text
