"""ECG Lens against its peers on real premature ventricular contractions (MIT-BIH DS2).

Cases: 10-s DS2 windows (MIT-BIH Arrhythmia, the inter-patient test half; never trained or tuned on) holding
exactly one ventricular beat (V or E) that the classifier flags as ventricular ectopy (probability at or above
its threshold) as its first finding, so every method explains the same finding. Cases are taken round-robin over
the DS2 records (a seeded order within each record) so no record dominates; the classifier's look at the
candidates is selection, not any method's query.

Methods, all on the same cases in one run, each through its own `QueryCounter`:

- ``ecglens.explain`` with ``query_budget`` 25 and 500 (the learned policy, or the greedy fallback it reports);
- captum Occlusion, FeatureAblation, ShapleyValueSampling (~2,000 queries), KernelShap and Lime (200);
- the greedy sensitivity scan (Gaussian noise, budget 2,000) and a random ranking;
- ART Square (L2), SimBA and HopSkipJump, 2,000 queries each (black-box);
- an oracle that knows the PVC's time and bisects the SNR of one noise draw laid over it (a reference).

Metrics per case: queries and wall time; pointing game (the top-ranked 0.25-s cell of the shared grid overlaps the
PVC's annotation ± 0.15 s; cells rather than a method's merged segments, so no method gets a wider target); deletion AUC
on the shared lead × 0.25-s grid (21 steps, cells flattened at their own median in the method's ranking order,
random tie-breaking; its queries are the benchmark's, not the method's); flip (a reported flipping signal the
classifier confirms); the L2 (mV) and SNR (dB, `ecglens.metrics.snr_db`) of that signal. The table shows means,
medians over flipped cases for L2 / SNR, and the share of all cases flipped at SNR >= 20 dB. Under it, 95%
intervals over cases (`ecglens.intervals`: Wilson for shares, a case bootstrap for deletion AUC and median SNR)
and each ``policy-N`` method's deletion AUC minus each captum peer's, paired over the same cases.

Development protocol (issue 16): design choices are scored on the development zoo's held-out members and the
built-in, on the DS1 validation records no zoo member trained on (``--records ds1-val``); DS2 (the default) only for
reported figures. ``--model heldout`` runs every held-out zoo member in turn and adds a mean-over-members table.
Each explain method also gets the ROAD deletion AUC (`ecglens.metrics.road_deletion_auc`) beside the flat-line one.

Usage::

    .venv/bin/python benchmarks/explainers.py --fast                    # smoke: 5 cases, peer budgets / 4
    .venv/bin/python benchmarks/explainers.py --model builtin,heldout --records ds1-val --cases 30 \
        --methods scheduled,occlusion,feature-ablation,kernel-shap,lime  # the issue-16 development tables
    .venv/bin/python benchmarks/explainers.py --cases 1000 --methods policy-25,policy-500,occlusion,\
        feature-ablation,shapley-sampling,kernel-shap,lime --suffix=-allcases   # every qualifying DS2 window
    .venv/bin/python benchmarks/explainers.py --model transfer_gru --max-minutes 60
    .venv/bin/python benchmarks/explainers.py --model path/to/model.onnx --methods policy-500,occlusion

Runs on CPU with one torch thread by default (``--threads 2`` on an otherwise idle 2-core machine).
Prints one Markdown table per classifier and writes it, with the command line, date and machine, to
``benchmarks/results/explainers-<model>[-<split>].md`` (the current table; per-case rows to the git-ignored
``benchmarks/results/raw/``), and with several held-out zoo members ``explainers-zoo-heldout-mean[-<split>].md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import re
import shlex
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
VENTRICULAR = ("V", "E")

# Method key -> (table label, peer name or None for ecglens.explain, explain budget).
METHODS: dict[str, tuple[str, str | None, int | None]] = {
    "policy-25": ("ecglens.explain, budget 25", None, 25),
    "policy-500": ("ecglens.explain, budget 500", None, 500),
    "occlusion": ("captum Occlusion (0.2 s)", "occlusion", None),
    "feature-ablation": ("captum FeatureAblation", "feature-ablation", None),
    "shapley-sampling": ("captum ShapleyValueSampling", "shapley-sampling", None),
    "kernel-shap": ("captum KernelShap", "kernel-shap", None),
    "lime": ("captum Lime", "lime", None),
    "greedy-scan": ("greedy sensitivity scan", "greedy-scan", None),
    "random": ("random ranking", "random", None),
    "square-attack": ("ART Square (L2)", "square-attack", None),
    "simba": ("ART SimBA", "simba", None),
    "hopskipjump": ("ART HopSkipJump", "hopskipjump", None),
    "oracle": ("oracle (knows the PVC)", "oracle", None),
}


@dataclass
class Case:
    """One benchmark input: a DS2 window, fitted to the classifier, with its single ventricular beat."""

    record: str
    start_sample: int
    beat_time_s: float
    x: np.ndarray  # float32 [leads, samples] on the classifier's grid
    ecg: Any  # the window as an Ecg (what ecglens.explain takes)
    probability: float  # classifier's ventricular-ectopy probability on the clean window


@dataclass
class Row:
    """One method on one case."""

    method: str
    record: str
    start_sample: int
    reported_method: str
    queries: int
    elapsed_s: float
    pointing: bool
    deletion_auc: float
    road_auc: float
    flipped: bool
    l2: float | None
    snr_db: float | None
    flip_claimed: bool


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    import torch

    torch.set_num_threads(args.threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    methods = _methods(args.methods)
    if args.policy:  # a named policy that cannot be loaded must not turn into the fixed order unnoticed
        from ecglens.agent.action_policy import load_action_policy

        try:
            load_action_policy(args.policy)
        except (OSError, ValueError) as exc:
            print(f"explainers: error: --policy {args.policy}: {exc}", file=sys.stderr)
            return 2
    rows_by_model: dict[str, list[Row]] = {}
    for spec in _model_specs(args.model):
        if args.from_raw:  # the per-case rows of earlier runs (e.g. members run side by side) -> the mean table
            name = _model_name(spec, None)
            path = RESULTS / "raw" / f"explainers-{name}{_split_suffix(args.records)}{args.suffix}.jsonl"
            rows_by_model[name] = [
                r for r in (Row(**json.loads(line)) for line in path.read_text().splitlines()) if r.method in methods
            ]
            continue
        rc, name, rows = run_model(spec, args, methods)
        if rc:
            return rc
        rows_by_model[name] = rows
    heldout = {name: rows for name, rows in rows_by_model.items() if _zoo_split(name) == "heldout"}
    if args.with_raw:  # the earlier run's methods are in the rows too
        seen = dict.fromkeys(r.method for rows in heldout.values() for r in rows if r.method not in methods)
        methods = methods + _methods(",".join(seen))
    if len(heldout) >= 2:
        report = zoo_mean_report(heldout, methods, args)
        print(report)
        if not args.no_write:
            path = RESULTS / f"explainers-zoo-heldout-mean{_split_suffix(args.records)}{args.suffix}.md"
            path.write_text(report)
            print(f"written: {path}", file=sys.stderr)
    return 0


def run_model(spec: str, args: argparse.Namespace, methods: list[str]) -> tuple[int, str, list[Row]]:
    """Every method on every case for one classifier; its table printed and written. ``(rc, name, rows)``."""
    from ecglens import load_classifier
    from ecglens.errors import ClassifierError

    try:
        classifier = load_classifier(spec, device="cpu")
    except ClassifierError as exc:
        print(f"explainers: error: {exc}", file=sys.stderr)
        return 2, "", []
    model_name = _model_name(spec, classifier)
    target = _target_class(classifier, args.target)
    t0 = time.perf_counter()
    cases, n_candidates = select_cases(classifier, target, args.cases, args.seed, args.records)
    if not cases:
        print(
            f"explainers: error: no window with one ventricular beat is flagged as {target!r} by {spec}",
            file=sys.stderr,
        )
        return 2, model_name, []
    print(
        f"{model_name}: {len(cases)} cases (of {n_candidates} flagged one-PVC windows) in "
        f"{time.perf_counter() - t0:.1f} s; methods: {', '.join(methods)}",
        file=sys.stderr,
    )

    _warm_up(cases[0], classifier, methods)
    rows: list[Row] = []
    done = 0
    deadline = t0 + args.max_minutes * 60 if args.max_minutes else math.inf
    for i, case in enumerate(cases):
        if time.perf_counter() > deadline:
            print(f"time limit: stopping after {done} cases", file=sys.stderr)
            break
        tc = time.perf_counter()
        rows.extend(
            run_case(
                case,
                classifier,
                target,
                methods,
                seed=args.seed + i,
                verbose=args.verbose,
                budget_scale=args.budget_scale,
                policy=args.policy,
            )
        )
        done += 1
        print(
            f"case {i + 1}/{len(cases)} {case.record}@{case.start_sample}: {time.perf_counter() - tc:.1f} s",
            file=sys.stderr,
        )
    if args.with_raw:  # the same cases' rows of an earlier run of other methods, into one set of tables
        path = RESULTS / "raw" / f"explainers-{model_name}{_split_suffix(args.records)}{args.with_raw}.jsonl"
        cases_run = {(c.record, c.start_sample) for c in cases[:done]}
        earlier = [Row(**json.loads(line)) for line in path.read_text().splitlines()]
        earlier = [r for r in earlier if r.method not in methods and (r.record, r.start_sample) in cases_run]
        methods = methods + _methods(",".join(dict.fromkeys(r.method for r in earlier)))
        rows = rows + earlier
    table = summarise(rows, methods)
    report = _report(
        table,
        args,
        classifier,
        spec,
        model_name,
        done,
        n_candidates,
        time.perf_counter() - t0,
        uncertainty_table(rows, methods),
        budget_table({model_name: rows}, methods),
    )
    print(report)
    if not args.no_write:
        RESULTS.mkdir(parents=True, exist_ok=True)
        # One current table per classifier and split (a DS1 development run never overwrites the DS2 one);
        # the per-case rows go to the git-ignored raw/ folder.
        stem = f"explainers-{model_name}{_split_suffix(args.records)}{args.suffix}"
        (RESULTS / f"{stem}.md").write_text(report)
        (RESULTS / "raw").mkdir(exist_ok=True)
        with open(RESULTS / "raw" / f"{stem}.jsonl", "w") as fh:
            for row in rows:
                fh.write(json.dumps(asdict(row)) + "\n")
        print(f"written: {RESULTS / (stem + '.md')}", file=sys.stderr)
    return 0, model_name, rows


def _model_specs(text: str) -> list[str]:
    """Classifier specs from ``--model``: a comma list; ``heldout`` / ``zoo-train`` name the zoo's splits."""
    from ecglens.classifiers import zoo

    out: list[str] = []
    for item in (t.strip() for t in str(text).split(",") if t.strip()):
        if item in ("heldout", "zoo-heldout", "zoo-train"):
            out += [str(zoo.member_path(m.name)) for m in zoo.members("train" if item == "zoo-train" else "heldout")]
        elif item in zoo.SPLIT:
            out.append(str(zoo.member_path(item)))
        else:
            out.append(item)
    return out


