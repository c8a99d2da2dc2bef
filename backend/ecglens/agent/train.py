"""Train the policy with PPO against a classifier on MIT-BIH DS1 windows (``ecglens train-agent``).

Only DS1 (de Chazal et al. 2004) is used: most records for training, a few held out for the quick evaluation in
`ecglens.agent.evaluate`; DS2 is never touched here. The policy and its card (training data, classifier,
hyperparameters, seed, training time, reward-curve summary) are written to ``models/agent_policy.pt`` / ``.json``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ecglens.agent.env import RewardConfig, VecSegmentGridEnv
from ecglens.agent.localize import coarse_to_fine
from ecglens.agent.policy import PolicyCard, SegmentPolicy
from ecglens.agent.ppo import PPO, PPOConfig
from ecglens.classifiers.base import Classifier

# DS1 records held out of policy training, for the agent's own quick evaluation (never DS2).
HELD_OUT_DS1: tuple[str, ...] = ("119", "208", "215", "223")


def training_records() -> tuple[str, ...]:
    """DS1 minus `HELD_OUT_DS1`."""
    from ecglens.datasets.mitdb import DS1

    return tuple(r for r in DS1 if r not in HELD_OUT_DS1)


def load_inputs(
    classifier: Classifier, records: Sequence[str], data_dir: str | Path | None = None, hop_s: float | None = None
) -> np.ndarray:
    """float32 ``[n, leads, samples]`` MIT-BIH windows of ``records`` fitted to ``classifier``'s input
    (its window length and leads; resampled when its rate is not 360 Hz)."""
    from ecglens.classifiers.fit import fit_record
    from ecglens.datasets.mitdb import load_windows

    windows = load_windows(
        list(records), data_dir, window_s=float(classifier.window_s), hop_s=hop_s, leads=tuple(classifier.lead_names)
    )
    if abs(windows.fs - float(classifier.sampling_rate)) < 1e-9:
        return windows.X
    return np.stack([fit_record(windows.ecg(i), classifier).signal for i in range(len(windows))])


def train_policy(
    classifier: Classifier,
    inputs: np.ndarray,
    *,
    seed: int = 0,
    minutes: float = 20.0,
    total_timesteps: int = 10**7,
    n_envs: int = 16,
    config: PPOConfig | None = None,
    reward: RewardConfig | None = None,
    max_steps: int = 24,
    hidden: int = 64,
    localize_budget: int = 23,
    log: Callable[[dict[str, float]], None] | None = None,
) -> tuple[SegmentPolicy, dict[str, Any]]:
    """PPO-train a fresh `SegmentPolicy` against ``classifier`` on ``inputs``.

    Parameters
    ----------
    classifier : Classifier
        The black box (queried for every environment step; one batched call per step).
    inputs : np.ndarray
        float32 ``[n, leads, samples]`` training windows fitted to the classifier.
    seed : int
        Seeds torch, the environments and the minibatches: same seed, data and classifier => same policy.
        Default: 0.
    minutes : float
        Wall-time limit; training stops after the rollout that passes it. Default: 20.
    total_timesteps : int
        Environment-step limit (all environments together). Default: 10**7 (time-bound).
    n_envs : int
        Parallel episodes. Default: 16.
    config, reward : PPOConfig, RewardConfig
        Defaults: `PPOConfig()`, `RewardConfig()`.
    max_steps : int
        Episode length cap. Default: 24.
    hidden : int
        Width of the policy's layers. Default: 64.
    localize_budget : int
        Dropout-localisation queries run on each fresh episode, as `search.explain` does before the policy
        searches (`VecSegmentGridEnv`); 0 = none. Default: 23.
    log : callable or None
        Called with each rollout's logged figures. Default: None.

    Returns
    -------
    (policy, summary)
        The trained policy (eval mode) and a JSON-able training summary for its card.
    """
    torch.manual_seed(seed)
    config = config or PPOConfig()
    reward = reward or RewardConfig()
    policy = SegmentPolicy(PolicyCard(hidden=hidden))
    env = VecSegmentGridEnv(
        classifier,
        inputs,
        n_envs=n_envs,
        seed=seed,
        max_steps=max_steps,
        reward=reward,
        localize_budget=localize_budget,
        localize=coarse_to_fine,
    )
    algo = PPO(policy, env, config, seed=seed)
    t0 = time.perf_counter()
    algo.learn(total_timesteps, time_limit_s=minutes * 60.0, callback=log)
    elapsed = time.perf_counter() - t0
    policy.eval()
    summary = {
        "seed": seed,
        "training_time_s": round(elapsed, 1),
        "torch_threads": torch.get_num_threads(),
        "env_steps": int(algo.history[-1]["time/steps"]) if algo.history else 0,
        "rollouts": len(algo.history),
        "n_envs": n_envs,
        "max_steps": max_steps,
        "localize_budget": localize_budget,
        "training_inputs": int(len(inputs)),
        "inputs_with_a_finding": int(len(env.pool)),
        "ppo": asdict(config),
        "reward": asdict(reward),
        "reward_curve": _curve_summary(algo.history),
    }
    return policy, summary


def _curve_summary(history: list[dict[str, float]], points: int = 10) -> dict[str, list[float | None]]:
    """The logged curves at up to ``points`` evenly spaced rollouts (first and last included)."""
    if not history:
        return {}
    idx = sorted(set(np.linspace(0, len(history) - 1, min(points, len(history))).round().astype(int).tolist()))
    keys = (
        "time/steps",
        "rollout/reward_mean",
        "rollout/ep_return_mean",
        "rollout/flip_rate",
        "rollout/ep_steps_mean",
        "rollout/flip_snr_db_median",
        "train/entropy",
    )

    def value(row: dict[str, float], key: str) -> float | None:
        v = float(row.get(key, float("nan")))
        return round(v, 4) if np.isfinite(v) else None  # JSON has no NaN

    return {k.split("/")[1]: [value(history[i], k) for i in idx] for k in keys}


def train_agent(
    model: str = "builtin",
    *,
    data_dir: str | Path | None = None,
    out: str | Path | None = None,
    seed: int = 0,
    minutes: float = 25.0,
    steps: int = 200_000,
    n_envs: int = 16,
    records: Sequence[str] | None = None,
    log: Callable[[dict[str, float]], None] | None = None,
) -> Path:
    """Train on DS1 (minus the held-out records) against ``model`` and save policy + card; returns the path.

    Training stops after ``steps`` environment steps (so the same seed gives the same policy), or earlier when
    ``minutes`` of wall time have passed (a safety cap on a slow machine; the card records the steps done).
    ``records`` narrows the training records (DS1 only: a DS2 or paced record is refused). Default: all of
    `training_records()`.
    """
    from ecglens.agent.policy import default_policy_path
    from ecglens.classifiers import load_classifier
    from ecglens.datasets.mitdb import DS1

    # One thread: on a shared 2-core machine a second OpenMP thread mostly spins waiting for a core.
    torch.set_num_threads(1)
    records = tuple(str(r).strip() for r in records) if records else training_records()
    outside = [r for r in records if r not in DS1]
    if outside:
        raise ValueError(f"records {', '.join(outside)} are not in DS1; the agent is trained on DS1 only")
    classifier = load_classifier(model, device="cpu")
    inputs = load_inputs(classifier, records, data_dir)
    policy, summary = train_policy(
        classifier, inputs, seed=seed, minutes=minutes, total_timesteps=steps, n_envs=n_envs, log=log
    )
    out = Path(out) if out else default_policy_path()
    card = getattr(classifier, "card", None)
    policy.save(
        out,
        extra={
            "name": "agent_policy",
            "description": "PPO-trained cell-ranking policy for ECG Lens's RL explainer (input-shape agnostic).",
            "classifier": {
                "spec": str(model),
                "name": getattr(card, "name", str(model)),
                "sha256": _model_digest(model),
                "classes": list(classifier.class_names),
                "sampling_rate": classifier.sampling_rate,
                "leads": list(classifier.lead_names),
                "window_s": classifier.window_s,
            },
            "data": {
                "source": "MIT-BIH Arrhythmia Database (PhysioNet), DS1 of de Chazal et al. 2004",
                "records": list(records),
                "held_out_ds1": list(HELD_OUT_DS1),
                "window_s": classifier.window_s,
                "licence": "ODC-By 1.0",
                "citation": "Moody & Mark, IEEE EMB Mag 20(3):45-50 (2001); "
                "Goldberger et al., Circulation 101(23):e215-e220 (2000)",
            },
            "training": summary,
        },
    )
    return out


def _model_digest(model: str) -> str | None:
    """SHA-256 of the classifier's model file (None for an HTTP endpoint or an unknown spec)."""
    import hashlib

    from ecglens.classifiers import models_dir

    path = models_dir() / "builtin.pt" if str(model) == "builtin" else Path(str(model))
    if not path.is_file():
        return None
    return hashlib.sha256(path.read_bytes()).hexdigest()
