"""The learned policy of the anytime loop: which action to take next, from the episode's features.

A small MLP (the actor of a MaskablePPO policy, `train_actions.py`) maps `anytime.FEATURES` to one logit per
action of `anytime.ACTIONS`; illegal actions are masked and the most probable legal one is taken (greedy, so the
same record and model give the same explanation). Inference is plain numpy: loading the policy needs torch only
to read the weights file.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ecglens.agent.anytime import ACTIONS, FEATURES, AnytimeEpisode


@dataclass
class ActionPolicyCard:
    """What the committed policy is: features and actions it reads and writes, and how it was trained."""

    features: list[str]
    actions: list[str]
    hidden: list[int]
    trained_on: dict[str, Any] = field(default_factory=dict)


class ActionPolicy:
    """``policy(episode) -> action``: masked greedy choice over `ACTIONS` by an MLP with tanh hidden layers.

    Parameters
    ----------
    weights : list of (W, b)
        Layers in order, ``W`` shaped ``[out, in]``; the last layer gives one logit per action.
    card : ActionPolicyCard
    """

    def __init__(self, weights: list[tuple[np.ndarray, np.ndarray]], card: ActionPolicyCard):
        if card.features != list(FEATURES) or card.actions != list(ACTIONS):
            raise ValueError("policy was trained for other features or actions than this anytime loop has")
        self.weights = [(np.asarray(w, dtype=np.float64), np.asarray(b, dtype=np.float64)) for w, b in weights]
        self.card = card

    def logits(self, features: np.ndarray) -> np.ndarray:
        h = np.asarray(features, dtype=np.float64)
        for i, (w, b) in enumerate(self.weights):
            h = w @ h + b
            if i < len(self.weights) - 1:
                h = np.tanh(h)
        return h

    def __call__(self, episode: AnytimeEpisode) -> str:
        legal = episode.legal()
        # ``stop`` only when nothing else is legal, as in training: a budget-blind search gains nothing by stopping
        mask = np.array([legal[a] and a != "stop" for a in ACTIONS])
        if not mask.any():
            return "stop"
        logits = np.where(mask, self.logits(episode.features()), -np.inf)
        return ACTIONS[int(np.argmax(logits))]

    def save(self, path: str | Path) -> Path:
        import torch  # the weights file format

        path = Path(path)
        state = {f"w{i}": torch.tensor(w) for i, (w, _) in enumerate(self.weights)}
        state.update({f"b{i}": torch.tensor(b) for i, (_, b) in enumerate(self.weights)})
        torch.save(state, path)
        path.with_suffix(".json").write_text(json.dumps(asdict(self.card), indent=1) + "\n")
        return path


def default_action_policy_path() -> Path:
    from ecglens.classifiers import models_dir

    return models_dir() / "agent_actions.pt"


def load_action_policy(path: str | Path | None = None) -> ActionPolicy:
    """The policy at ``path`` (default: the committed ``models/agent_actions.pt``), with its card beside it."""
    import torch  # the weights file format

    path = Path(path) if path is not None else default_action_policy_path()
    card = ActionPolicyCard(**json.loads(path.with_suffix(".json").read_text()))
    state = torch.load(path, map_location="cpu", weights_only=True)
    n = len([k for k in state if k.startswith("w")])
    weights = [(state[f"w{i}"].numpy(), state[f"b{i}"].numpy()) for i in range(n)]
    return ActionPolicy(weights, card)