def _zoo_split(model_name: str) -> str | None:
    from ecglens.classifiers import zoo

    return zoo.SPLIT.get(model_name)


# ------------------------------------------------------------------------------------------------- cases
def select_cases(
    classifier, target: str, n_cases: int, seed: int, records: tuple[str, ...] | None = None
) -> tuple[list[Case], int]:
    """Up to ``n_cases`` DS2 windows with exactly one V/E beat whose first finding is ``target``.

    Returns the cases (round-robin over records, seeded order within a record) and how many windows qualified.
    """
    from ecglens.classifiers.fit import fit_record
    from ecglens.datasets import DS2, load_windows
    from ecglens.targets import diagnosed_targets

    windows = load_windows(records or DS2, window_s=float(classifier.window_s))
    one_pvc = np.flatnonzero(windows.count_beats(VENTRICULAR) == 1)
    fitted = [_fit(fit_record(windows.ecg(int(i)), classifier), classifier) for i in one_pvc]
    probs = (
        np.concatenate([classifier.predict_proba(np.stack(fitted[a : a + 256])) for a in range(0, len(fitted), 256)])
        if fitted
        else np.zeros((0, 1))
    )
    column = list(classifier.class_names).index(target)
    flagged = [
        k
        for k in range(len(one_pvc))
        if diagnosed_targets(probs[k], classifier)[0].label == target
        and probs[k, column] >= float((classifier.thresholds or {}).get(target, 0.5))
    ]
    by_record: dict[str, list[int]] = defaultdict(list)
    for k in flagged:
        by_record[str(windows.record[one_pvc[k]])].append(k)
    rng = np.random.default_rng(seed)
    queues = {r: [ks[j] for j in rng.permutation(len(ks))] for r, ks in sorted(by_record.items())}
    chosen: list[int] = []
    while len(chosen) < n_cases and any(queues.values()):
        for r in sorted(queues):
            if queues[r] and len(chosen) < n_cases:
                chosen.append(queues[r].pop(0))
    cases = []
    for k in chosen:
        i = int(one_pvc[k])
        samples, symbols = windows.beats(i)
        beat = int(samples[np.isin(symbols, VENTRICULAR)][0])
        cases.append(
            Case(
                record=str(windows.record[i]),
                start_sample=int(windows.start[i]),
                beat_time_s=beat / windows.fs,
                x=fitted[k],
                ecg=windows.ecg(i),
                probability=float(probs[k, column]),
            )
        )
    return cases, len(flagged)


