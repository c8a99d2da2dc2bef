"""Where the explainer's deletion AUC loses to ShapleyValueSampling, and what more queries would buy (DS1 only).

The budget-25 target of the explainer issue asks its deletion AUC to fall below every captum method's, including
ShapleyValueSampling at about 1,900 queries. This benchmark splits a ranking into its *head* (the cells the first
deletion step removes: n_cells / 20, 4 of a two-lead strip's 80) and its *tail* (the rest) and swaps them between
``ecglens.explain`` and Shapley, so the table says which part of the ranking the gap comes from. Beside them:

- query-free tail orders after the explainer's head (cells by the energy dropout removes, high first or low first),
  to show whether a fixed prior could stand in for measuring the tail;
- ShapleyValueSampling with one permutation (one query per cell): Shapley's estimate at the cost of one sample;
- one random deletion path over lead x 1-s groups (21 queries, a budget-25-sized look at partly flattened
  records): each group's marginal along the path, split over its cells by energy;
- a probe-chosen tail: the explainer's own tail or either energy order, whichever gives the lowest probability when
  the head and the first half of the tail are flattened (3 extra queries);
- a greedy-deletion head: the first two deletion steps' cells picked one at a time by flattening each remaining
  cell on top of those already picked (about 600 extra queries), then the explainer's tail.

The queries column counts every classifier query a ranking needs (a swapped ranking needs both methods').
Rankings are scored exactly as in `explainers.py` (shared lead x 0.25-s grid, 21 steps, cells flattened at their own
median, the benchmark's queries, not the method's). Cases are the same kind: 10-s windows with exactly one ventricular
beat that the classifier flags. Development data only: DS1 records; DS2 (the test half) is refused.

Usage::

    .venv/bin/python benchmarks/deletion_headroom.py                          # built-in CNN, 60 DS1 cases
    .venv/bin/python benchmarks/deletion_headroom.py --model transfer_gru --cases 60
    .venv/bin/python benchmarks/deletion_headroom.py --cases 3 --shapley-budget 250 --no-write   # smoke

Prints one Markdown table (mean deletion AUC with a case-bootstrap 95% interval, and each variant minus Shapley,
paired over cases) and writes it to ``benchmarks/results/deletion-headroom-<model>-<YYYY-MM-DD>-ds1.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import explainers as bench  # noqa: E402  (the same cases, grid scores and method runner)

GREEDY_STEPS = 2  # deletion steps whose cells the greedy-deletion head picks


def rankings(
    case, classifier, target: str, budget: int, seed: int, shapley_budget: int | None, greedy: bool
) -> dict[str, tuple[list[int], int]]:
    """Every variant's full cell ranking for one case, with the classifier queries it needs in all."""
    from ecglens import explain
    from ecglens.baselines import peer
    from ecglens.baselines.cells import (
        cell_energy,
        cell_mask,
        cell_means,
        cell_medians,
        fixed_grid,
        ranking_from_scores,
    )

    grid = fixed_grid(case.x, float(classifier.sampling_rate))
    column = list(classifier.class_names).index(target)
    rng = np.random.default_rng(seed)

    def ranked(explanation) -> list[int]:
        return [int(c) for c in ranking_from_scores(bench._grid_scores(explanation, grid, cell_means), rng)]

    ours_expl = explain(case.ecg, classifier, query_budget=budget, seed=seed)
    ours, q = ranked(ours_expl), int(ours_expl.queries)
    options = {} if shapley_budget is None else {"query_budget": shapley_budget}
    shap_expl = peer("shapley-sampling")(classifier, seed=seed, **options).explain(case.x, target)
    shap = ranked(shap_expl)
    k = max(1, int(round(grid.n_cells / 20)))
    flat = cell_medians(grid, case.x)
    energy = cell_energy(grid, case.x - flat)
    position = {c: i for i, c in enumerate(ours)}
    head, tail = ours[:k], ours[k:]

    def then(first: list[int], rest: list[int]) -> list[int]:
        taken = set(first)
        return first + [c for c in rest if c not in taken]

    def flattened(cells: list[int]) -> np.ndarray:
        return np.where(cell_mask(grid, cells), flat, case.x)

    by_energy = {
        "high": sorted(tail, key=lambda c: (-energy[c], position[c])),
        "low": sorted(tail, key=lambda c: (energy[c], position[c])),
    }
    q_shap = int(shap_expl.queries)
    out = {
        f"explain, budget {budget}": (ours, q),
        "ShapleyValueSampling": (shap, q_shap),
        "explain head + Shapley tail": (then(head, shap), q + q_shap),
        "Shapley head + explain tail": (then(shap[:k], ours), q + q_shap),
        "explain head + tail by energy, high first": (head + by_energy["high"], q),
        "explain head + tail by energy, low first": (head + by_energy["low"], q),
    }
    candidates = {"own": tail, **by_energy}
    half = (grid.n_cells - k) // 2
    p = classifier.predict_proba(np.stack([flattened(head + t[:half]) for t in candidates.values()]))[:, column]
    one = peer("shapley-sampling")(classifier, seed=seed, query_budget=2 + grid.n_cells).explain(case.x, target)
    out["ShapleyValueSampling, one permutation"] = (ranked(one), int(one.queries))
    groups = [
        [lead * grid.n_windows + w for w in range(a, min(a + 4, grid.n_windows))]
        for lead in range(grid.n_leads)
        for a in range(0, grid.n_windows, 4)
    ]
    value = _path_values(case.x, flat, groups, energy, grid, classifier, column, rng)
    out["one deletion path over lead x 1-s groups"] = (
        [int(c) for c in np.argsort(-value, kind="stable")],
        1 + len(groups),
    )
    out["explain head + probe-chosen tail"] = (head + list(candidates.values())[int(np.argmin(p))], q + len(p))
    if greedy:
        picked: list[int] = []
        queries = q
        while len(picked) < GREEDY_STEPS * k:
            rest = [c for c in range(grid.n_cells) if c not in picked]
            p = classifier.predict_proba(np.stack([flattened(picked + [c]) for c in rest]))[:, column]
            queries += len(rest)
            picked.append(rest[int(np.argmin(p))])
        out[f"greedy-deletion head ({GREEDY_STEPS} steps) + explain tail"] = (then(picked, ours), queries)
    return out


