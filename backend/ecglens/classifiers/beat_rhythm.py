"""A per-beat supraventricular-ectopy head for the built-in's network (`WithBeatHead`), fused with `AnyLeadNet`'s
logit. Opt-in (``ecglens train-classifier --beat-head``); the committed built-in does not have it.

Inter-patient supraventricular ectopy lives on rhythm: a premature beat with a normal QRS (and a different or
hidden P wave). What should transfer between patients is each beat measured against the window's own rhythm and
its own median beat, not absolute intervals or shapes. Per detected beat (`BeatFeatures`, from `AnyLeadNet`'s
normalised leads and all-leads QRS detector, so any lead set and any rate), `FEATURE_NAMES`:

- RR timing, all as log ratios: RR before the beat against the window's median RR, against the previous RR,
  against the median of its neighbours' RRs (up to two each side, not its own), against the window's 80th
  percentile RR (a run of ectopic beats moves the median); the RR after it against the median and against the
  RR before it (compensatory pause); the previous RR against the median;
- the window's rhythm context: median absolute successive RR difference (atrial fibrillation makes every beat
  look premature), the share of RRs under 85% of the median;
- morphology against the window's median beat on every lead: correlation of the QRS (±100 ms; mean over leads
  and worst lead), of the P-wave region (300 to 100 ms before the QRS) and of the segment after the QRS (100 to
  300 ms), the log ratio of QRS ranges, and the P-wave region's correlation with the previous beat's.

Boosted trees (`TreeEnsemble`, fitted as sklearn's ``HistGradientBoostingClassifier`` with `TREE_CONFIG` on
the beats of the DS1 training records, supraventricular against any other beat; `fit_beat_head`) give a beat
logit; the window's score is the largest over its beats that have an RR before them (`window_score`).
`WithBeatHead` replaces the base model's supraventricular probability by
``sigmoid(a * (network logit + FUSION_WEIGHT * score) + b)``; the other classes are the base model's, unchanged.
"""

from __future__ import annotations

import torch
from torch import nn

MAX_BEATS = 48  # per 10-s window (288 bpm)
FEATURE_NAMES: tuple[str, ...] = (
    "log rr_pre/median",
    "log rr_pre/rr_prev",
    "log rr_pre/neighbours",
    "log rr_post/median",
    "log rr_post/rr_pre",
    "log rr_prev/median",
    "log rr_pre/q80",
    "window median |dRR|",
    "window share RR<0.85",
    "qrs correlation",
    "p-wave correlation",
    "log qrs range ratio",
    "late correlation",
    "p-wave correlation with previous beat",
    "qrs correlation, worst lead",
)
N_BEAT_FEATURES = len(FEATURE_NAMES)