def _fit(ecg, classifier) -> np.ndarray:
    from ecglens.classifiers.base import input_samples

    n = input_samples(classifier)
    x = np.zeros((ecg.n_leads, n), dtype=np.float32)
    piece = ecg.signal[:, :n]
    x[:, : piece.shape[1]] = piece
    return x


# ------------------------------------------------------------------------------------------------- running
def run_case(
    case: Case,
    classifier,
    target: str,
    methods: list[str],
    seed: int,
    verbose: bool = False,
    budget_scale: float = 1.0,
    policy: str | None = None,
) -> list[Row]:
    """Every method on one case; deletion AUC and flip checks go through the benchmark's own calls."""
    from ecglens.baselines.cells import cell_means, fixed_grid, ranking_from_scores
    from ecglens.metrics import deletion_auc, l2, pointing_game, road_deletion_auc, snr_db

    grid = fixed_grid(case.x, float(classifier.sampling_rate))
    column = list(classifier.class_names).index(target)
    threshold = float((classifier.thresholds or {}).get(target, 0.5))
    results = []
    for key in methods:
        tm = time.perf_counter()
        explanation = _run_method(key, case, classifier, target, seed, budget_scale, policy)
        if verbose:
            print(f"  {key}: {explanation.queries} queries, {time.perf_counter() - tm:.1f} s", file=sys.stderr)
        scores = _grid_scores(explanation, grid, cell_means)
        ranking = ranking_from_scores(scores, np.random.default_rng(seed))
        auc = deletion_auc(case.x, ranking, grid, classifier, column)
        # The same ROAD noise for every method on a case (seeded by the case, not the method).
        road = road_deletion_auc(case.x, ranking, grid, classifier, column, seed=case.start_sample)
        # Pointing game on the top cell of the shared grid, so a method that merges cells into longer
        # segments gets no wider target than one that does not.
        _, a_s, b_s = grid.cell_times(int(ranking[0]))
        results.append((key, explanation, (auc, road), pointing_game((a_s, b_s), case.beat_time_s)))
    # Confirm every reported flip with one batched (uncounted) look.
    adv = [
        (j, e.adversarial.signal)
        for j, (_, e, _, _) in enumerate(results)
        if e.adversarial is not None and e.adversarial.flipped
    ]
    confirmed: set[int] = set()
    if adv:
        p = classifier.predict_proba(np.stack([s for _, s in adv]).astype(np.float32))[:, column]
        confirmed = {j for (j, _), pj in zip(adv, p) if pj < threshold}
    rows = []
    for j, (key, e, auc, hit) in enumerate(results):
        ok = j in confirmed
        rows.append(
            Row(
                method=key,
                record=case.record,
                start_sample=case.start_sample,
                reported_method=e.method,
                queries=int(e.queries),
                elapsed_s=float(e.elapsed_s),
                pointing=hit,
                deletion_auc=float(auc[0]),
                road_auc=float(auc[1]),
                flipped=ok,
                l2=l2(case.x, e.adversarial.signal) if ok else None,
                snr_db=snr_db(case.x, e.adversarial.signal) if ok else None,
                flip_claimed=e.adversarial is not None and bool(e.adversarial.flipped),
            )
        )
    return rows


