"""PPO for the agent: GAE, the policy's shape-agnostic network, a smoke training run, determinism, saving."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_agent_support import BumpClassifier, bump_ecg

from ecglens.agent.buffer import RolloutBuffer
from ecglens.agent.env import CELL_FEATURES, GLOBAL_FEATURES, VecSegmentGridEnv
from ecglens.agent.policy import PolicyCard, SegmentPolicy, load_policy, policy_misfit
from ecglens.agent.ppo import PPO, PPOConfig
from ecglens.agent.train import train_policy

SMALL = PPOConfig(n_steps=8, batch_size=16, n_epochs=2)


def _obs(rng: np.random.Generator, n_envs: int, n_cells: int) -> dict[str, np.ndarray]:
    return {
        "cells": rng.normal(size=(n_envs, n_cells, len(CELL_FEATURES))).astype(np.float32),
        "globals": rng.normal(size=(n_envs, len(GLOBAL_FEATURES))).astype(np.float32),
        "mask": np.ones((n_envs, n_cells), dtype=bool),
    }


def test_gae_matches_a_hand_computation_across_an_episode_boundary():
    buf = RolloutBuffer(3, 1, 2, len(CELL_FEATURES), len(GLOBAL_FEATURES), gamma=0.9, gae_lambda=0.5)
    rng = np.random.default_rng(0)
    rewards, values, starts = [1.0, 0.0, 2.0], [0.5, 0.2, 0.1], [1.0, 0.0, 1.0]
    for r, v, s in zip(rewards, values, starts):
        buf.add(_obs(rng, 1, 2), np.zeros((1, 2)), np.array([r]), np.array([s]), np.array([v]), np.zeros(1))
    buf.compute_returns_and_advantage(last_values=np.array([0.3]), dones=np.array([False]))
    d2 = 2.0 + 0.9 * 0.3 - 0.1
    d1 = 0.0 + 0.0 - 0.2  # step 2 starts a new episode: no bootstrap from it
    d0 = 1.0 + 0.9 * 0.2 - 0.5
    a2, a1 = d2, d1
    a0 = d0 + 0.9 * 0.5 * a1
    assert buf.advantages[:, 0] == pytest.approx([a0, a1, a2], abs=1e-6)
    assert buf.returns[:, 0] == pytest.approx(np.array([a0, a1, a2]) + np.array(values), abs=1e-6)


def test_minibatches_cover_the_buffer_once_with_documented_shapes():
    rng = np.random.default_rng(1)
    buf = RolloutBuffer(4, 3, 5, len(CELL_FEATURES), len(GLOBAL_FEATURES))
    for _ in range(4):
        buf.add(
            _obs(rng, 3, 5),
            rng.integers(0, 5, size=(3, 2)),
            rng.normal(size=3),
            np.zeros(3),
            rng.normal(size=3),
            rng.normal(size=3),
        )
    buf.compute_returns_and_advantage(np.zeros(3), np.zeros(3, dtype=bool))
    batches = list(buf.get(5, np.random.default_rng(0)))
    assert sum(len(b.actions) for b in batches) == 12
    assert batches[0].cells.shape == (5, 5, len(CELL_FEATURES)) and batches[0].actions.shape == (5, 2)


@pytest.mark.parametrize("n_cells", [80, 960, 7])
def test_policy_runs_on_any_number_of_cells(n_cells):
    torch.manual_seed(0)
    policy = SegmentPolicy(PolicyCard(hidden=16))
    obs = {k: torch.as_tensor(v) for k, v in _obs(np.random.default_rng(0), 2, n_cells).items()}
    actions, log_prob, value = policy.act(obs, generator=torch.Generator().manual_seed(0))
    assert actions.shape == (2, 2) and int(actions[:, 0].max()) < n_cells
    v2, lp2, ent = policy.evaluate_actions(obs, actions)
    assert torch.allclose(log_prob, lp2, atol=1e-5) and torch.allclose(value, v2) and bool((ent > 0).all())


def test_remove_is_never_chosen_on_a_clean_cell():
    torch.manual_seed(0)
    policy = SegmentPolicy(PolicyCard(hidden=16))
    obs = _obs(np.random.default_rng(0), 64, 10)
    obs["cells"][:, :, CELL_FEATURES.index("distorted")] = 0.0
    actions, _, _ = policy.act(
        {k: torch.as_tensor(v) for k, v in obs.items()}, generator=torch.Generator().manual_seed(1)
    )
    assert int(actions[:, 1].max()) < policy.card.n_types - 1


def test_ppo_smoke_run_improves_the_policy_loss_and_logs_the_paper_terms():
    clf = BumpClassifier()
    x = np.stack([bump_ecg(s).signal for s in range(2)])
    env = VecSegmentGridEnv(clf, x, n_envs=4, seed=0, max_steps=8)
    torch.manual_seed(0)
    policy = SegmentPolicy(PolicyCard(hidden=16))
    before = [p.detach().clone() for p in policy.parameters()]
    algo = PPO(policy, env, SMALL, seed=0).learn(64)
    assert len(algo.history) == 2
    for key in (
        "train/policy_loss",
        "train/value_loss",
        "train/entropy",
        "train/approx_kl",
        "train/clip_fraction",
        "rollout/reward_mean",
    ):
        assert np.isfinite(algo.history[-1][key])
    assert any(not torch.equal(a, b) for a, b in zip(before, policy.parameters()))


def test_training_is_deterministic_under_seed():
    clf = BumpClassifier()
    x = np.stack([bump_ecg(s).signal for s in range(2)])
    runs = [
        train_policy(clf, x, seed=5, minutes=1.0, total_timesteps=32, n_envs=2, config=SMALL, hidden=16, max_steps=6)[0]
        for _ in range(2)
    ]
    for a, b in zip(runs[0].state_dict().values(), runs[1].state_dict().values()):
        assert torch.equal(a, b)


def test_saved_policy_loads_with_its_card(tmp_path):
    torch.manual_seed(0)
    policy = SegmentPolicy(PolicyCard(hidden=16))
    path = tmp_path / "agent_policy.pt"
    policy.save(path, extra={"training": {"seed": 0}})
    loaded = load_policy(path)
    assert loaded.card.hidden == 16 and loaded.card.extra["training"]["seed"] == 0
    for a, b in zip(policy.state_dict().values(), loaded.state_dict().values()):
        assert torch.equal(a, b)


def test_policy_misfit_names_the_input_shape():
    policy = SegmentPolicy(PolicyCard(hidden=16))
    assert policy_misfit(policy, 12, 5000, 500.0) is None
    reason = policy_misfit(policy, 1, 64, 64.0)
    assert reason is not None and "1 s" in reason and "64 Hz" in reason


def test_broken_policy_file_is_refused_naming_it(tmp_path):
    path = tmp_path / "p.pt"
    path.write_bytes(b"not a state dict")
    (tmp_path / "p.json").write_text("{}")
    with pytest.raises(ValueError, match="p.pt"):
        load_policy(path)