def _path_values(
    x: np.ndarray,
    flat: np.ndarray,
    groups: list[list[int]],
    energy: np.ndarray,
    grid,
    classifier,
    column: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Each cell's share of its group's marginal along one random deletion path (groups flattened one after
    another, in one batch): a Shapley permutation sample at group resolution, split within a group by energy."""
    from ecglens.baselines.cells import cell_mask

    order = rng.permutation(len(groups))
    removed: list[int] = []
    rows = [x]
    for g in order:
        removed = removed + groups[g]
        rows.append(np.where(cell_mask(grid, removed), flat, x))
    p = classifier.predict_proba(np.stack(rows))[:, column]
    value = np.zeros(grid.n_cells)
    for g, marginal in zip(order, p[:-1] - p[1:]):
        cells = np.asarray(groups[g])
        weight = energy[cells] + 1e-12
        value[cells] = marginal * weight / weight.sum()
    return value


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    import torch

    torch.set_num_threads(args.threads)
    from ecglens import load_classifier
    from ecglens.baselines.cells import fixed_grid
    from ecglens.datasets import DS1
    from ecglens.errors import ClassifierError
    from ecglens.intervals import bootstrap_ci, format_ci, paired_difference_ci
    from ecglens.metrics import deletion_auc

    records = (
        DS1 if args.records.strip().lower() == "ds1" else tuple(r.strip() for r in args.records.split(",") if r.strip())
    )
    outside = sorted(set(records) - set(DS1))
    if outside:
        print(
            f"deletion_headroom: error: records {', '.join(outside)} are not DS1 (development data only; "
            f"DS2 is the test half)",
            file=sys.stderr,
        )
        return 2
    try:
        classifier = load_classifier(args.model, device="cpu")
    except ClassifierError as exc:
        print(f"deletion_headroom: error: {exc}", file=sys.stderr)
        return 2
    target = bench._target_class(classifier, None)
    column = list(classifier.class_names).index(target)
    t0 = time.perf_counter()
    cases, n_candidates = bench.select_cases(classifier, target, args.cases, args.seed, records)
    if not cases:
        print(f"deletion_headroom: error: no DS1 one-PVC window flagged as {target!r}", file=sys.stderr)
        return 2
    aucs: dict[str, list[float]] = {}
    queries: dict[str, list[int]] = {}
    for i, case in enumerate(cases):
        grid = fixed_grid(case.x, float(classifier.sampling_rate))
        for name, (ranking, q) in rankings(
            case, classifier, target, args.budget, args.seed + i, args.shapley_budget, not args.no_greedy
        ).items():
            aucs.setdefault(name, []).append(deletion_auc(case.x, ranking, grid, classifier, column))
            queries.setdefault(name, []).append(q)
        print(f"case {i + 1}/{len(cases)} {case.record}@{case.start_sample}", file=sys.stderr)
    lines = [
        f"# Deletion AUC headroom, {bench._model_name(args.model, classifier)}, DS1 ({dt.date.today().isoformat()})",
        "",
        f"Command: `{shlex.join(['python', 'benchmarks/deletion_headroom.py', *(argv or sys.argv[1:])])}`",
        f"Machine: {platform.machine()}, {platform.python_version()}, torch threads {args.threads}; "
        f"{len(cases)} cases (of {n_candidates} flagged one-PVC DS1 windows); "
        f"{time.perf_counter() - t0:.0f} s.",
        "",
        "| ranking | queries (mean) | deletion AUC | 95% CI | minus Shapley (paired) | 95% CI |",
        "|---|---|---|---|---|---|",
    ]
    for name, v in aucs.items():
        lo, hi = bootstrap_ci(v)
        d, (dlo, dhi) = paired_difference_ci(v, aucs["ShapleyValueSampling"])
        lines.append(
            f"| {name} | {np.mean(queries[name]):.0f} | {np.mean(v):.3f} | {format_ci(lo, hi, '.3f')} | "
            f"{d:+.3f} | {format_ci(dlo, dhi, '+.3f')} |"
        )
    report = "\n".join(lines) + "\n"
    print(report)
    if not args.no_write:
        bench.RESULTS.mkdir(parents=True, exist_ok=True)
        path = bench.RESULTS / f"deletion_headroom-{bench._model_name(args.model, classifier)}.md"
        path.write_text(report)
        print(f"written: {path}", file=sys.stderr)
    return 0


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="builtin", help="classifier spec (builtin, a model name, .pt, .onnx)")
    p.add_argument("--cases", type=int, default=60, help="number of DS1 cases (default 60)")
    p.add_argument("--records", default="ds1", help="comma-separated DS1 records, or 'ds1' (default)")
    p.add_argument("--budget", type=int, default=25, help="ecglens.explain query budget (default 25)")
    p.add_argument(
        "--shapley-budget",
        type=int,
        default=None,
        help="ShapleyValueSampling query budget (default: the peer's own 2,000; about 1,900 used)",
    )
    p.add_argument("--no-greedy", action="store_true", help="skip the greedy-deletion head (its ~600 queries)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-write", action="store_true", help="print only")
    return p.parse_args(argv)


if __name__ == "__main__":
    sys.exit(main())