def _warm_up(case: Case, classifier, methods: list[str]) -> None:
    """Pay one-off costs (imports, first torch call, detector set-up) outside every method's timing."""
    import importlib

    from ecglens import explain

    for module in ("captum.attr", "art.attacks.evasion", "neurokit2"):
        importlib.import_module(module)
    if any(METHODS[k][1] is None for k in methods):
        explain(case.ecg, classifier, query_budget=4, seed=0)


def _run_method(
    key: str, case: Case, classifier, target: str, seed: int, budget_scale: float = 1.0, policy: str | None = None
):
    from ecglens import explain
    from ecglens.baselines import peer

    _, peer_name, budget = METHODS[key]
    if peer_name is None:
        family = key.split("-")[0]
        if family == "scheduled":  # the staged search that ecglens.explain ran before the anytime agent
            from ecglens.agent.search import explain as explain_scheduled

            return explain_scheduled(case.ecg, classifier, query_budget=budget, seed=seed)
        if family == "hand":
            return explain(case.ecg, classifier, query_budget=budget, seed=seed, policy="hand")
        if family == "agent":  # the learned action policy (or the one --policy names)
            return explain(case.ecg, classifier, query_budget=budget, seed=seed, policy=policy or "learned")
        return explain(case.ecg, classifier, query_budget=budget, seed=seed)
    kwargs = {"beat_time_s": case.beat_time_s} if peer_name == "oracle" else {}
    cls = peer(peer_name)
    options = {}
    if budget_scale != 1.0 and cls.default_budget and cls.default_budget > 100:
        options["query_budget"] = max(50, int(round(cls.default_budget * budget_scale)))
    return cls(classifier, seed=seed, **options).explain(case.x, target, **kwargs)


def _grid_scores(explanation, grid, cell_means: Callable) -> np.ndarray:
    """Per-cell scores on the shared fixed grid: the method's own when on it, else its saliency pooled."""
    scores = explanation.cell_scores
    info = (explanation.extra or {}).get("grid", {})
    same_grid = scores is not None and np.size(scores) == grid.n_cells and not info.get("beat_aligned", False)
    if same_grid:
        return np.asarray(scores, dtype=np.float64).ravel()
    return cell_means(grid, np.asarray(explanation.saliency, dtype=np.float64))


# ------------------------------------------------------------------------------------------------- table
def summarise(rows: list[Row], methods: list[str]) -> list[dict[str, Any]]:
    """One dict per method: the table's columns."""
    from ecglens.metrics import attack_success

    out = []
    for key in methods:
        mine = [r for r in rows if r.method == key]
        if not mine:
            continue
        q = np.array([r.queries for r in mine], dtype=float)
        flipped = [r.flipped for r in mine]
        snr = [r.snr_db if r.snr_db is not None else -math.inf for r in mine]
        flips = [r for r in mine if r.flipped]
        reported = sorted({r.reported_method for r in mine})
        out.append(
            {
                "method": METHODS[key][0] + (f" [{', '.join(reported)}]" if METHODS[key][1] is None else ""),
                "cases": len(mine),
                "queries_mean": float(q.mean()),
                "queries_median": float(np.median(q)),
                "time_s": float(np.mean([r.elapsed_s for r in mine])),
                "pointing": float(np.mean([r.pointing for r in mine])),
                "deletion_auc": float(np.mean([r.deletion_auc for r in mine])),
                "road_auc": float(np.mean([r.road_auc for r in mine])),
                "flip": attack_success(flipped),
                "l2_median": float(np.median([r.l2 for r in flips])) if flips else None,
                "snr_median": float(np.median([r.snr_db for r in flips])) if flips else None,
                "flip_20db": attack_success(flipped, snr, min_snr_db=20.0),
                "unconfirmed": sum(r.flip_claimed and not r.flipped for r in mine),
            }
        )
    return out


def markdown_table(table: list[dict[str, Any]]) -> str:
    head = (
        "| method | queries mean | queries median | time (s) | pointing game | deletion AUC | ROAD AUC | flipped | "
        "median L2 (mV) | median SNR (dB) | flipped at SNR >= 20 dB |"
    )
    lines = [head, "|" + "---|" * 11]

    def f(v, fmt):
        return "–" if v is None else format(v, fmt)

    for t in table:
        lines.append(
            f"| {t['method']} | {t['queries_mean']:.0f} | {t['queries_median']:.0f} | {t['time_s']:.2f} | "
            f"{t['pointing']:.2f} | {t['deletion_auc']:.3f} | {t['road_auc']:.3f} | {t['flip']:.2f} | {f(t['l2_median'], '.3f')} | "
            f"{f(t['snr_median'], '.1f')} | {t['flip_20db']:.2f} |"
        )
    return "\n".join(lines)


# Today's hand-written schedule (`ecglens.explain` until the learned agent replaces it) at the issue's budgets.
BUDGETS = (10, 25, 50, 100, 200, 500)
SETS = {name: [f"{name}-{b}" for b in BUDGETS] for name in ("scheduled", "agent", "hand", "policy")}
CAPTUM_PEERS = ("occlusion", "feature-ablation", "shapley-sampling", "kernel-shap", "lime")


