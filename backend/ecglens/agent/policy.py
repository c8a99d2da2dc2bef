"""The policy network: a score per cell and an action type, from per-cell and global features only.

Input-shape agnostic by construction: one shared MLP embeds every cell (its signal features, its current
distortion, what probing it did) together with the global features (probabilities, queries used, flip state);
a mean over cells gives the context (DeepSets); heads score each cell against the context (which cell to act
on), pick the action type for the chosen cell (which distortion kind and level, or remove), and estimate the
state value. So a policy trained on 2-lead 10-s inputs runs on 12-lead records, other rates and other
classifiers. It never sees classifier gradients or internals: only the probabilities the black box answered.

The action distribution is factored: ``pi(cell, type | s) = pi(cell | s) * pi(type | s, cell)``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ecglens.agent.env import CELL_FEATURES, GLOBAL_FEATURES, KINDS, LEVELS_DB


@dataclass
class PolicyCard:
    """What a saved policy expects; stored as JSON beside the weights (same stem, ``.json``).

    ``min_window_s`` / ``min_fs``: the shortest input (s) and lowest rate (Hz) whose grid features mean what they
    meant in training (R-peak detection needs about 2 s at 100 Hz or more); a classifier below either gets the
    greedy scan.
    """

    cell_features: list[str] = field(default_factory=lambda: list(CELL_FEATURES))
    global_features: list[str] = field(default_factory=lambda: list(GLOBAL_FEATURES))
    kinds: list[str] = field(default_factory=lambda: list(KINDS))
    levels_db: list[float] = field(default_factory=lambda: list(LEVELS_DB))
    hidden: int = 64
    min_window_s: float = 2.0
    min_fs: float = 100.0
    segment_s: float = 0.25
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def n_types(self) -> int:
        return len(self.kinds) * len(self.levels_db) + 1


class SegmentPolicy(nn.Module):
    """Actor-critic over a variable number of cells.

    Parameters
    ----------
    card : PolicyCard
        Feature names, kinds, levels and width. Default: `PolicyCard()`.

    Shapes: ``cells`` float32 ``[batch, n_cells, n_cell_features]``, ``globals`` float32
    ``[batch, n_global_features]``, ``mask`` bool ``[batch, n_cells]`` (False = padding).
    """

    def __init__(self, card: PolicyCard | None = None):
        super().__init__()
        self.card = card or PolicyCard()
        fc, fg, h, t = len(self.card.cell_features), len(self.card.global_features), self.card.hidden, self.card.n_types
        self.embed = nn.Sequential(nn.Linear(fc + fg, h), nn.Tanh(), nn.Linear(h, h), nn.Tanh())
        self.score_head = nn.Sequential(nn.Linear(2 * h, h), nn.Tanh(), nn.Linear(h, 1))
        self.type_head = nn.Sequential(nn.Linear(2 * h, h), nn.Tanh(), nn.Linear(h, t))
        self.value_head = nn.Sequential(nn.Linear(h + fg, h), nn.Tanh(), nn.Linear(h, 1))
        self._distorted = self.card.cell_features.index("distorted")

    # ------------------------------------------------------------------ core
    def encode(
        self, cells: torch.Tensor, glob: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Cell embeddings ``[B, C, h]``, context ``[B, h]`` and cell logits ``[B, C]`` (padding at -inf)."""
        b, c, _ = cells.shape
        x = torch.cat([cells, glob[:, None, :].expand(b, c, glob.shape[-1])], dim=-1)
        emb = self.embed(x)
        m = mask.to(emb.dtype)[..., None]
        ctx = (emb * m).sum(1) / m.sum(1).clamp_min(1.0)
        logits = self.score_head(torch.cat([emb, ctx[:, None, :].expand_as(emb)], dim=-1)).squeeze(-1)
        logits = logits.masked_fill(~mask, float("-inf"))
        return emb, ctx, logits

    def type_logits(
        self,
        emb: torch.Tensor,
        ctx: torch.Tensor,
        cells: torch.Tensor,
        chosen: torch.Tensor,
        type_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Action-type logits ``[B, n_types]`` for the chosen cells ``[B]``; remove is masked on clean cells and
        ``type_mask`` ``[n_types]`` (bool, True = allowed) masks kinds the caller did not allow."""
        idx = chosen.view(-1, 1, 1).expand(-1, 1, emb.shape[-1])
        e = emb.gather(1, idx).squeeze(1)
        logits = self.type_head(torch.cat([e, ctx], dim=-1))
        distorted = cells.gather(1, chosen.view(-1, 1, 1).expand(-1, 1, cells.shape[-1]))[:, 0, self._distorted]
        remove_ok = distorted > 0.5
        logits = torch.cat([logits[:, :-1], logits[:, -1:].masked_fill(~remove_ok[:, None], float("-inf"))], 1)
        if type_mask is not None:
            logits = logits.masked_fill(~type_mask[None, :], float("-inf"))
        return logits

    def value(self, ctx: torch.Tensor, glob: torch.Tensor) -> torch.Tensor:
        return self.value_head(torch.cat([ctx, glob], dim=-1)).squeeze(-1)

    # ------------------------------------------------------------------ PPO interface
    def act(
        self, obs: dict[str, torch.Tensor], *, deterministic: bool = False, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Sample (or take the mode of) actions. Returns ``actions`` long ``[B, 2]`` (cell, type),
        ``log_prob`` ``[B]``, ``value`` ``[B]``."""
        cells, glob, mask = obs["cells"], obs["globals"], obs["mask"]
        emb, ctx, cell_logits = self.encode(cells, glob, mask)
        cell = _pick(cell_logits, deterministic, generator)
        t_logits = self.type_logits(emb, ctx, cells, cell)
        atype = _pick(t_logits, deterministic, generator)
        log_prob = torch.log_softmax(cell_logits, -1).gather(1, cell[:, None]).squeeze(1) + torch.log_softmax(
            t_logits, -1
        ).gather(1, atype[:, None]).squeeze(1)
        return torch.stack([cell, atype], 1), log_prob, self.value(ctx, glob)

    def evaluate_actions(
        self, obs: dict[str, torch.Tensor], actions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(value [B], log_prob [B], entropy [B])`` of given actions ``[B, 2]`` under the current weights."""
        cells, glob, mask = obs["cells"], obs["globals"], obs["mask"]
        emb, ctx, cell_logits = self.encode(cells, glob, mask)
        cell, atype = actions[:, 0].long(), actions[:, 1].long()
        t_logits = self.type_logits(emb, ctx, cells, cell)
        cell_logp = torch.log_softmax(cell_logits, -1)
        type_logp = torch.log_softmax(t_logits, -1)
        log_prob = cell_logp.gather(1, cell[:, None]).squeeze(1) + type_logp.gather(1, atype[:, None]).squeeze(1)
        entropy = _entropy(cell_logp) + _entropy(type_logp)
        return self.value(ctx, glob), log_prob, entropy

    # ------------------------------------------------------------------ inference helpers
    @torch.no_grad()
    def rank_cells(self, cells: np.ndarray, glob: np.ndarray) -> np.ndarray:
        """Cell logits float64 ``[n_cells]`` for one state (numpy in, numpy out)."""
        c = torch.as_tensor(cells, dtype=torch.float32)[None]
        g = torch.as_tensor(glob, dtype=torch.float32)[None]
        _, _, logits = self.encode(c, g, torch.ones(c.shape[:2], dtype=torch.bool))
        return logits[0].double().numpy()

    @torch.no_grad()
    def score_actions(
        self, cells: np.ndarray, glob: np.ndarray, type_mask: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """One forward pass for one state: cell logits ``[n_cells]`` and, for every cell, action-type logits
        ``[n_cells, n_types]`` (remove at -inf on clean cells; types outside ``type_mask`` at -inf)."""
        c = torch.as_tensor(cells, dtype=torch.float32)[None]
        g = torch.as_tensor(glob, dtype=torch.float32)[None]
        emb, ctx, logits = self.encode(c, g, torch.ones(c.shape[:2], dtype=torch.bool))
        t_logits = self.type_head(torch.cat([emb[0], ctx.expand(emb.shape[1], -1)], dim=-1))
        clean = c[0, :, self._distorted] <= 0.5
        t_logits[:, -1] = t_logits[:, -1].masked_fill(clean, float("-inf"))
        if type_mask is not None:
            t_logits = t_logits.masked_fill(~torch.as_tensor(type_mask, dtype=torch.bool)[None, :], float("-inf"))
        return logits[0].double().numpy(), t_logits.double().numpy()

    @torch.no_grad()
    def choose_types(
        self, cells: np.ndarray, glob: np.ndarray, chosen: Sequence[int], type_mask: np.ndarray | None = None
    ) -> np.ndarray:
        """The most probable action type for each of ``chosen`` cells: int ``[len(chosen)]``."""
        c = torch.as_tensor(cells, dtype=torch.float32)[None]
        g = torch.as_tensor(glob, dtype=torch.float32)[None]
        emb, ctx, _ = self.encode(c, g, torch.ones(c.shape[:2], dtype=torch.bool))
        k = len(chosen)
        tm = None if type_mask is None else torch.as_tensor(type_mask, dtype=torch.bool)
        logits = self.type_logits(
            emb.expand(k, -1, -1),
            ctx.expand(k, -1),
            c.expand(k, -1, -1),
            torch.as_tensor(list(chosen), dtype=torch.long),
            tm,
        )
        return logits.argmax(-1).numpy()

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path, extra: dict[str, Any] | None = None) -> None:
        """Weights to ``path`` (a state_dict) and the card to ``path`` with ``.json``."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(self.state_dict(), path)
        card = asdict(self.card)
        card["extra"] = {**card.get("extra", {}), **(extra or {})}
        path.with_suffix(".json").write_text(json.dumps(card, indent=2, default=_json_default) + "\n")


def load_policy(path: str | Path) -> SegmentPolicy:
    """A saved `SegmentPolicy` (weights at ``path``, card beside it). Raises FileNotFoundError / ValueError
    naming the file when it is missing or does not match the card."""
    path = Path(path)
    card_path = path.with_suffix(".json")
    if not path.exists():
        raise FileNotFoundError(f"{path}: policy weights not found")
    try:
        data = json.loads(card_path.read_text())
        known = set(PolicyCard.__dataclass_fields__)
        card = PolicyCard(**{k: v for k, v in data.items() if k in known})
    except FileNotFoundError:
        raise FileNotFoundError(f"{card_path}: policy card not found") from None
    except (OSError, json.JSONDecodeError, TypeError) as exc:
        raise ValueError(f"{card_path}: unreadable policy card ({exc})") from None
    policy = SegmentPolicy(card)
    try:
        policy.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    except Exception as exc:  # torch.load raises assorted types (UnpicklingError, RuntimeError, EOFError, ...)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"{path}: not a policy matching its card ({first})") from None
    policy.eval()
    return policy


def default_policy_path() -> Path:
    """``models/agent_policy.pt`` in the repository (the file `ecglens train-agent` writes by default)."""
    return Path(__file__).resolve().parents[3] / "models" / "agent_policy.pt"


def policy_misfit(policy: SegmentPolicy, n_leads: int, n_samples: int, fs: float) -> str | None:
    """Why ``policy`` cannot drive a classifier taking ``[n_leads, n_samples]`` at ``fs`` Hz, or None when it can."""
    card = policy.card
    window_s = n_samples / fs
    if list(card.cell_features) != list(CELL_FEATURES) or list(card.global_features) != list(GLOBAL_FEATURES):
        return "the policy was trained on other features than this version computes"
    if window_s < card.min_window_s or fs < card.min_fs:
        return (
            f"the policy needs inputs of at least {card.min_window_s:g} s at {card.min_fs:g} Hz or more; "
            f"the classifier takes {n_leads} x {n_samples} samples ({window_s:g} s at {fs:g} Hz)"
        )
    return None


def _pick(logits: torch.Tensor, deterministic: bool, generator: torch.Generator | None) -> torch.Tensor:
    if deterministic:
        return logits.argmax(-1)
    probs = torch.softmax(logits, -1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(1)


def _entropy(logp: torch.Tensor) -> torch.Tensor:
    p = logp.exp()
    return -(p * torch.where(torch.isfinite(logp), logp, torch.zeros_like(logp))).sum(-1)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.generic,)):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)
