"""Inference: explain one record with the learned policy (or the greedy scan when no policy fits).

`explain` fits the record to the classifier, picks the window to explain, asks for the diagnosis, then runs one
episode per diagnosed finding under the query budget:

1. *Localise* (`localize.coarse_to_fine`). Dropout probes over 1-s blocks, then the windows of the top blocks,
   then the leads of the top windows, each level in one batched call: about 20 queries find the critical cell
   of a 10-s two-lead record. With room (budgets of about 60-119 and from about 270), each block is also probed
   alone, which ranks the cells after the top ones; without, three queries check that ranking's order. Nearly
   all of a budget under 120 goes here, a fifth of a larger one.
2. *First flip.* With 200 queries or more left, a greedy scan over the localisation's most sensitive cells
   gets half of them; if it has not flipped the diagnosis, one call of broad noise (`broad.broad_flip`, for
   classifiers no local noise moves), then the policy goes on from the scan's state. With less room, broad
   noise first, and the policy when it does not flip: the policy scores every cell from its signal features
   and what the probes measured; its top-k proposals (cell, distortion kind, level) are probed in one batched
   classifier call, what each did is written back into the cells' features, and the best proposals are
   committed, until the diagnosis flips.
3. *Clean up.* Drop every distortion the flip does not need, lower the remaining ones level by level (raising
   the SNR) while the flip holds, and check that removing any remaining cell un-flips (minimality).
4. *Quieter flips (anytime).* With room for it, start again from the clean input with every distortion capped
   one level below the strongest of the flip, run a greedy scan and clean up, and keep the quieter flip; then
   the rest of the budget redraws the noise realisations of the best flip at lower amplitudes
   (`redraw.redraw_quieter`), and minimality is checked again.
5. *Score.* Cells follow the localisation's order, valued by their measured dropout effect (the explanation:
   where the decision depends on the signal); when nothing could be measured, the minimal set's cells score
   highest, then cells whose probe lowered the probability, then the policy's prior (`score_cells`).

Every classifier row goes through a `QueryCounter` with the budget as a hard cap.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ecglens.agent.broad import broad_flip
from ecglens.agent.cleanup import minimize, verify_minimal
from ecglens.agent.env import Episode
from ecglens.agent.greedy import greedy_scan
from ecglens.agent.grid import cell_features, make_grid
from ecglens.agent.localize import Sensitivity, coarse_to_fine
from ecglens.agent.redraw import redraw_quieter
from ecglens.agent.result import EpisodeResult, build_explanation, segments_of
from ecglens.classifiers.base import Classifier, QueryCounter
from ecglens.classifiers.fit import input_leads
from ecglens.distortions import parse_kinds
from ecglens.ecg import Ecg
from ecglens.explanation import Explanation, Segment
from ecglens.targets import diagnosed_targets, explained_window

_MIN_GAIN = 0.01  # a probe is committed only when it lowers the probability by 1% of p0 or more
_GREEDY_FIRST_QUERIES = 200  # from this many queries left after the localisation the scan finds the first flip
_GREEDY_PASS_QUERIES = 200  # the capped scan for a quieter flip needs this many queries left
_BROAD_RESERVE = 40  # queries a broad-noise flip must leave for its cleanup
_REDRAW_SHARE = 0.15  # of what the first flip leaves, kept for redrawn realisations (DS1: 0.08-0.4 tried)


def explain(
    ecg: Ecg,
    classifier: Classifier,
    *,
    distortions: Sequence[str] | str | None = None,
    query_budget: int = 500,
    seed: int = 0,
    start_s: float | None = None,
    segment_s: float = 0.25,
    beat_aligned: bool = False,
    policy: Any = None,
    progress: Callable[[float], None] | None = None,
    partial: Callable[[list[Segment]], None] | None = None,
) -> Explanation:
    """Explain ``classifier``'s diagnosis of ``ecg``: critical segments and the minimal flipping distortion.

    Parameters
    ----------
    ecg : Ecg
        The record (any rate and leads the classifier can be fitted to; see `classifiers.fit.fit_record`).
    classifier : Classifier
        The black box; only ``predict_proba`` and its card fields are used.
    distortions : sequence of str, comma-separated str, or None
        Distortion kinds allowed (`env.KINDS`). Default: None (all five).
    query_budget : int
        Hard cap on classifier rows, window choice and diagnosis included. Default: 500.
    seed : int
        Seeds the noise realisations; same record + model + seed gives the same explanation. Default: 0.
    start_s : float or None
        Start (s) of the window to explain in a record longer than the classifier's window. Default: None
        (the window where a non-normal finding is most probable, found with one batched query).
    segment_s : float
        Cell length in seconds. Default: 0.25.
    beat_aligned : bool
        One cell per QRS complex instead of fixed windows. Default: False.
    policy : SegmentPolicy, str, Path, "greedy" or None
        The learned policy, a path to one, or "greedy" to force the scan. Default: None (the trained
        ``models/agent_policy.pt`` when present and fitting, else the greedy scan).
    progress : callable or None
        Called with a float in [0, 1] as the budget is used, and with 1.0 at the end. Default: None.
    partial : callable or None
        Called with the current best segments (`Segment` list, as the explanation's ``segments``: seconds from
        the record's start) whenever they change while the search runs: today once, when the first finding's
        localisation has measured and ranked the cells (not at all when it measured nothing). Default: None.

    Returns
    -------
    Explanation
        ``saliency`` and ``adversarial.signal`` are ``[leads, samples]`` on the explained window's grid (the
        classifier's rate and leads); segment times are seconds from the record's start.
    """
    t0 = time.perf_counter()
    if not isinstance(ecg, Ecg):
        raise TypeError(f"explain needs an Ecg, got {type(ecg).__name__}")
    if query_budget < 2:
        raise ValueError(f"query_budget must be at least 2 (diagnosis and one probe), got {query_budget}")
    kinds = parse_kinds(distortions)
    counter = QueryCounter(classifier, budget=int(query_budget))
    x, probs0, window_start_s = explained_window(ecg, counter, start_s)
    fs = float(classifier.sampling_rate)
    targets = diagnosed_targets(probs0, classifier)
    chosen_policy, fallback_reason = _resolve_policy(policy, x.shape, fs)
    method = "policy" if chosen_policy is not None else "greedy-scan"
    grid = make_grid(x, fs, segment_s=segment_s, beat_aligned=beat_aligned)
    feats = cell_features(x, grid)

    def report(_: int) -> None:
        if progress:
            progress(min(1.0, counter.queries / query_budget))

    def localized(result: EpisodeResult) -> None:
        if partial:
            partial(segments_of(result, grid, input_leads(ecg, classifier), window_start_s))

    results: list[EpisodeResult] = []
    for j, target in enumerate(targets):
        left = counter.remaining or 0
        if left < 2:
            break
        # The first (most probable) finding may use all but a small reserve (a fifth, at most 10 per other
        # finding); the others share what it leaves.
        share = left - min(left // 5, 10 * (len(targets) - 1)) if j == 0 else left // (len(targets) - j)
        ep = Episode(
            x,
            fs,
            probs0,
            target,
            np.random.default_rng([seed, j]),
            kinds=kinds,
            grid=grid,
            signal_features=feats,
            query_budget=query_budget,
        )
        rng = np.random.default_rng([seed, j, 1])
        results.append(_run_episode(ep, counter, share, chosen_policy, report, rng, localized if j == 0 else None))
    if progress:
        progress(1.0)
    main = results[0] if results else None
    explanation = build_explanation(
        ecg, classifier, x, probs0, targets, main, results, counter, grid, window_start_s, method, fallback_reason, t0
    )
    return explanation


# ---------------------------------------------------------------------------------------------------- episode
def _run_episode(
    ep: Episode,
    counter: QueryCounter,
    budget: int,
    policy: Any,
    report: Callable[[int], None],
    rng: np.random.Generator,
    ranked_hook: Callable[[EpisodeResult], None] | None = None,
) -> EpisodeResult:
    start_q = counter.queries
    end = start_q + budget
    prior = None
    probe_kind: dict[int, int] = {}
    sens = coarse_to_fine(ep, counter, _localization_budget(budget), report=report)
    if ranked_hook is not None and sens.queries:  # the cells as ranked here are the final scores (`_final_scores`)
        extra = {"localization": sens.levels}
        ranked_hook(EpisodeResult(ep, sens.ranked_scores(), [], {}, {}, counter.queries - start_q, extra))
    ranked = np.argsort(-sens.score, kind="stable") if sens.queries else np.arange(ep.grid.n_cells)
    left = end - counter.queries
    candidates = _scan_candidates(ranked, sens.queries > 0, left // 2)
    found_by = None
    if policy is None or left >= _GREEDY_FIRST_QUERIES:
        # With room for a few sweeps the scan's first flip is quieter than the policy's (60 DS1 cases, budget
        # 500, same cleanup: median 17.4 against 15.4 dB; budget 300: 15.0 against 9.6 dB); the policy is the
        # query-efficient one (budget 150: 97% flipped against the scan's 62%), so it takes over from the
        # scan's state when the scan's half of the budget runs out unflipped, after one broad-noise call.
        greedy_scan(ep, counter, left // 2, candidates=candidates, progress=report)
        probe_kind.update({int(c): int(ep.kind[c]) for c in ep.distorted_cells()})
        found_by = "greedy-scan" if ep.flipped else None
        if not ep.flipped and broad_flip(ep, counter, end, ranked, reserve=_BROAD_RESERVE):
            found_by = "broad-noise"
        if not ep.flipped and policy is not None:  # the policy goes on from where the scan stopped
            prior = policy_search(ep, counter, end, policy, probe_kind, report)
            found_by = "policy"
        elif not ep.flipped:
            left = end - counter.queries
            greedy_scan(ep, counter, left - _cleanup_reserve(left), candidates=candidates, progress=report)
            found_by = "greedy-scan"
    elif broad_flip(ep, counter, end, ranked, reserve=_BROAD_RESERVE):
        # With less room, broad noise and its cleanup flip more often and more quietly than the policy's search
        # (60 DS1 windows, budget 150 / 200 / 250: built-in +4.7 / +3.8 / +2.6 dB on the same cases; unseen GRU
        # 42 / 60 / 68% -> 98% flipped); the policy searches when broad noise does not flip.
        found_by = "broad-noise"
    else:
        prior = policy_search(ep, counter, end, policy, probe_kind, report)
        found_by = "policy"
    contributions = minimize(ep, counter, end, report) if ep.flipped else {}
    # What is left goes to quieter flips: one capped scan, then redrawn realisations of the best flip (a random
    # search that needs no further cell choices) until the budget is spent.
    if ep.flipped:
        reserve = int(_REDRAW_SHARE * max(0, end - counter.queries))
        contributions, found_by = _quieter_flip(ep, counter, end - reserve, candidates, report, contributions, found_by)
    if ep.flipped and redraw_quieter(ep, counter, end - len(ep.distorted_cells()), rng, report=report):
        contributions = verify_minimal(ep, counter, end, report) or contributions
    scores = _final_scores(ep, sens, contributions, prior)
    return EpisodeResult(
        ep,
        scores,
        list(ep.order),
        contributions,
        probe_kind,
        counter.queries - start_q,
        extra={
            "target": ep.target.label,
            "flipped": ep.flipped,
            "snr_db": ep.snr_db(),
            "found_by": found_by,
            "localization": sens.levels,
        },
    )


def _scan_candidates(ranked: np.ndarray, measured: bool, share: int) -> np.ndarray | None:
    """Cells the greedy scan probes: the localisation's most sensitive 30% (a sweep costing at most a quarter
    of the scan's share, at least 8 cells), or every cell when the localisation measured nothing.

    On 60 DS1 one-PVC windows at budget 500 this kept the built-in CNN's flip SNR (mean +0.2 dB on 120 cases)
    and raised the unseen GRU's by 1.4 dB; on a 12-lead grid (480 cells) a full sweep would not fit the budget.
    """
    if not measured:
        return None
    k = int(min(len(ranked), max(8, min(np.ceil(0.3 * len(ranked)), share // 4))))
    return np.asarray(ranked[:k], dtype=int)


def _localization_budget(budget: int) -> int:
    """Queries for the coarse-to-fine sensitivity: nearly all of a small budget (the explanation is what a
    clinician reads first), a fifth of a large one (at least 23), the rest for the minimal flipping distortion."""
    if budget < 120:
        return max(0, budget - 2)
    return max(23, budget // 5)


def _final_scores(
    ep: Episode, sens: Sensitivity, contributions: dict[int, float], prior: np.ndarray | None
) -> np.ndarray:
    """Cell scores: the coarse-to-fine sensitivity when it measured anything, else `score_cells`."""
    if sens.queries == 0:
        return score_cells(ep, contributions, prior)
    return sens.ranked_scores()


def _quieter_flip(
    ep: Episode,
    counter: QueryCounter,
    end: int,
    candidates: np.ndarray | None,
    report: Callable[[int], None],
    contributions: dict[int, float],
    found_by: str | None,
) -> tuple[dict[int, float], str | None]:
    """One search for a flip at a higher SNR; the better of it and the current flip is kept.

    Starts again from the clean input with every distortion capped one level below the strongest level of the
    current flip (so the flip has to spread over more, quieter cells): a greedy scan, then the cleanup. Needs
    `_GREEDY_PASS_QUERIES` left. Further passes (the policy's, capped lower) were dropped: on 60 DS1 windows
    they rarely flipped, and the same queries spent on redrawn realisations raised the SNR more.
    """
    cells = ep.distorted_cells()
    left = end - counter.queries
    if left < _GREEDY_PASS_QUERIES or not len(cells) or int(ep.level[cells].max()) < 1:
        return contributions, found_by
    best = (ep.snapshot(), ep.snr_db())
    ep.restore_clean()
    greedy_scan(
        ep,
        counter,
        left - _cleanup_reserve(left),
        max_level=int(ep.level[cells].max()) - 1,
        candidates=candidates,
        progress=report,
    )
    if ep.flipped:
        found = minimize(ep, counter, end, report)
        if ep.flipped and ep.snr_db() > best[1]:
            return found, "greedy-scan pass"
    ep.restore(best[0])
    return contributions, found_by


def _cleanup_reserve(budget: int) -> int:
    """Queries kept back from the search for the cleanup (a fifth of the budget, at most 40)."""
    return min(40, budget // 5)


def policy_search(
    ep: Episode,
    counter: QueryCounter,
    end: int,
    policy: Any,
    probe_kind: dict[int, int],
    report: Callable[[int], None],
    *,
    max_probes: int | None = None,
) -> np.ndarray:
    """Propose-and-probe with the learned policy until ``ep`` flips or queries reach ``end - reserve``.

    Each round: the policy ranks the cells and picks a distortion for each; the top ``k`` proposals not yet
    tried since the last commit are probed in one call; the best (plus close seconds that also help, checked
    together with one more query) are committed. Breadth first: a cell is proposed again (with its next-best
    kind) only after every cell was proposed once; when every kind has been tried everywhere without a gain,
    the minimum level goes one step stronger, up to the strongest. Returns the policy's prior cell logits
    (before any probe), which score the cells never probed.
    """
    budget = end - counter.queries
    k_max = max_probes or int(np.clip(budget // 5, 4, 16))
    search_end = end - _cleanup_reserve(budget)
    top_level = len(ep.levels_db) - 1
    decode, allowed = _type_decoder(policy, ep)
    prior = policy.rank_cells(ep.observe_cells(), ep.observe_global())
    min_level = 0
    proposed = np.zeros(ep.grid.n_cells, dtype=bool)  # proposed in this breadth-first round
    tried: set[tuple[int, int, int]] = set()  # probes made since the last commit
    while not ep.flipped:
        room = counter.left_before(search_end)
        if room < 2:
            break
        cells_obs, glob = ep.observe_cells(), ep.observe_global()
        cell_logits, type_logits = policy.score_actions(cells_obs, glob, allowed)
        k = int(min(k_max, room - 1))
        top, changes = [], []
        for c in np.argsort(-cell_logits, kind="stable"):
            c = int(c)
            if proposed[c] or not np.isfinite(cell_logits[c]):
                continue
            change = _first_untried(ep, c, type_logits[c], decode, min_level, tried, top_level)
            if change is None:
                continue
            top.append(c)
            changes.append([change])
            if len(top) == k:
                break
        if not top:
            if proposed.any():
                proposed[:] = False  # a new round: every cell may be proposed again, with another kind
                continue
            if min_level >= top_level:
                break
            min_level += 1  # every kind tried everywhere at this strength without a gain: go stronger
            continue
        base_p, base_e = ep.p, float(ep.energies().sum())
        probs = ep.probe(counter, changes)
        d_e = np.array([ep.energy_after(ch) - base_e for ch in changes])
        ep.record_probe(top, probs, base_p, np.sign(d_e) * np.sqrt(np.abs(d_e)) / ep.signal_l2)
        proposed[top] = True
        tried.update(ch[0] for ch in changes)
        for c, ch in zip(top, changes):
            if ch[0][1] >= 0:
                probe_kind.setdefault(c, ch[0][1])
        report(counter.queries)
        gains = base_p - probs[:, ep.target.index]
        flips = np.flatnonzero(ep.target.flipped(probs))
        if flips.size:
            best = int(flips[np.argmin(d_e[flips])])
            ep.commit(changes[best], probs[best])
            break
        ratio = gains / np.maximum(np.abs(d_e), 1e-12)
        good = [int(i) for i in np.argsort(-ratio, kind="stable") if gains[i] > _MIN_GAIN * max(ep.p0, 1e-3)]
        if not good:
            continue
        picked = [good[0]] + [i for i in good[1:4] if gains[i] >= 0.5 * gains[good[0]]]
        if len(picked) > 1 and room >= len(top) + 2:
            together = [ch for i in picked for ch in changes[i]]
            p_all = ep.probe(counter, [together])[0]
            report(counter.queries)
            if p_all[ep.target.index] <= probs[picked[0], ep.target.index]:
                ep.commit(together, p_all)
            else:  # the proposals interfere: keep the best one alone
                ep.commit(changes[picked[0]], probs[picked[0]])
        else:
            ep.commit(changes[picked[0]], probs[picked[0]])
        proposed[:] = False
        tried.clear()
    return prior


def _first_untried(
    ep: Episode,
    cell: int,
    type_logits: np.ndarray,
    decode: Callable[[int], tuple[int, int]],
    min_level: int,
    tried: set[tuple[int, int, int]],
    top_level: int | None = None,
) -> tuple[int, int, int] | None:
    """The policy's most preferred change for ``cell`` that is new (not tried, not the cell's current state)."""
    for t in np.argsort(-type_logits, kind="stable"):
        if not np.isfinite(type_logits[t]):
            break
        change = _proposal(ep, cell, *decode(int(t)), min_level, top_level)
        current = (cell, int(ep.kind[cell]), int(ep.level[cell]) if ep.kind[cell] >= 0 else 0)
        if change is not None and change not in tried and change != current:
            return change
    return None


def _type_decoder(policy: Any, ep: Episode) -> tuple[Callable[[int], tuple[int, int]], np.ndarray]:
    """Map the policy's action types (over its card's kinds and levels) onto ``ep``'s kinds and levels.

    Returns ``decode(type) -> (episode kind index or -1 for remove, episode level index)`` and the bool mask
    ``[policy n_types]`` of the types allowed (kinds the caller did not allow are masked).
    """
    card = policy.card
    n_lv = len(card.levels_db)
    n_add = len(card.kinds) * n_lv
    allowed = np.array([t == n_add or card.kinds[t // n_lv] in ep.kinds for t in range(n_add + 1)])
    levels = np.asarray(ep.levels_db)

    def decode(t: int) -> tuple[int, int]:
        if t >= n_add:
            return -1, 0
        level = int(np.argmin(np.abs(levels - card.levels_db[t % n_lv])))
        return ep.kinds.index(card.kinds[t // n_lv]), level

    return decode, allowed


def _proposal(
    ep: Episode, cell: int, kind: int, level: int, min_level: int, top_level: int | None = None
) -> tuple[int, int, int] | None:
    """The change ``(cell, kind, level)`` to probe; an add is at least ``min_level`` and never weakens a
    distorted cell; kind -1 removes. None when the add would pass ``top_level``."""
    n_levels = len(ep.levels_db)
    if kind < 0:
        return (cell, -1, 0)
    top = n_levels - 1 if top_level is None else top_level
    level = min(max(level, min_level), top)
    if ep.kind[cell] >= 0:
        level = max(level, int(ep.level[cell]) + 1)
        if level > top:
            return None
    return (cell, int(kind), int(level))


# ---------------------------------------------------------------------------------------------------- scoring
def score_cells(ep: Episode, contributions: dict[int, float], prior: np.ndarray | None) -> np.ndarray:
    """float64 ``[n_cells]`` in [0, 1]: final minimal set > probed cells that lowered the probability > the rest.

    Minimal-set cells score 0.6 + 0.4 x (contribution / largest contribution) minus 0.02 per place in the order
    they were found; probed cells up to 0.5 x (the largest drop a probe of theirs caused / p0). A cell never
    probed scores half of the best measured score at the same time window on another lead (a beat is on every
    lead), or else up to 0.1 by the policy's prior (softmax of its first ranking).
    """
    n = ep.grid.n_cells
    prior_scores = np.zeros(n)
    if prior is not None:
        finite = np.where(np.isfinite(prior), prior, -np.inf)
        w = np.exp(finite - np.max(finite))
        prior_scores = 0.1 * w / max(w.max(), 1e-12)
    measured = np.zeros(n)
    probed = ep.probed
    measured[probed] = 0.5 * np.clip(ep.max_drop[probed], 0.0, 1.0)
    distorted = [int(c) for c in ep.order if ep.kind[c] >= 0]
    if contributions:
        top = max(max(contributions.values()), 1e-9)
        for rank, c in enumerate(distorted):
            share = max(0.0, contributions.get(c, 0.0)) / top
            measured[c] = max(measured[c], 0.6 + 0.4 * share - 0.02 * rank)
    by_window = measured.reshape(ep.grid.n_leads, ep.grid.n_windows)
    if ep.grid.n_leads > 1:
        # Best measured score at each window on the other leads: top two per window avoid counting a cell twice.
        srt = np.sort(by_window, axis=0)
        best, second = srt[-1], srt[-2]
        other = np.where(by_window == best[None, :], second[None, :], best[None, :]).ravel()
    else:
        other = np.zeros(n)
    scores = np.where(probed | (measured > 0), measured, np.maximum(prior_scores, 0.5 * other))
    peak = scores.max()
    return scores / peak if peak > 0 else scores


# ---------------------------------------------------------------------------------------------------- plumbing
@functools.lru_cache(maxsize=4)
def _load_cached(path: str, mtime: float):
    from ecglens.agent.policy import load_policy

    return load_policy(path)


def _resolve_policy(policy: Any, shape: tuple[int, int], fs: float) -> tuple[Any, str | None]:
    """``(policy or None, fallback reason or None)`` for an input of ``shape`` at ``fs`` Hz."""
    from ecglens.agent.policy import SegmentPolicy, default_policy_path, policy_misfit

    if isinstance(policy, str) and policy.lower() in ("greedy", "greedy-scan"):
        return None, "greedy scan requested"
    if policy is None or isinstance(policy, (str, Path)):
        path = Path(policy) if policy is not None else default_policy_path()
        if not path.exists():
            return None, f"no trained policy at {path}"
        try:
            policy = _load_cached(str(path), path.stat().st_mtime)
        except (OSError, ValueError) as exc:
            return None, f"policy not usable: {exc}"
    if not isinstance(policy, SegmentPolicy):
        raise TypeError(f"policy must be a SegmentPolicy, a path or 'greedy', got {type(policy).__name__}")
    reason = policy_misfit(policy, shape[0], shape[1], fs)
    return (None, reason) if reason else (policy, None)