def uncertainty_table(rows: list[Row], methods: list[str]) -> str:
    """95% intervals over cases: Wilson for shares, a case bootstrap for the AUCs and median SNR; then paired
    differences over the same cases: each explain budget against each captum peer (both deletion metrics), and
    each explain budget against the next smaller one (the monotonicity target; positive AUC = worse).

    With 40 cases a share of 0.88 spans about 0.74-0.95, so a few points between two methods, or from a target,
    is often within what the choice of cases gives: read the table with these.
    """
    from ecglens.intervals import bootstrap_ci, format_ci, paired_difference_ci, proportion_ci

    lines = [
        "| method | cases | pointing game (95% CI) | deletion AUC (95% CI) | ROAD AUC (95% CI) | "
        "flipped (95% CI) | median SNR, flipped (95% CI) |",
        "|" + "---|" * 7,
    ]
    by_method: dict[str, dict[tuple[str, int], Row]] = {}
    for key in methods:
        mine = [r for r in rows if r.method == key]
        if not mine:
            continue
        by_method[key] = {(r.record, r.start_sample): r for r in mine}
        n = len(mine)
        point = sum(r.pointing for r in mine)
        flips = sum(r.flipped for r in mine)
        snr = [r.snr_db for r in mine if r.flipped and r.snr_db is not None]
        auc = [r.deletion_auc for r in mine]
        road = [r.road_auc for r in mine]
        lines.append(
            f"| {METHODS[key][0]} | {n} | {point / n:.2f} {format_ci(*proportion_ci(point, n))} | "
            f"{np.mean(auc):.3f} {format_ci(*bootstrap_ci(auc), '.3f')} | "
            f"{np.mean(road):.3f} {format_ci(*bootstrap_ci(road), '.3f')} | "
            f"{flips / n:.2f} {format_ci(*proportion_ci(flips, n))} | "
            + (f"{np.median(snr):.1f} {format_ci(*bootstrap_ci(snr, np.median), '.1f')} |" if snr else "– |")
        )
    ours = [k for k in by_method if METHODS[k][1] is None]
    pairs = [(a, b) for a in ours for b in CAPTUM_PEERS if b in by_method]
    if pairs:
        lines += [
            "",
            "| paired over the same cases (A − B) | deletion AUC | 95% CI | ROAD AUC | 95% CI |",
            "|---|---|---|---|---|",
        ]
        for a, b in pairs:
            common = sorted(set(by_method[a]) & set(by_method[b]))
            cells = []
            for field in ("deletion_auc", "road_auc"):
                diff, ci = paired_difference_ci(
                    [getattr(by_method[a][c], field) for c in common], [getattr(by_method[b][c], field) for c in common]
                )
                cells += [f"{diff:+.3f}", format_ci(*ci, "+.3f")]
            lines.append(f"| {METHODS[a][0]} − {METHODS[b][0]} | " + " | ".join(cells) + " |")
    steps = (
        sorted((k for k in ours if _budget(k) is not None and k.startswith(ours[0].split("-")[0])), key=_budget)
        if ours
        else []
    )
    if len(steps) > 1:
        lines += [
            "",
            "| monotone? larger budget − smaller, paired | pointing | 95% CI | deletion AUC | 95% CI | "
            "ROAD AUC | 95% CI |",
            "|---|---|---|---|---|---|---|",
        ]
        for small, large in zip(steps, steps[1:]):
            common = sorted(set(by_method[small]) & set(by_method[large]))
            cells = []
            for field in ("pointing", "deletion_auc", "road_auc"):
                fmt = "+.2f" if field == "pointing" else "+.3f"
                diff, ci = paired_difference_ci(
                    [float(getattr(by_method[large][c], field)) for c in common],
                    [float(getattr(by_method[small][c], field)) for c in common],
                )
                cells += [format(diff, fmt), format_ci(*ci, fmt)]
            lines.append(f"| {_budget(large)} − {_budget(small)} | " + " | ".join(cells) + " |")
    lines += _versus_table(by_method, "agent", "scheduled")
    return "\n".join(lines)


def _versus_table(by_method: dict[str, dict[tuple[str, int], Row]], a: str, b: str) -> list[str]:
    """Family ``a`` minus family ``b`` at each budget both ran, paired over the same cases: pointing, both deletion
    AUCs, flipped share and flip SNR (an unflipped case counts as -10 dB, below any flip the tables report)."""
    from ecglens.intervals import format_ci, paired_difference_ci

    budgets = [n for n in BUDGETS if f"{a}-{n}" in by_method and f"{b}-{n}" in by_method]
    if not budgets:
        return []
    out = [
        "",
        f"| {a} − {b}, paired | pointing | deletion AUC | ROAD AUC | flipped | flip SNR (dB; unflipped = −10) |",
        "|---|---|---|---|---|---|",
    ]
    for n in budgets:
        x, y = by_method[f"{a}-{n}"], by_method[f"{b}-{n}"]
        common = sorted(set(x) & set(y))
        cells = []
        for field, fmt in (("pointing", "+.2f"), ("deletion_auc", "+.3f"), ("road_auc", "+.3f"), ("flipped", "+.2f")):
            diff, ci = paired_difference_ci(
                [float(getattr(x[c], field)) for c in common], [float(getattr(y[c], field)) for c in common]
            )
            cells.append(f"{format(diff, fmt)} {format_ci(*ci, fmt)}")

        def snr(r: Row) -> float:
            return float(r.snr_db) if r.flipped and r.snr_db is not None else -10.0

        diff, ci = paired_difference_ci([snr(x[c]) for c in common], [snr(y[c]) for c in common])
        cells.append(f"{diff:+.1f} {format_ci(*ci, '+.1f')}")
        out.append(f"| budget {n} | " + " | ".join(cells) + " |")
    return out


def _budget(key: str) -> int | None:
    return METHODS[key][2] if key in METHODS else None


