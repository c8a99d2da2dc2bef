"""Before / after hardening on MIT-BIH DS2: is the hardened classifier measurably more robust, and as accurate?

For the original and the hardened model, on DS2 (the inter-patient test half; hardening never saw it):

- clean per-class AUC (and sensitivity / specificity at each card's threshold) on all non-overlapping 10-s
  windows;
- the robustness report (`ecglens.robustness`) on cases: DS2 windows whose annotated finding the *original*
  model calls (``--per-class`` per class: normal, ventricular ectopy, supraventricular ectopy, AF/flutter; taken
  round-robin over records in a seeded order), each tested for that finding with ``--realisations`` noise draws
  per kind and every seed in ``--seeds``. Per distortion kind: the median over all (case, seed, draw) trials of
  the highest SNR at which the finding flips ("held" down to -12 dB counts as -12 dB, the search floor, and is
  shown as "<= -12"); the overall score is the mean report score (the share of kind x level x draw trials whose
  diagnosis held). Cases are chosen by the original model only, so the hardened one gets no say in them;
- the agent (`ecglens.explain`, budget ``--budget``) on the same cases for the first ``--agent-seeds`` seeds:
  share of explanations that flip, median queries, median SNR (dB) of the minimal flipping distortion.

Targets (issue 7): every kind's median flip SNR lowered by at least 6 dB; clean DS2 AUC for ventricular ectopy
within 0.01 of the original.

*Median flip SNR* (decided before the final DS2 run, from how the search works, not from which reading passes):
the robustness search runs from 40 to -12 dB. A finding (V, S, AF) case mostly never flips in that range for
either model (noise does not remove an ectopic beat from the model's view), and when the original holds to the
floor on half the trials or more, the all-trials median sits at -12 dB whatever the hardened model does: it
cannot show a gain, and it cannot tell a more robust model from an unchanged one. So two figures per kind:

- *all trials*: the median over every (case, seed, noise draw) trial, "held" counted as -12 dB (as before);
- *breakable trials*: the median over the trials on which the **original** flips within the range, for both
  models on those same trials (same window and noise realisation), the hardened model's "held" counted as -12 dB.
  The trials are picked by the original alone, so a hardened model identical to the original scores exactly
  0 dB (the selection cannot manufacture a gain), and a hardened model that holds where the original flipped is
  credited only down to the floor (the gain is a lower bound). This is the figure the target is judged on; the
  all-trials one is printed beside it. A wider floor was not taken: the floor is the robustness report's
  (`ecglens.robustness.SEARCH_LOW_DB`), shared with the product, and below -12 dB the noise carries 16 x the
  QRS power, beyond any NSTDB level.

``--records`` evaluates on other MIT-BIH records instead of DS2: recipe experiments use it on DS1 records left
out of hardening (``ecglens harden --hold-out``); DS2 is for the final before/after run only.

Usage::

    .venv/bin/python benchmarks/hardening.py                       # builtin vs models/builtin_hardened.pt
    .venv/bin/python benchmarks/hardening.py --original /tmp/a.pt --hardened /tmp/b.pt --fast
    .venv/bin/python benchmarks/hardening.py --no-card             # do not write the figures into the card

Prints one Markdown table and writes it, with the command line and machine, to
``benchmarks/results/hardening.md`` (per-case rows in the git-ignored ``results/raw/`` as ``.jsonl``, the
verdicts beside it as ``.summary.json``), and records the
figures in the hardened model's card (``metrics.ds2`` and ``metrics.hardening_ds2``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
TARGET_GAIN_DB = 6.0
TARGET_AUC_DELTA = 0.01
TARGET_CLASS = "ventricular ectopy"
DEFINITION = (
    "Median flip SNR per kind, two ways, over trials = (case, robustness seed, noise draw), paired between the two "
    "models (same window, same noise realisation). All trials: held to the -12 dB search floor counts as -12. "
    "Breakable trials (the target's figure): only the trials on which the ORIGINAL model flips within the search "
    "range (40 to -12 dB); the hardened model's value on the same trial, held counted as -12 (so its gain is a "
    "lower bound). Chosen by the original model alone, so an unchanged model scores exactly 0 dB."
)


def pick_cases(
    Y: np.ndarray,
    records: np.ndarray,
    probs: np.ndarray,
    classes: tuple[str, ...],
    thresholds: dict[str, float],
    per_class: int,
    seed: int,
) -> list[tuple[int, int]]:
    """``(window index, class index)`` cases: windows annotated with the class that the original model calls,
    ``per_class`` per class, round-robin over records (seeded order within each record)."""
    rng = np.random.default_rng(seed)
    cases = []
    for c, name in enumerate(classes):
        ok = np.flatnonzero((Y[:, c] > 0.5) & (probs[:, c] >= thresholds.get(name, 0.5)))
        by_record: dict[str, list[int]] = {}
        for i in rng.permutation(ok):
            by_record.setdefault(str(records[i]), []).append(int(i))
        order = sorted(by_record)
        rng.shuffle(order)
        picked: list[int] = []
        while len(picked) < per_class and any(by_record[r] for r in order):
            for r in order:
                if by_record[r] and len(picked) < per_class:
                    picked.append(by_record[r].pop(0))
        cases += [(i, c) for i in picked]
    return cases


def flip_median(values: list[float | None], floor: float) -> float:
    """Median of flip SNRs with "held" (None) counted as ``floor``."""
    v = [floor if x is None else float(x) for x in values]
    return float(np.median(v)) if v else float("nan")


def breakable_medians(
    original: list[float | None], hardened: list[float | None], floor: float
) -> tuple[float, float, int]:
    """(original median, hardened median, trials) over the *breakable* trials: those on which the original
    flips within the search range (paired lists: trial ``t`` is the same case, seed and noise draw for both).
    A hardened model that holds there counts at ``floor``, so the gain is a lower bound. NaNs when none."""
    pairs = [(o, h) for o, h in zip(original, hardened) if o is not None]
    if not pairs:
        return float("nan"), float("nan"), 0
    return (flip_median([o for o, _ in pairs], floor), flip_median([h for _, h in pairs], floor), len(pairs))


def breakable_gain_ci(
    original: list[float | None], hardened: list[float | None], cases: list[str], floor: float
) -> tuple[float, float]:
    """95% interval of the breakable-trial gain (original median - hardened median), resampling whole cases
    (a case's seeds and noise draws are not independent trials); ``(nan, nan)`` with fewer than two cases."""
    from ecglens.intervals import bootstrap_ci

    rows = [(o, floor if h is None else h, c) for o, h, c in zip(original, hardened, cases) if o is not None]
    if not rows:
        return float("nan"), float("nan")
    pairs = np.array([[max(o, floor), h] for o, h, _ in rows], dtype=np.float64)
    return bootstrap_ci(pairs, lambda a: float(np.median(a[:, 0]) - np.median(a[:, 1])), groups=[c for _, _, c in rows])


def evaluate_model(
    clf: Any,
    windows: Any,
    cases: list[tuple[int, int]],
    seeds: list[int],
    realisations: int,
    budget: int,
    agent_seeds: int,
) -> dict[str, Any]:
    """Robustness and agent figures of one classifier on the cases; per-case rows under ``"rows"``."""
    from ecglens.agent.search import explain
    from ecglens.robustness import SEARCH_LOW_DB, robustness

    per_kind: dict[str, dict[str, list[float | None]]] = {"all": {}, "normal": {}, "findings": {}}
    trial_case: dict[str, list[str]] = {}  # the case of every trial in per_kind["all"] (intervals resample cases)
    scores, rows = [], []
    agent_q, agent_snr, agent_flip = [], [], []
    t0 = time.perf_counter()
    for i, c in cases:
        ecg = windows.ecg(i)
        label = clf.class_names[c]
        for s in seeds:
            rep = robustness(ecg, clf, label=label, seeds=realisations, seed=s)
            scores.append(rep.score)
            group = "normal" if label == "normal" else "findings"
            for kind, vals in rep.extra["flip_snr_db_per_seed"].items():
                per_kind["all"].setdefault(kind, []).extend(vals)
                trial_case.setdefault(kind, []).extend([ecg.name] * len(vals))
                per_kind[group].setdefault(kind, []).extend(vals)
            rows.append(
                {
                    "window": ecg.name,
                    "label": label,
                    "seed": s,
                    "score": rep.score,
                    "held_on_clean": rep.extra["held_on_clean"],
                    "flip_snr_db": {d.distortion: d.flip_snr_db for d in rep.distortions},
                }
            )
        for s in seeds[:agent_seeds]:
            exp = explain(ecg, clf, query_budget=budget, seed=s)
            flipped = exp.adversarial is not None and exp.adversarial.flipped
            agent_q.append(exp.queries)
            agent_flip.append(flipped)
            if flipped:
                agent_snr.append(float(exp.adversarial.snr_db))
            rows.append(
                {
                    "window": ecg.name,
                    "agent_seed": s,
                    "diagnosis": exp.diagnosis.label,
                    "method": exp.method,
                    "queries": exp.queries,
                    "flipped": flipped,
                    "snr_db": float(exp.adversarial.snr_db) if flipped else None,
                }
            )
    return {
        "trials": per_kind,
        "trial_case": trial_case,
        "flip_snr_db": {k: flip_median(v, SEARCH_LOW_DB) for k, v in per_kind["all"].items()},
        "flip_snr_db_by_group": {
            g: {k: flip_median(v, SEARCH_LOW_DB) for k, v in d.items()} for g, d in per_kind.items() if g != "all"
        },
        "held_share": {k: float(np.mean([x is None for x in v])) for k, v in per_kind["all"].items()},
        "trials_per_kind": {k: len(v) for k, v in per_kind["all"].items()},
        "score": float(np.mean(scores)) if scores else float("nan"),
        "agent_flip_rate": float(np.mean(agent_flip)) if agent_flip else float("nan"),
        "agent_median_queries": float(np.median(agent_q)) if agent_q else float("nan"),
        "agent_median_snr_db": float(np.median(agent_snr)) if agent_snr else None,
        "elapsed_s": time.perf_counter() - t0,
        "rows": rows,
    }


def _fmt_snr(v: float | None, floor: float) -> str:
    if v is None or not np.isfinite(v):
        return "-"
    return f"<= {floor:g}" if v <= floor else f"{v:.1f}"


def _shown(spec: str) -> str:
    """A model spec as shown in the results: relative to the repository when it lies inside it."""
    path = Path(spec)
    return str(path.relative_to(REPO)) if path.is_absolute() and path.is_relative_to(REPO) else spec


def _floor_note(a: float, b: float, floor: float) -> str:
    if a <= floor and b <= floor:
        return " (both hold to the floor)"
    return " (at least)" if b <= floor else ""


def table(
    clean: dict[str, dict], rob: dict[str, dict], classes: tuple[str, ...], floor: float, split: str = "DS2"
) -> tuple[str, dict[str, Any]]:
    """The Markdown table and the targets' verdicts."""
    from ecglens.intervals import format_ci

    o, h = rob["original"], rob["hardened"]
    lines = [f"| figure (MIT-BIH {split}) | original | hardened | change |", "|---|---:|---:|---:|"]
    for name in classes:
        a, b = clean["original"][name]["auc"], clean["hardened"][name]["auc"]
        change = f"{b - a:+.4f}" if a is not None and b is not None else "-"
        lines.append(
            f"| clean AUC: {name} | {a if a is not None else '-'} | {b if b is not None else '-'} | {change} |"
        )
    gains, group_gains = {}, {}
    for kind in o["flip_snr_db"]:
        a, b = o["flip_snr_db"][kind], h["flip_snr_db"].get(kind)
        gains[kind] = a - b if b is not None else float("nan")
        lines.append(
            f"| median flip SNR, {kind}, all cases (dB; lower = more robust) | {_fmt_snr(a, floor)} | "
            f"{_fmt_snr(b, floor)} | {-gains[kind]:+.1f} dB{_floor_note(a, b, floor)} |"
        )
    for group, title in (("normal", "normal-diagnosis cases"), ("findings", "finding cases (V, S, AF)")):
        for kind in o["flip_snr_db_by_group"].get(group, {}):
            a, b = o["flip_snr_db_by_group"][group][kind], h["flip_snr_db_by_group"][group].get(kind)
            group_gains.setdefault(group, {})[kind] = round(a - b, 2)
            lines.append(
                f"| median flip SNR, {kind}, {title} | {_fmt_snr(a, floor)} | {_fmt_snr(b, floor)} | "
                f"{b - a:+.1f} dB{_floor_note(a, b, floor)} |"
            )
    breakable = {}
    for kind in o["trials"]["all"]:
        a, b, m = breakable_medians(o["trials"]["all"][kind], h["trials"]["all"].get(kind, []), floor)
        lo, hi = (
            breakable_gain_ci(
                o["trials"]["all"][kind], h["trials"]["all"].get(kind, []), o.get("trial_case", {}).get(kind, []), floor
            )
            if m
            else (float("nan"),) * 2
        )
        breakable[kind] = {
            "original": a,
            "hardened": b,
            "trials": m,
            "gain_db": a - b,
            "gain_ci95_db": [round(lo, 2), round(hi, 2)],
        }
        ci = f"; gain 95% CI {format_ci(lo, hi, '.1f')} dB over cases" if np.isfinite(lo) else ""
        lines.append(
            f"| median flip SNR, {kind}, breakable trials (dB; the {m} of {len(o['trials']['all'][kind])} "
            f"the original flips in range{ci}) | {_fmt_snr(a, floor)} | {_fmt_snr(b, floor)} | "
            + (f"{b - a:+.1f} dB{' (at least)' if b <= floor else ''} |" if m else "- |")
        )
    lines.append(
        f"| robustness score (share of noisy trials held) | {o['score']:.3f} | {h['score']:.3f} | "
        f"{h['score'] - o['score']:+.3f} |"
    )
    lines.append(
        f"| agent: share of cases flipped | {o['agent_flip_rate']:.2f} | {h['agent_flip_rate']:.2f} | "
        f"{h['agent_flip_rate'] - o['agent_flip_rate']:+.2f} |"
    )
    lines.append(
        f"| agent: median queries | {o['agent_median_queries']:.0f} | {h['agent_median_queries']:.0f} | "
        f"{h['agent_median_queries'] - o['agent_median_queries']:+.0f} |"
    )
    oa, ha = o["agent_median_snr_db"], h["agent_median_snr_db"]
    lines.append(
        f"| agent: median SNR to flip (dB, flipped cases) | {_fmt_snr(oa, -99)} | {_fmt_snr(ha, -99)} | "
        + (f"{ha - oa:+.1f} dB |" if oa is not None and ha is not None else "- |")
    )
    a, b = clean["original"][TARGET_CLASS]["auc"], clean["hardened"][TARGET_CLASS]["auc"]
    verdict = {
        "definition": DEFINITION,
        "breakable_flip_snr_db": {
            k: {kk: (round(vv, 2) if isinstance(vv, float) else vv) for kk, vv in v.items()}
            for k, v in breakable.items()
        },
        "breakable_target_held": {
            k: bool(v["trials"] > 0 and v["gain_db"] >= TARGET_GAIN_DB) for k, v in breakable.items()
        },
        "flip_snr_gain_db": {k: round(v, 2) for k, v in gains.items()},
        "flip_snr_target_held": {k: bool(v >= TARGET_GAIN_DB) for k, v in gains.items()},
        "flip_snr_gain_db_by_group": group_gains,
        "flip_snr_target_held_by_group": {
            g: {k: bool(v >= TARGET_GAIN_DB) for k, v in d.items()} for g, d in group_gains.items()
        },
        "saturated_at_floor": {k: bool(o["flip_snr_db"][k] <= floor) for k in o["flip_snr_db"]},
        "ventricular_auc_delta": round(b - a, 4) if a is not None and b is not None else None,
        "ventricular_auc_target_held": bool(a is not None and b is not None and abs(b - a) <= TARGET_AUC_DELTA),
    }
    return "\n".join(lines), verdict


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--original", default="builtin", help="the parent model spec (default: builtin)")
    p.add_argument(
        "--hardened",
        default=str(REPO / "models" / "builtin_hardened.pt"),
        help="the hardened model spec (default: models/builtin_hardened.pt)",
    )
    p.add_argument("--data", default=None, help="MIT-BIH folder (default: ../shared/data/mitdb)")
    p.add_argument(
        "--records",
        default=None,
        help="comma-separated MIT-BIH records to evaluate on instead of DS2 (DS1 recipe experiments on "
        "records held out of hardening; default: DS2)",
    )
    # 16 per class (64 cases): with 4 (16 cases) the breakable-trial gains' 95% intervals spanned about 35 dB
    # (a few cases where a model loses its call at the first noise decide the median), too wide to judge a
    # 6-dB target on; the run takes about 3 minutes instead of 40 s.
    p.add_argument("--per-class", type=int, default=16, help="robustness cases per class (default: 16)")
    p.add_argument("--seeds", default="0,1,2", help="robustness seeds, comma-separated (default: 0,1,2)")
    p.add_argument("--realisations", type=int, default=3, help="noise draws per kind per report (default: 3)")
    p.add_argument("--agent-seeds", type=int, default=2, help="seeds of the agent runs per case (default: 2)")
    p.add_argument("--budget", type=int, default=500, help="agent query budget (default: 500)")
    p.add_argument("--case-seed", type=int, default=0, help="seeds the case order (default: 0)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: 1)")
    p.add_argument("--fast", action="store_true", help="smoke run: 1 case per class, 1 seed, budget 100")
    p.add_argument("--no-card", action="store_true", help="do not record the figures in the hardened card")
    p.add_argument("--out", default=None, help="results file (default: benchmarks/results/hardening-<date>.md)")
    args = p.parse_args(argv)
    if args.fast:
        args.per_class, args.seeds, args.agent_seeds, args.budget = 1, "0", 1, 100

    import torch

    from ecglens.classifiers import load_classifier
    from ecglens.classifiers.card import ModelCard, card_path_for
    from ecglens.classifiers.evaluate import class_metrics
    from ecglens.datasets.mitdb import DS2, load_windows
    from ecglens.robustness import SEARCH_LOW_DB

    torch.set_num_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    t0 = time.perf_counter()
    models = {
        "original": load_classifier(args.original, device="cpu"),
        "hardened": load_classifier(args.hardened, device="cpu"),
    }
    ref = models["original"]
    for m in models.values():
        if (tuple(m.class_names), tuple(m.lead_names), m.window_s, m.sampling_rate) != (
            tuple(ref.class_names),
            tuple(ref.lead_names),
            ref.window_s,
            ref.sampling_rate,
        ):
            raise SystemExit("the two models must share classes, leads, window and rate")
    records = tuple(r.strip() for r in args.records.split(",") if r.strip()) if args.records else DS2
    split = "DS2" if records == DS2 else "records " + ",".join(records)
    windows = load_windows(records, args.data, window_s=ref.window_s, leads=ref.lead_names)
    probs = {
        k: np.concatenate([m.predict_proba(windows.X[a : a + 512]) for a in range(0, len(windows), 512)])
        for k, m in models.items()
    }
    clean = {k: class_metrics(windows.Y, probs[k], m.class_names, dict(m.thresholds)) for k, m in models.items()}
    cases = pick_cases(
        windows.Y,
        windows.record,
        probs["original"],
        tuple(ref.class_names),
        dict(ref.thresholds),
        args.per_class,
        args.case_seed,
    )
    print(f"{len(windows)} {split} windows; {len(cases)} robustness cases", file=sys.stderr)
    rob = {
        k: evaluate_model(m, windows, cases, seeds, args.realisations, args.budget, args.agent_seeds)
        for k, m in models.items()
    }
    text, verdict = table(clean, rob, tuple(ref.class_names), SEARCH_LOW_DB, split)

    def held_missed(d: dict[str, bool]) -> str:
        held = [k for k, v in d.items() if v]
        missed = [k for k, v in d.items() if not v]
        return (
            f"{'HELD' if not missed else 'NOT HELD'} (held: {', '.join(held) or 'none'}; missed: "
            f"{', '.join(missed) or 'none'})"
        )

    saturated = [k for k, v in verdict["saturated_at_floor"].items() if v]
    summary = (
        f"Targets on {split}: median flip SNR lowered by >= {TARGET_GAIN_DB:g} dB for every kind, on the "
        f"breakable trials (the target's figure, see the definition): "
        f"{held_missed(verdict['breakable_target_held'])}; over all trials: "
        f"{held_missed(verdict['flip_snr_target_held'])}"
        + (
            f" (the original's all-trials median already sits at the {SEARCH_LOW_DB:g} dB floor for "
            f"{', '.join(saturated)}, so no gain can show there)"
            if saturated
            else ""
        )
        + f". Clean AUC for {TARGET_CLASS} within {TARGET_AUC_DELTA} of the original: "
        f"{'HELD' if verdict['ventricular_auc_target_held'] else 'NOT HELD'} "
        f"({verdict['ventricular_auc_delta']:+.4f}).\n\nDefinition: {DEFINITION}"
    )
    elapsed = time.perf_counter() - t0
    print(text)
    print()
    print(summary)

    date = dt.date.today().isoformat()
    out = Path(args.out) if args.out else RESULTS / "hardening.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    command = "python benchmarks/hardening.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    header = (
        f"# Hardening before / after ({date}, {split})\n\n"
        f"Original `{_shown(args.original)}`, hardened `{_shown(args.hardened)}`. {len(windows)} {split} windows (10 s, no overlap) "
        f"for AUC; {len(cases)} robustness cases ({args.per_class} per class, chosen by the original model), "
        f"seeds {seeds}, {args.realisations} noise draws per kind per report; agent budget {args.budget}, "
        f"{min(args.agent_seeds, len(seeds))} seed(s) per case.\n\n"
        f"Command: `{command}`  \nMachine: {platform.machine()}, {os.cpu_count()} CPUs, torch threads "
        f"{args.threads}; wall time {elapsed:.0f} s.\n\n"
    )
    out.write_text(header + text + "\n\n" + summary + "\n")
    summary_json = {
        "split": split,
        "cases": len(cases),
        "targets": verdict,
        "score": {k: rob[k]["score"] for k in rob},
        "clean_auc": {k: {c: clean[k][c]["auc"] for c in ref.class_names} for k in clean},
    }
    out.with_suffix(".summary.json").write_text(json.dumps(summary_json, indent=1) + "\n")
    (out.parent / "raw").mkdir(exist_ok=True)
    with open(out.parent / "raw" / (out.stem + ".jsonl"), "w") as f:
        for k in rob:
            for row in rob[k]["rows"]:
                f.write(json.dumps({"model": k, **row}) + "\n")
    print(f"\nwrote {out}", file=sys.stderr)

    card_file = card_path_for(args.hardened) if Path(args.hardened).suffix else None
    if not args.no_card and split == "DS2" and card_file is not None and card_file.exists():
        card = ModelCard.load(card_file)
        card.metrics["ds2"] = clean["hardened"]
        card.metrics["hardening_ds2"] = {
            "date": date,
            "command": command,
            "results": str(out.relative_to(REPO)) if out.is_relative_to(REPO) else str(out),
            "cases": len(cases),
            "seeds": seeds,
            "clean_auc": {k: {c: clean[k][c]["auc"] for c in ref.class_names} for k in clean},
            **{k: {kk: vv for kk, vv in rob[k].items() if kk not in ("rows", "trials", "trial_case")} for k in rob},
            "targets": verdict,
        }
        card.save(card_file)
        print(f"recorded the figures in {card_file}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
