"""Proximal Policy Optimization (Schulman et al. 2017, arXiv:1707.06347), written plainly in torch.

`PPO.learn` reads top to bottom like Stable-Baselines3's on-policy loop: collect a rollout of ``n_steps`` from
every environment into the `RolloutBuffer`, compute GAE, log, then `PPO.train` (ratio, clipped surrogate, value
loss, entropy bonus, gradient clipping) for ``n_epochs`` over shuffled minibatches.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ecglens.agent.buffer import RolloutBuffer
from ecglens.agent.env import VecSegmentGridEnv
from ecglens.agent.policy import SegmentPolicy


@dataclass(frozen=True)
class PPOConfig:
    """PPO hyperparameters (SB3 defaults scaled down for a small, fast problem).

    n_steps : steps per environment per rollout. Default: 64.
    batch_size : minibatch size. Default: 256.
    n_epochs : passes over each rollout. Default: 4.
    learning_rate : Adam step size. Default: 3e-4.
    gamma, gae_lambda : discount and GAE lambda. Defaults: 0.97, 0.95.
    clip_range : PPO ratio clip epsilon. Default: 0.2.
    ent_coef, vf_coef : entropy bonus and value-loss weights. Defaults: 0.01, 0.5.
    max_grad_norm : gradient clipping norm. Default: 0.5.
    """

    n_steps: int = 64
    batch_size: int = 256
    n_epochs: int = 4
    learning_rate: float = 3e-4
    gamma: float = 0.97
    gae_lambda: float = 0.95
    clip_range: float = 0.2
    ent_coef: float = 0.01
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5


class PPO:
    """PPO on a `VecSegmentGridEnv` with a `SegmentPolicy`.

    Parameters
    ----------
    policy : SegmentPolicy
        Trained in place.
    env : VecSegmentGridEnv
        The vectorised environment (one classifier call per step for all environments).
    config : PPOConfig
        Default: `PPOConfig()`.
    seed : int
        Seeds torch's sampling generator and the minibatch shuffling. Default: 0.
    """

    def __init__(self, policy: SegmentPolicy, env: VecSegmentGridEnv, config: PPOConfig | None = None, seed: int = 0):
        self.policy = policy
        self.env = env
        self.config = config or PPOConfig()
        self.seed = int(seed)
        torch.manual_seed(self.seed)
        self.generator = torch.Generator().manual_seed(self.seed)
        self.rng = np.random.default_rng(self.seed)
        self.optimizer = torch.optim.Adam(policy.parameters(), lr=self.config.learning_rate)
        self.history: list[dict[str, float]] = []  # one row per rollout: the logged figures
        self._obs: dict[str, np.ndarray] | None = None
        self._episode_starts = np.ones(env.n_envs, dtype=np.float32)

    # ------------------------------------------------------------------ loop
    def learn(
        self,
        total_timesteps: int,
        *,
        time_limit_s: float | None = None,
        callback: Callable[[dict[str, float]], None] | None = None,
    ) -> PPO:
        """Alternate rollouts and training until ``total_timesteps`` environment steps (all environments
        together) or ``time_limit_s`` seconds of wall time have passed."""
        start = time.perf_counter()
        if self._obs is None:
            self._obs = self.env.reset(seed=self.seed)
        steps = 0
        while steps < total_timesteps:
            buffer = self.collect_rollouts()
            steps += buffer.n_steps * buffer.n_envs
            log = self.train(buffer)
            log.update(self._rollout_log(buffer))
            log["time/steps"] = float(steps)
            log["time/elapsed_s"] = time.perf_counter() - start
            self.history.append(log)
            if callback is not None:
                callback(log)
            if time_limit_s is not None and log["time/elapsed_s"] >= time_limit_s:
                break
        return self

    @torch.no_grad()
    def collect_rollouts(self) -> RolloutBuffer:
        """Run the current policy (sampling) for ``n_steps`` in every environment; returns the filled buffer."""
        cfg, env = self.config, self.env
        assert self._obs is not None
        n_cells = self._obs["cells"].shape[1]
        buffer = RolloutBuffer(
            cfg.n_steps,
            env.n_envs,
            n_cells,
            self._obs["cells"].shape[2],
            self._obs["globals"].shape[1],
            gamma=cfg.gamma,
            gae_lambda=cfg.gae_lambda,
        )
        self.policy.eval()
        self._finished_from = len(env.finished)
        dones = np.zeros(env.n_envs, dtype=bool)
        for _ in range(cfg.n_steps):
            obs_t = _to_tensors(self._obs, n_cells)
            actions, log_prob, values = self.policy.act(obs_t, generator=self.generator)
            new_obs, rewards, dones, _ = env.step(actions.numpy())
            buffer.add(
                _pad(self._obs, n_cells),
                actions.numpy(),
                rewards,
                self._episode_starts,
                values.numpy(),
                log_prob.numpy(),
            )
            self._obs = new_obs
            self._episode_starts = dones.astype(np.float32)
        _, _, last_values = self.policy.act(_to_tensors(self._obs, n_cells), deterministic=True)
        # Finished episodes were replaced already: their bootstrap value is the fresh episode's, cut by `dones`.
        buffer.compute_returns_and_advantage(last_values.numpy(), dones)
        return buffer

    # ------------------------------------------------------------------ the update
    def train(self, buffer: RolloutBuffer) -> dict[str, float]:
        """One PPO update over ``buffer``; returns the mean losses under ``train/...`` keys."""
        cfg = self.config
        self.policy.train()
        logs: dict[str, list[float]] = {
            k: [] for k in ("policy_loss", "value_loss", "entropy", "approx_kl", "clip_fraction")
        }
        for _ in range(cfg.n_epochs):
            for batch in buffer.get(cfg.batch_size, self.rng):
                obs = {"cells": batch.cells, "globals": batch.globals, "mask": batch.mask}
                values, log_prob, entropy = self.policy.evaluate_actions(obs, batch.actions)

                # Advantages normalised per minibatch.
                adv = batch.advantages
                adv = (adv - adv.mean()) / (adv.std() + 1e-8) if adv.numel() > 1 else adv

                # Ratio between the new and the old policy, and the clipped surrogate objective.
                ratio = torch.exp(log_prob - batch.old_log_prob)
                surrogate = torch.min(adv * ratio, adv * ratio.clamp(1 - cfg.clip_range, 1 + cfg.clip_range))
                policy_loss = -surrogate.mean()

                # Value loss: regression on the GAE returns.
                value_loss = nn.functional.mse_loss(values, batch.returns)

                # Entropy bonus keeps the cell and type choices exploratory.
                entropy_loss = -entropy.mean()

                loss = policy_loss + cfg.vf_coef * value_loss + cfg.ent_coef * entropy_loss
                self.optimizer.zero_grad()
                loss.backward()
                # Gradient clipping.
                nn.utils.clip_grad_norm_(self.policy.parameters(), cfg.max_grad_norm)
                self.optimizer.step()

                with torch.no_grad():
                    log_ratio = log_prob - batch.old_log_prob
                    logs["approx_kl"].append(float(((ratio - 1) - log_ratio).mean()))
                    logs["clip_fraction"].append(float(((ratio - 1).abs() > cfg.clip_range).float().mean()))
                logs["policy_loss"].append(policy_loss.item())
                logs["value_loss"].append(value_loss.item())
                logs["entropy"].append(-entropy_loss.item())
        self.policy.eval()
        return {f"train/{k}": float(np.mean(v)) for k, v in logs.items()}

    def _rollout_log(self, buffer: RolloutBuffer) -> dict[str, float]:
        done = self.env.finished[getattr(self, "_finished_from", 0) :]
        out: dict[str, Any] = {
            "rollout/reward_mean": float(buffer.rewards.mean()),
            "rollout/episodes": float(len(done)),
        }
        if done:
            out["rollout/ep_return_mean"] = float(np.mean([d["episode_return"] for d in done]))
            out["rollout/flip_rate"] = float(np.mean([d["flipped"] for d in done]))
            out["rollout/ep_steps_mean"] = float(np.mean([d["steps"] for d in done]))
            snrs = [d["snr_db"] for d in done if d["flipped"] and np.isfinite(d["snr_db"])]
            out["rollout/flip_snr_db_median"] = float(np.median(snrs)) if snrs else float("nan")
        return out


def _pad(obs: dict[str, np.ndarray], n_cells: int) -> dict[str, np.ndarray]:
    c = obs["cells"].shape[1]
    if c == n_cells:
        return obs
    if c > n_cells:
        raise ValueError(f"observation has {c} cells, the rollout buffer holds {n_cells}")
    pad = n_cells - c
    return {
        "cells": np.pad(obs["cells"], ((0, 0), (0, pad), (0, 0))),
        "globals": obs["globals"],
        "mask": np.pad(obs["mask"], ((0, 0), (0, pad))),
    }


def _to_tensors(obs: dict[str, np.ndarray], n_cells: int) -> dict[str, torch.Tensor]:
    obs = _pad(obs, n_cells)
    return {
        "cells": torch.as_tensor(obs["cells"]),
        "globals": torch.as_tensor(obs["globals"]),
        "mask": torch.as_tensor(obs["mask"]),
    }