def budget_table(rows_by_model: dict[str, list[Row]], methods: list[str]) -> str:
    """The issue's view: metrics across explain budgets (columns), means over models of per-model means."""
    ours = sorted((k for k in methods if METHODS[k][1] is None), key=lambda k: (k.split("-")[0], _budget(k)))
    if not ours:
        return ""
    lines = ["| " + " | ".join(["metric"] + [k for k in ours]) + " |", "|" + "---|" * (len(ours) + 1)]

    def per_model(key: str, fn: Callable[[list[Row]], float | None]) -> str:
        vals = [fn([r for r in rows if r.method == key]) for rows in rows_by_model.values()]
        vals = [v for v in vals if v is not None and not math.isnan(v)]
        return vals

    def cell(vals, fmt):
        return format(float(np.mean(vals)), fmt) if vals else "–"

    for label, fn, fmt in (
        ("pointing game", lambda rs: float(np.mean([r.pointing for r in rs])) if rs else None, ".2f"),
        ("deletion AUC", lambda rs: float(np.mean([r.deletion_auc for r in rs])) if rs else None, ".3f"),
        ("ROAD AUC", lambda rs: float(np.mean([r.road_auc for r in rs])) if rs else None, ".3f"),
        ("flipped", lambda rs: float(np.mean([r.flipped for r in rs])) if rs else None, ".2f"),
        (
            "median SNR of flips (dB)",
            lambda rs: float(np.median([r.snr_db for r in rs if r.flipped])) if any(r.flipped for r in rs) else None,
            ".1f",
        ),
        ("queries used (mean)", lambda rs: float(np.mean([r.queries for r in rs])) if rs else None, ".0f"),
    ):
        lines.append("| " + " | ".join([label] + [cell(per_model(k, fn), fmt) for k in ours]) + " |")
    return "\n".join(lines)


def _zoo_ci(
    per_member: list[np.ndarray], statistic: Callable = np.mean, n_resamples: int = 2000, seed: int = 0
) -> tuple[float, float, float]:
    """Mean over members of ``statistic`` per member, and a 95% bootstrap interval resampling cases within each
    member (members fixed: the interval is over cases, as the issue asks)."""
    per_member = [np.asarray(v, dtype=np.float64) for v in per_member if len(v)]
    if not per_member:
        return math.nan, math.nan, math.nan
    rng = np.random.default_rng(seed)
    point = float(np.mean([statistic(v) for v in per_member]))
    boots = [np.mean([statistic(v[rng.integers(0, len(v), len(v))]) for v in per_member]) for _ in range(n_resamples)]
    lo, hi = np.percentile(boots, [2.5, 97.5])
    return point, float(lo), float(hi)


def zoo_mean_report(rows_by_model: dict[str, list[Row]], methods: list[str], args: argparse.Namespace) -> str:
    """The mean over the held-out zoo members: per method, and paired against captum peers and across budgets."""
    from ecglens.intervals import format_ci

    def values(name: str, key: str, field: str) -> np.ndarray:
        return np.array([float(getattr(r, field)) for r in rows_by_model[name] if r.method == key])

    names = sorted(rows_by_model)
    lines = [
        f"# Explainers vs peers — mean over the held-out zoo, {dt.date.today().isoformat()}",
        "",
        f"Command: `{' '.join(shlex.quote(a) for a in [sys.executable.split('/')[-1], *sys.argv])}`",
        f"Members ({len(names)}): {', '.join(names)}; cases per member: "
        + ", ".join(str(len({(r.record, r.start_sample) for r in rows_by_model[n]})) for n in names)
        + f"; {_split_name(args.records)} windows with one V/E beat flagged first; seed {args.seed}",
        "",
        "Means over members of each member's mean; 95% intervals resample cases within each member.",
        "",
        "| method | pointing game | deletion AUC | ROAD AUC | flipped | median SNR of flips (dB) |",
        "|---|---|---|---|---|---|",
    ]
    for key in methods:
        cells = []
        for field, fmt in (("pointing", ".2f"), ("deletion_auc", ".3f"), ("road_auc", ".3f"), ("flipped", ".2f")):
            m, lo, hi = _zoo_ci([values(n, key, field) for n in names])
            cells.append(f"{m:{fmt}} {format_ci(lo, hi, fmt)}")
        snr = [np.array([r.snr_db for r in rows_by_model[n] if r.method == key and r.flipped]) for n in names]
        m, lo, hi = _zoo_ci([v for v in snr if len(v)], np.median)
        cells.append("–" if math.isnan(m) else f"{m:.1f} {format_ci(lo, hi, '.1f')}")
        lines.append(f"| {METHODS[key][0]} | " + " | ".join(cells) + " |")

    def differences(a: str, b: str, value: Callable[[Row], float | None]) -> list[np.ndarray]:
        """Per member, ``value`` of A minus B over the cases both have a value for."""
        diffs = []
        for n in names:
            ra, rb = ({}, {})
            for r in rows_by_model[n]:
                v = value(r) if r.method in (a, b) else None
                if v is not None:
                    (ra if r.method == a else rb)[(r.record, r.start_sample)] = v
            diffs.append(np.array([ra[c] - rb[c] for c in sorted(set(ra) & set(rb))]))
        return diffs

    def paired(a: str, b: str, field: str) -> str:
        m, lo, hi = _zoo_ci(differences(a, b, lambda r: float(getattr(r, field))))
        fmt = "+.2f" if field in ("pointing", "flipped") else "+.3f"
        return f"{m:{fmt}} {format_ci(lo, hi, fmt)}"

    ours = sorted((k for k in methods if METHODS[k][1] is None), key=lambda k: (k.split("-")[0], _budget(k)))
    peers = [b for b in CAPTUM_PEERS if b in methods]
    if ours and peers:
        lines += ["", "| paired (A − B), mean over members | pointing | deletion AUC | ROAD AUC |", "|---|---|---|---|"]
        for a in ours:
            for b in peers:
                lines.append(
                    f"| {a} − {b} | {paired(a, b, 'pointing')} | {paired(a, b, 'deletion_auc')} | "
                    f"{paired(a, b, 'road_auc')} |"
                )

    def paired_snr(a: str, b: str) -> str:
        """Flip SNR difference over the cases both methods flipped."""
        diffs = differences(a, b, lambda r: r.snr_db if r.flipped else None)
        m, lo, hi = _zoo_ci(diffs)
        return "–" if math.isnan(m) else f"{m:+.1f} {format_ci(lo, hi, '+.1f')} ({sum(len(d) for d in diffs)} cases)"

    against = [(f"agent-{_budget(k)}", k) for k in ours if k.startswith("scheduled-") and f"agent-{_budget(k)}" in ours]
    if against:  # the learned policy against the staged search it replaced, budget by budget
        lines += [
            "",
            "| learned policy − scheduled, same budget | pointing | deletion AUC | ROAD AUC | flipped | "
            "flip SNR (dB), cases both flipped |",
            "|---|---|---|---|---|---|",
        ]
        for a, b in against:
            lines.append(
                f"| {a} − {b} | {paired(a, b, 'pointing')} | {paired(a, b, 'deletion_auc')} | "
                f"{paired(a, b, 'road_auc')} | {paired(a, b, 'flipped')} | {paired_snr(a, b)} |"
            )
    if len(ours) > 1:
        lines += ["", "| monotone? larger − smaller budget | pointing | deletion AUC | ROAD AUC |", "|---|---|---|---|"]
        for small, large in zip(ours, ours[1:]):
            if small.split("-")[0] == large.split("-")[0]:
                lines.append(
                    f"| {large} − {small} | {paired(large, small, 'pointing')} | "
                    f"{paired(large, small, 'deletion_auc')} | {paired(large, small, 'road_auc')} |"
                )
    lines += ["", "Across budgets (means over members):", "", budget_table(rows_by_model, methods), ""]
    return "\n".join(lines)