def _pearson(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Correlation over the last axis (0 where either is flat)."""
    a = a - a.mean(dim=-1, keepdim=True)
    b = b - b.mean(dim=-1, keepdim=True)
    num = (a * b).sum(dim=-1)
    den = (a.pow(2).sum(dim=-1) * b.pow(2).sum(dim=-1)).sqrt()
    return torch.where(den > 1e-6, num / den.clamp(min=1e-6), torch.zeros_like(num))


def _fill(x: torch.Tensor, med: torch.Tensor) -> torch.Tensor:
    """``x`` with NaNs (missing RRs) replaced by the window's median RR ``med [n, 1]``."""
    return torch.where(torch.isnan(x), med.expand_as(x), x)


class BeatFeatures(nn.Module):
    """``(features [n, k, N_BEAT_FEATURES], scored [n, k] bool, position [n, k])`` (``k``: beat slots, at most
    `MAX_BEATS`) from
    normalised leads ``z [n, leads, t]`` at ``fs_low`` Hz and their beat mask ``[n, t]`` (module docstring).
    ``scored`` marks beats with an RR before them; ``position`` is the beat's sample in ``z`` (t where none)."""

    def __init__(self, fs_low: float = 90.0):
        super().__init__()
        self.max_beats = MAX_BEATS
        q = max(1, int(round(0.1 * fs_low)))
        p0 = max(q + 1, int(round(0.3 * fs_low)))
        self.register_buffer("qrs_off", torch.arange(-q, q + 1))
        self.register_buffer("p_off", torch.arange(-p0, -q + 1))
        self.register_buffer("t_off", torch.arange(q, max(q + 2, int(round(0.3 * fs_low))) + 1))

    def _segments(self, z: torch.Tensor, pos: torch.Tensor, off: torch.Tensor) -> torch.Tensor:
        n, leads, t = z.shape
        k = pos.shape[1]
        idx = (pos.unsqueeze(2) + off.view(1, 1, -1)).clamp(0, t - 1)  # [n, k, w]
        w = off.shape[0]
        flat = idx.reshape(n, 1, k * w).expand(n, leads, k * w)
        return z.gather(2, flat).reshape(n, leads, k, w)

    def forward(self, z: torch.Tensor, beats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        n, leads, t = z.shape
        idx = torch.arange(t, device=z.device).unsqueeze(0).expand(n, t)
        k = self.max_beats
        pos = torch.where(beats, idx, torch.full_like(idx, t)).sort(dim=1).values
        # as many beat slots as the busiest window has (at most `MAX_BEATS`, at least 4)
        k = max(4, min(k, int(beats.sum(dim=1).max())))
        if pos.shape[1] < k:
            pos = torch.cat([pos, torch.full((n, k - pos.shape[1]), t, dtype=pos.dtype, device=pos.device)], 1)
        pos = pos[:, :k]
        valid = pos < t
        posf = pos.float()
        prev_valid = torch.cat([torch.zeros_like(valid[:, :1]), valid[:, :-1]], dim=1)
        has_pre = valid & prev_valid
        rr = torch.where(has_pre, posf - torch.cat([posf[:, :1], posf[:, :-1]], dim=1), torch.zeros_like(posf))
        nan = torch.full_like(rr, float("nan"))
        rr_nan = torch.where(has_pre, rr, nan)
        med = torch.nanmedian(rr_nan, dim=1).values
        med = torch.where(torch.isnan(med), torch.full_like(med, 90.0), med).clamp(min=1.0).unsqueeze(1)
        q80 = torch.nanquantile(rr_nan, 0.8, dim=1, keepdim=True)
        q80 = torch.where(torch.isnan(q80), med, q80).clamp(min=1.0)
        # RR of the previous beat, the next (the RR after this beat); missing ones stand in as the median
        rr_prev = torch.cat([nan[:, :1], rr_nan[:, :-1]], dim=1)
        rr_post = torch.cat([rr_nan[:, 1:], nan[:, :1]], dim=1)
        # neighbours' RRs: up to two each side, not the beat's own
        nb = torch.stack(
            [
                torch.cat([nan[:, :2], rr_nan[:, :-2]], dim=1),
                rr_prev,
                rr_post,
                torch.cat([rr_nan[:, 2:], nan[:, :2]], dim=1),
            ],
            dim=2,
        )
        nb_med = torch.nanmedian(nb, dim=2).values

        rr_f = _fill(rr_nan, med)
        rr_prev_f, rr_post_f, nb_med_f = _fill(rr_prev, med), _fill(rr_post, med), _fill(nb_med, med)
        ratio = rr_nan / med
        succ = (ratio - rr_prev / med).abs()
        d_med = torch.nanmedian(succ, dim=1).values
        d_med = torch.where(torch.isnan(d_med), torch.zeros_like(d_med), d_med)
        n_rr = has_pre.float().sum(dim=1).clamp(min=1.0)
        short = ((rr_f / med < 0.85) & has_pre).float().sum(dim=1) / n_rr
        # morphology against the window's median beat, per lead, averaged over leads
        inside = valid & (pos + int(self.p_off[0]) >= 0) & (pos + int(self.qrs_off[-1]) < t)
        qrs = self._segments(z, pos, self.qrs_off)
        pw = self._segments(z, pos, self.p_off)
        mask = inside.view(n, 1, k, 1)
        qrs_t = torch.nanmedian(torch.where(mask, qrs, torch.full_like(qrs, float("nan"))), dim=2).values
        pw_t = torch.nanmedian(torch.where(mask, pw, torch.full_like(pw, float("nan"))), dim=2).values
        qrs_t = torch.where(torch.isnan(qrs_t), torch.zeros_like(qrs_t), qrs_t)
        pw_t = torch.where(torch.isnan(pw_t), torch.zeros_like(pw_t), pw_t)
        qrs_cl = _pearson(qrs, qrs_t.unsqueeze(2).expand_as(qrs))
        qrs_c = qrs_cl.mean(dim=1)
        qrs_min = qrs_cl.amin(dim=1)
        inside_t = valid & (pos + int(self.p_off[0]) >= 0) & (pos + int(self.t_off[-1]) < t)
        late = self._segments(z, pos, self.t_off)
        late_t = torch.nanmedian(
            torch.where(inside_t.view(n, 1, k, 1), late, torch.full_like(late, float("nan"))), dim=2
        ).values
        late_t = torch.where(torch.isnan(late_t), torch.zeros_like(late_t), late_t)
        late_c = torch.where(
            inside_t, _pearson(late, late_t.unsqueeze(2).expand_as(late)).mean(dim=1), torch.ones_like(qrs_c)
        )
        pw_prev = torch.cat([pw[:, :, :1], pw[:, :, :-1]], dim=2)
        inside_prev = inside & torch.cat([torch.zeros_like(inside[:, :1]), inside[:, :-1]], dim=1)
        pw_pc = torch.where(inside_prev, _pearson(pw, pw_prev).mean(dim=1), torch.ones_like(qrs_c))
        pw_c = _pearson(pw, pw_t.unsqueeze(2).expand_as(pw)).mean(dim=1)
        rng_b = qrs.amax(dim=3) - qrs.amin(dim=3)
        rng_t = (qrs_t.amax(dim=2) - qrs_t.amin(dim=2)).unsqueeze(2)
        amp = torch.log((rng_b + 0.05) / (rng_t + 0.05)).mean(dim=1)
        qrs_c = torch.where(inside, qrs_c, torch.ones_like(qrs_c))
        qrs_min = torch.where(inside, qrs_min, torch.ones_like(qrs_min))
        pw_c = torch.where(inside, pw_c, torch.ones_like(pw_c))
        amp = torch.where(inside, amp, torch.zeros_like(amp))
        ones = torch.ones_like(rr_f)
        features = torch.stack(
            [
                torch.log(rr_f / med),
                torch.log(rr_f / rr_prev_f),
                torch.log(rr_f / nb_med_f),
                torch.log(rr_post_f / med),
                torch.log(rr_post_f / rr_f),
                torch.log(rr_prev_f / med),
                torch.log(rr_f / q80),
                d_med.unsqueeze(1) * ones,
                short.unsqueeze(1) * ones,
                qrs_c,
                pw_c,
                amp,
                late_c,
                pw_pc,
                qrs_min,
            ],
            dim=2,
        )
        features = torch.where(has_pre.unsqueeze(2), features, torch.zeros_like(features)).clamp(-3.0, 3.0)
        return features, has_pre, pos


def window_score(beat_logits: torch.Tensor, scored: torch.Tensor) -> torch.Tensor:
    """The largest beat logit of each window among ``scored`` beats (-`SCORE_LIMIT` where none)."""
    return torch.where(scored, beat_logits, torch.full_like(beat_logits, -12.0)).amax(dim=1)


class TreeEnsemble(nn.Module):
    """A boosted tree ensemble as plain tensors: the sum of ``T`` trees' leaf values plus ``baseline`` (a logit).

    Evaluated as matrix products (the "GEMM" form of Nakandala et al., OSDI 2020), not node by node: every split
    of every tree is tested at once (``x[feature] <= threshold``, ``[rows, T, splits]``), and a leaf is reached
    when the tests on its path agree with it: ``tests @ path == lefts``, where ``path[t, i, l]`` is +1 when leaf
    ``l`` lies left of split ``i``, -1 when right, 0 when off its path, and ``lefts[t, l]`` counts the left turns
    (-1 for padding leaves, which nothing reaches). Built from a fitted sklearn ``HistGradientBoostingClassifier``
    by `from_sklearn`; no pickles.
    """

    def __init__(self, n_trees: int = 1, n_splits: int = 1, n_leaves: int = 1):
        super().__init__()
        self.register_buffer("feature", torch.zeros(n_trees, n_splits, dtype=torch.long))
        self.register_buffer("threshold", torch.zeros(n_trees, n_splits))
        self.register_buffer("path", torch.zeros(n_trees, n_splits, n_leaves))
        self.register_buffer("lefts", torch.full((n_trees, n_leaves), -1.0))
        self.register_buffer("value", torch.zeros(n_trees, n_leaves))
        self.register_buffer("baseline", torch.zeros(1))

    @classmethod
    def from_sklearn(cls, model) -> TreeEnsemble:
        """The trees of a fitted binary ``HistGradientBoostingClassifier`` (numerical features, no missing values)."""
        import numpy as np

        trees = [p[0].nodes for p in model._predictors]
        n_splits = max(1, max(int((~t["is_leaf"].astype(bool)).sum()) for t in trees))
        n_leaves = max(int(t["is_leaf"].astype(bool).sum()) for t in trees)
        out = cls(len(trees), n_splits, n_leaves)
        for k, t in enumerate(trees):
            split_of, leaf_of = {}, {}
            for m in range(len(t)):
                (leaf_of if t["is_leaf"][m] else split_of)[m] = len(leaf_of if t["is_leaf"][m] else split_of)
            for m, i in split_of.items():
                out.feature[k, i] = int(t["feature_idx"][m])
                out.threshold[k, i] = float(t["num_threshold"][m])
            stack: list[tuple[int, list[tuple[int, float]]]] = [(0, [])]
            while stack:
                m, turns = stack.pop()
                if t["is_leaf"][m]:
                    leaf = leaf_of[m]
                    out.value[k, leaf] = float(t["value"][m])
                    out.lefts[k, leaf] = float(sum(1 for _, d in turns if d > 0))
                    for i, d in turns:
                        out.path[k, i, leaf] = d
                    continue
                i = split_of[m]
                stack.append((int(t["left"][m]), [*turns, (i, 1.0)]))
                stack.append((int(t["right"][m]), [*turns, (i, -1.0)]))
        out.baseline[0] = float(np.ravel(model._baseline_prediction)[0])
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n_trees, n_splits = self.feature.shape
        rows = x.shape[0]
        tests = (x[:, self.feature.reshape(-1)] <= self.threshold.reshape(1, -1)).float()
        tests = tests.reshape(rows, n_trees, n_splits).transpose(0, 1)  # [T, rows, splits]
        reached = (torch.bmm(tests, self.path) == self.lefts.unsqueeze(1)).float()  # [T, rows, leaves]
        return (reached * self.value.unsqueeze(1)).sum(dim=2).sum(dim=0) + self.baseline


SCORE_LIMIT = 12.0  # beat scores are clamped to ±12 (written out where TorchScript needs a literal)


class WithBeatHead(nn.Module):
    """A calibrated `AnyLeadNet` (``base``: `train.Calibrated`) whose supraventricular probability is
    ``sigmoid(a * (net logit + weight * beat score) + b)``, the beat score being `window_score` of `TreeEnsemble`
    beat logits over `BeatFeatures` (clamped to ±`SCORE_LIMIT`); the other classes are ``base``'s."""

    def __init__(self, base: nn.Module, trees: TreeEnsemble, weight: float = 0.5, s_index: int = 2):
        super().__init__()
        self.base = base
        self.trees = trees
        self.features = BeatFeatures(base.net.fs_low)
        self.s_index = int(s_index)
        self.register_buffer("weight", torch.tensor([float(weight)]))
        self.register_buffer("a", torch.ones(1))
        self.register_buffer("b", torch.zeros(1))

    def score(self, x: torch.Tensor) -> torch.Tensor:
        """The window's beat score ``[n]`` (the largest beat logit, clamped)."""
        z = self.base.net.normalise(x)
        f, scored, _ = self.features(z, self.base.net.detect(z))
        n, k, nf = f.shape
        beat = self.trees(f.reshape(n * k, nf)).reshape(n, k)
        return window_score(beat, scored).clamp(-12.0, 12.0)

    def fused_logit(self, x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        return logits[:, self.s_index] + self.weight * self.score(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.base.net(x)
        probs = torch.sigmoid(logits * self.base.a + self.base.b)
        s = torch.sigmoid(self.a * self.fused_logit(x, logits) + self.b)
        c = self.s_index
        return torch.cat([probs[:, :c], s.unsqueeze(1), probs[:, c + 1 :]], dim=1)


# The tree ensemble's settings (sklearn HistGradientBoostingClassifier) and the fusion weight, chosen on DS1 only
# (docs/classifiers.md).
TREE_CONFIG: dict[str, object] = {
    "max_iter": 100,
    "learning_rate": 0.1,
    "max_leaf_nodes": 15,
    "l2_regularization": 1.0,
    "early_stopping": False,
    "random_state": 0,
}
FUSION_WEIGHT = 0.5
MATCH_S = 0.15  # a detected beat takes the label of the nearest annotation within 150 ms
LEAD_SETS: tuple[tuple[int, ...], ...] = ((0, 1), (0,), (1,))


def beat_table(base: nn.Module, spans, window: int = 3600, hop: int = 1800, batch: int = 256):
    """``(features [beats, N_BEAT_FEATURES], is_supraventricular [beats])`` of the detected beats with an RR before
    them and an annotation within `MATCH_S`, in windows every ``hop`` samples of ``spans`` (`train.Span`), each
    window seen on every lead set of `LEAD_SETS`."""
    import numpy as np

    from ecglens.datasets.mitdb import AAMI_CLASSES

    net = base.net.eval()
    feats = BeatFeatures(net.fs_low)
    s_symbols = list(AAMI_CLASSES["S"])
    xs, ys = [], []
    for sp in spans:
        rec = sp.rec
        starts = np.arange(sp.lo, sp.hi - window + 1, hop)
        if not len(starts):
            continue
        x_all = np.stack([rec.signal[:, a : a + window] for a in starts]).astype(np.float32)
        tol = MATCH_S * rec.fs
        for rows in LEAD_SETS:
            for a in range(0, len(starts), batch):
                x = torch.from_numpy(np.ascontiguousarray(x_all[a : a + batch][:, list(rows)]))
                with torch.no_grad():
                    z = net.normalise(x)
                    f, scored, pos = feats(z, net.detect(z))
                f, scored = f.numpy(), scored.numpy()
                at = pos.numpy() * net.decimation + starts[a : a + batch, None]
                k = np.clip(np.searchsorted(rec.beat_sample, at), 1, max(1, len(rec.beat_sample) - 1))
                lo, hi = rec.beat_sample[k - 1], rec.beat_sample[np.minimum(k, len(rec.beat_sample) - 1)]
                near = np.where(np.abs(at - lo) <= np.abs(at - hi), k - 1, np.minimum(k, len(rec.beat_sample) - 1))
                ok = scored & (np.abs(rec.beat_sample[near] - at) <= tol)
                xs.append(f[ok])
                ys.append(np.isin(rec.beat_symbol[near][ok], s_symbols))
    return np.concatenate(xs), np.concatenate(ys)


def fit_beat_head(
    base: nn.Module,
    train_spans,
    val_xs,
    val_y,
    weight: float = FUSION_WEIGHT,
    tree_config: dict[str, object] | None = None,
    s_index: int = 2,
) -> nn.Module:
    """`WithBeatHead` over a calibrated `AnyLeadNet` ``base``: trees fitted on the beats of ``train_spans``
    (`beat_table`), the fused logit Platt-scaled on the validation windows ``val_xs`` (one array per lead set)
    with targets ``val_y``. ``base`` itself when the training beats hold no supraventricular beat (or only
    those)."""
    import numpy as np
    from sklearn.ensemble import HistGradientBoostingClassifier

    from ecglens.classifiers.train import fit_platt

    x, y = beat_table(base, train_spans)
    if not y.any() or y.all():  # nothing to learn (e.g. a smoke run on synthetic records): the network alone
        return base
    model = HistGradientBoostingClassifier(**(tree_config or TREE_CONFIG)).fit(x, y)
    head = WithBeatHead(base, TreeEnsemble.from_sklearn(model), weight, s_index).eval()
    fused = np.concatenate([_fused(head, vx) for vx in val_xs])
    a, b = fit_platt(fused[:, None], np.concatenate([val_y[:, s_index : s_index + 1]] * len(val_xs)))
    head.a.fill_(a[0])
    head.b.fill_(b[0])
    return head


def _fused(head: WithBeatHead, x, batch: int = 256):
    import numpy as np

    out = []
    with torch.no_grad():
        for a in range(0, len(x), batch):
            xb = torch.from_numpy(np.ascontiguousarray(x[a : a + batch]))
            out.append(head.fused_logit(xb, head.base.net(xb)).numpy())
    return np.concatenate(out)
