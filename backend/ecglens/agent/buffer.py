"""Rollout storage for PPO, with generalised advantage estimation (the Stable-Baselines3 split).

Everything is preallocated with shape ``[n_steps, n_envs, ...]``; `RolloutBuffer.get` flattens the first two
axes and yields shuffled minibatches as `RolloutSamples`, shuffled with the caller's generator (never global state).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import numpy as np
import torch


class RolloutSamples(NamedTuple):
    """One minibatch, flattened over steps and environments (``B = batch size``)."""

    cells: torch.Tensor  # float32 [B, n_cells, n_cell_features]
    globals: torch.Tensor  # float32 [B, n_global_features]
    mask: torch.Tensor  # bool [B, n_cells]
    actions: torch.Tensor  # long [B, 2]: cell, action type
    old_values: torch.Tensor  # float32 [B]
    old_log_prob: torch.Tensor  # float32 [B]
    advantages: torch.Tensor  # float32 [B]
    returns: torch.Tensor  # float32 [B]


class RolloutBuffer:
    """Transitions of ``n_envs`` environments over ``n_steps`` steps.

    Parameters
    ----------
    n_steps, n_envs : int
        Rollout length and number of parallel environments.
    n_cells, n_cell_features, n_global_features : int
        Observation sizes (cells padded to ``n_cells``).
    gamma : float
        Discount. Default: 0.99.
    gae_lambda : float
        GAE lambda (1 = Monte-Carlo returns, 0 = one-step TD). Default: 0.95.

    Arrays: ``cells [n_steps, n_envs, n_cells, n_cell_features]``, ``globals [n_steps, n_envs, n_global]``,
    ``mask [n_steps, n_envs, n_cells]``, ``actions [n_steps, n_envs, 2]``, and ``[n_steps, n_envs]`` for
    ``rewards``, ``episode_starts``, ``values``, ``log_probs``, ``advantages``, ``returns``.
    """

    def __init__(
        self,
        n_steps: int,
        n_envs: int,
        n_cells: int,
        n_cell_features: int,
        n_global_features: int,
        *,
        gamma: float = 0.99,
        gae_lambda: float = 0.95,
    ):
        self.n_steps, self.n_envs = int(n_steps), int(n_envs)
        self.gamma, self.gae_lambda = float(gamma), float(gae_lambda)
        self.cells = np.zeros((n_steps, n_envs, n_cells, n_cell_features), dtype=np.float32)
        self.globals = np.zeros((n_steps, n_envs, n_global_features), dtype=np.float32)
        self.mask = np.zeros((n_steps, n_envs, n_cells), dtype=bool)
        self.actions = np.zeros((n_steps, n_envs, 2), dtype=np.int64)
        self.rewards = np.zeros((n_steps, n_envs), dtype=np.float32)
        self.episode_starts = np.zeros((n_steps, n_envs), dtype=np.float32)
        self.values = np.zeros((n_steps, n_envs), dtype=np.float32)
        self.log_probs = np.zeros((n_steps, n_envs), dtype=np.float32)
        self.advantages = np.zeros((n_steps, n_envs), dtype=np.float32)
        self.returns = np.zeros((n_steps, n_envs), dtype=np.float32)
        self.pos = 0

    def reset(self) -> None:
        self.pos = 0

    @property
    def full(self) -> bool:
        return self.pos >= self.n_steps

    def add(
        self,
        obs: dict[str, np.ndarray],
        actions: np.ndarray,
        rewards: np.ndarray,
        episode_starts: np.ndarray,
        values: np.ndarray,
        log_probs: np.ndarray,
    ) -> None:
        """Store one step of all environments. ``episode_starts[i]`` is 1 when ``obs`` row ``i`` begins an
        episode (so no value flows back across the boundary)."""
        if self.full:
            raise IndexError("rollout buffer is full; call compute_returns_and_advantage then reset")
        n = obs["cells"].shape[1]
        self.cells[self.pos, :, :n] = obs["cells"]
        self.mask[self.pos, :, :n] = obs["mask"]
        self.mask[self.pos, :, n:] = False
        self.globals[self.pos] = obs["globals"]
        self.actions[self.pos] = actions
        self.rewards[self.pos] = rewards
        self.episode_starts[self.pos] = episode_starts
        self.values[self.pos] = values
        self.log_probs[self.pos] = log_probs
        self.pos += 1

    def compute_returns_and_advantage(self, last_values: np.ndarray, dones: np.ndarray) -> None:
        """GAE(lambda) (Schulman et al. 2016): ``delta_t = r_t + gamma V(s_{t+1}) (1 - done) - V(s_t)``,
        ``A_t = delta_t + gamma lambda (1 - done) A_{t+1}``; returns ``= A + V`` (the value targets)."""
        last_gae = np.zeros(self.n_envs, dtype=np.float32)
        for t in reversed(range(self.n_steps)):
            if t == self.n_steps - 1:
                non_terminal = 1.0 - np.asarray(dones, dtype=np.float32)
                next_values = np.asarray(last_values, dtype=np.float32)
            else:
                non_terminal = 1.0 - self.episode_starts[t + 1]
                next_values = self.values[t + 1]
            delta = self.rewards[t] + self.gamma * next_values * non_terminal - self.values[t]
            last_gae = delta + self.gamma * self.gae_lambda * non_terminal * last_gae
            self.advantages[t] = last_gae
        self.returns = self.advantages + self.values

    def get(self, batch_size: int, rng: np.random.Generator) -> Iterator[RolloutSamples]:
        """Shuffled minibatches of ``batch_size`` transitions covering the whole buffer once."""
        total = self.n_steps * self.n_envs
        order = rng.permutation(total)
        flat = {
            "cells": self.cells.reshape(total, *self.cells.shape[2:]),
            "globals": self.globals.reshape(total, -1),
            "mask": self.mask.reshape(total, -1),
            "actions": self.actions.reshape(total, 2),
            "old_values": self.values.reshape(total),
            "old_log_prob": self.log_probs.reshape(total),
            "advantages": self.advantages.reshape(total),
            "returns": self.returns.reshape(total),
        }
        for start in range(0, total, batch_size):
            idx = order[start : start + batch_size]
            yield RolloutSamples(**{k: torch.as_tensor(v[idx]) for k, v in flat.items()})