def _report(
    table,
    args,
    classifier,
    spec: str,
    model_name: str,
    n_cases: int,
    n_candidates: int,
    total_s: float,
    uncertainty: str = "",
    budgets: str = "",
) -> str:
    import torch

    notes = [
        f"- {t['method']}: {t['unconfirmed']} reported flip(s) not confirmed by the classifier"
        for t in table
        if t["unconfirmed"]
    ]
    cpu = platform.processor() or platform.machine()
    try:
        model_line = next(
            line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")
        )
        cpu = model_line
    except (OSError, StopIteration):
        pass
    return "\n".join(
        [
            f"# Explainers vs peers — model `{model_name}`, {dt.date.today().isoformat()}",
            "",
            f"Command: `{' '.join(shlex.quote(a) for a in [sys.executable.split('/')[-1], *sys.argv])}`",
            f"Machine: {cpu}, {os.cpu_count()} CPUs visible, torch {torch.__version__} with {args.threads} thread(s), "
            f"Python {platform.python_version()}, {platform.system()} {platform.release()}",
            f"Model: `{spec}`{_zoo_line(model_name)} — classes {', '.join(classifier.class_names)}; target "
            f"`{_target_class(classifier, args.target)}`; {classifier.sampling_rate:g} Hz, "
            f"leads {', '.join(classifier.lead_names)}, {classifier.window_s:g}-s input",
            f"Model file: {_file_line(getattr(classifier, 'source', None))}; agent policy: {_policy_line(args.policy)}",
            f"Cases: {n_cases} {_split_name(args.records)} windows with exactly one V/E beat flagged as the first finding "
            f"({n_candidates} qualified); seed {args.seed}; wall time {total_s / 60:.1f} min"
            + (f"; peer budgets scaled by {args.budget_scale:g}" if args.budget_scale != 1.0 else ""),
            "",
            markdown_table(table),
            "",
            "Pointing game: the top-ranked 0.25-s cell overlaps the PVC annotation ± 0.15 s. Deletion AUC: lower is better (lead × 0.25-s cells "
            "flattened at their median in ranking order, 21 steps; not counted as the method's queries). ROAD AUC: the same "
            "deletion with removed samples filled by noisy linear imputation from their neighbours (Rong et al. ICML 2022; "
            "`ecglens.metrics.road_fill`), lower is better. Flipped: a "
            "reported flipping signal that the classifier confirms; median L2 / SNR over flipped cases; attribution-only "
            "methods report no distortion. ART attacks and the oracle rank cells by the energy of their perturbation.",
            *(["", "Notes:", *notes] if notes else []),
            *(["", "Across explain budgets:", "", budgets] if budgets else []),
            *(
                ["", "Uncertainty (95% intervals over cases; `ecglens.intervals`):", "", uncertainty]
                if uncertainty
                else []
            ),
            "",
        ]
    )


# ------------------------------------------------------------------------------------------------- cli
def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--model",
        default="builtin",
        help="classifier spec(s), comma-separated (builtin, a model name, .pt, .onnx, URL, a zoo member); "
        "'heldout' = every held-out zoo member (then also a mean-over-members table)",
    )
    p.add_argument("--cases", type=int, default=40, help="number of DS2 cases (default 40; 5 = fast mode)")
    p.add_argument("--max-minutes", type=float, default=None, help="stop starting cases after this many minutes")
    p.add_argument(
        "--methods",
        default="all",
        help=f"comma-separated subset of: {', '.join(METHODS)}; policy-N runs ecglens.explain at budget N, "
        "agent-N the anytime agent with its learned policy, hand-N with the fixed order, scheduled-N the "
        "staged search it replaced; 'agent', 'hand', 'scheduled', 'policy' = that family at 10,25,50,100,200,500",
    )
    p.add_argument("--target", default=None, help="class to explain (default: the ventricular one)")
    p.add_argument(
        "--records",
        default=None,
        help="comma-separated records, or 'ds1' for all of DS1 (development: tune there, never on "
        "DS2); default: all of DS2",
    )
    p.add_argument("--seed", type=int, default=0)
    # One thread: most calls here are sequential single rows (SimBA, Square, HopSkipJump's searches), and on a
    # shared 2-core machine a 2-thread torch call of one row measured 150-700 ms against 7.5 ms with one thread.
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1; see the note above)")
    p.add_argument("--suffix", default="", help="appended to the result file name")
    p.add_argument("--no-write", action="store_true", help="print only")
    p.add_argument(
        "--from-raw",
        action="store_true",
        help="run nothing: read each model's per-case rows from results/raw/ and write the mean table",
    )
    p.add_argument(
        "--with-raw",
        default=None,
        metavar="SUFFIX",
        help="add the per-case rows of an earlier run written with --suffix=SUFFIX (same model, records, seed, "
        "so the same cases) for the methods this run does not repeat",
    )
    p.add_argument("--verbose", action="store_true", help="per-method timings on stderr")
    p.add_argument(
        "--budget-scale",
        type=float,
        default=1.0,
        help="scale the peers' 2,000- and 200-query budgets (default 1; the explain budgets stay)",
    )
    p.add_argument("--fast", action="store_true", help="smoke run: --cases 5 --budget-scale 0.25")
    p.add_argument(
        "--policy",
        default=None,
        help="action policy file for the agent-N methods (default: the committed models/agent_actions.pt); "
        "name a copy to pin it for a long run",
    )
    args = p.parse_args(argv)
    if args.fast:
        args.cases, args.budget_scale = min(args.cases, 5), 0.25
    if args.records:
        from ecglens.classifiers.zoo import VAL_RECORDS
        from ecglens.datasets import DS1

        # "ds1": every DS1 record, the development set (the classifiers trained on it; never tune on DS2);
        # "ds1-val": the DS1 records no zoo member trained on, the cases for design choices.
        key = args.records.strip().lower()
        args.records = (
            DS1
            if key == "ds1"
            else VAL_RECORDS
            if key == "ds1-val"
            else tuple(r.strip() for r in args.records.split(",") if r.strip())
        )
    return args


def _split_name(records: tuple[str, ...] | None) -> str:
    """ "DS2" (the default), "DS1-val" for the zoo's validation records, "DS1" when every record given is a DS1
    one, else "MIT-BIH"."""
    from ecglens.classifiers.zoo import VAL_RECORDS
    from ecglens.datasets import DS1, DS2

    if not records or set(records) <= set(DS2):
        return "DS2"
    if set(records) == set(VAL_RECORDS):
        return "DS1-val"
    return "DS1" if set(records) <= set(DS1) else "MIT-BIH"


def _split_suffix(records: tuple[str, ...] | None) -> str:
    split = _split_name(records)
    return "" if split == "DS2" else "-" + split.lower()


def _zoo_line(model_name: str) -> str:
    split = _zoo_split(model_name)
    return f" (development zoo, {split} member)" if split else ""


def _methods(spec: str) -> list[str]:
    if spec == "all":
        return list(METHODS)
    keys = [k.strip() for k in spec.split(",") if k.strip()]
    keys = [k2 for k in keys for k2 in SETS.get(k, [k])]
    for k in keys:  # policy-N / agent-N / hand-N / scheduled-N: an explain at any budget N >= 2
        m = re.fullmatch(r"(policy|scheduled|agent|hand)-(\d+)", k)
        if m and k not in METHODS and int(m.group(2)) >= 2:
            label = {
                "policy": "ecglens.explain",
                "scheduled": "scheduled (staged search)",
                "agent": "agent (learned policy)",
                "hand": "agent (fixed order)",
            }[m.group(1)]
            METHODS[k] = (f"{label}, budget {int(m.group(2))}", None, int(m.group(2)))
    unknown = [k for k in keys if k not in METHODS]
    if unknown:
        raise SystemExit(f"explainers: error: unknown methods {', '.join(unknown)}; valid: {', '.join(METHODS)}")
    return keys


def _target_class(classifier, wanted: str | None) -> str:
    names = list(classifier.class_names)
    if wanted:
        if wanted not in names:
            raise SystemExit(f"explainers: error: class {wanted!r} not among {', '.join(names)}")
        return wanted
    for n in names:
        if "ventricular" in n.lower() or n in ("V", "PVC", "VEB"):
            return n
    raise SystemExit(f"explainers: error: no ventricular class among {', '.join(names)}; pass --target")


def _policy_line(policy: str | None) -> str:
    """Which action policy file the agent-N methods used, with a content hash."""
    from ecglens.agent.action_policy import default_action_policy_path

    path = Path(policy) if policy else default_action_policy_path()
    if not path.exists():
        return f"none at {path} (the fixed order instead)"
    return _file_line(path)


def _file_line(path: Any) -> str:
    """``path`` with the first 12 hex digits of its SHA-256 (models are retrained in place)."""
    import hashlib

    if path is None or not Path(str(path)).is_file():
        return str(path)
    return f"`{path}` sha256 {hashlib.sha256(Path(str(path)).read_bytes()).hexdigest()[:12]}"


def _model_name(spec: str, classifier) -> str:
    path = Path(str(spec).rstrip("/"))
    name = path.stem or getattr(getattr(classifier, "card", None), "name", None) or "model"
    if path.suffix.lower() == ".onnx":  # the same model as TorchScript and as ONNX: two result files
        name += "-onnx"
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(name))


if __name__ == "__main__":
    sys.exit(main())
