"""Wall time of a default analysis' search part on a whole recording: `ecglens.screen` over every window, then
`ecglens.explain` on the most probable window of each finding (up to 3), at query budget 100.

Issue 17's target: a 30-min 2-lead record screened and up to 3 windows explained at budget 100 in under 15 s on
2 CPU cores. Records are MIT-BIH Arrhythmia records from ``../shared/data/mitdb`` (30 min, 360 Hz, 2 leads), read
once with `ecglens.read_record` (the read is timed apart); the classifier is loaded once and warmed up on one
record before timing (loading is not part of an analysis in a running service, where models stay loaded).

Per record: ``--repeats`` runs; each run times ``screen`` and the explanations of
``Screening.windows_to_explain(3)`` with seeds 0, 1, ... The table gives the median and max total seconds, the
split (screening / explanations), windows screened, windows explained with their findings, and the queries used.

Usage::

    .venv/bin/python benchmarks/screening.py                       # records 100, 119, 203, 208, 232; 3 repeats
    .venv/bin/python benchmarks/screening.py --records 203 --repeats 5 --no-write

Prints one Markdown table and writes it, with the command line, date and machine (CPU count, torch threads, load
average at the start and end), to ``benchmarks/results/screening-<YYYY-MM-DD>.md``. The default is 1 torch
thread, as in the product (``ECGLENS_TORCH_THREADS``), since 2 threads stall on a shared 2-core machine.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shlex
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
SHARED = Path(os.environ.get("ECGLENS_SHARED_DATA", REPO.parent / "shared" / "data"))
TARGET_S = 15.0
BUDGET = 100
MAX_WINDOWS = 3


def run_once(ecg, clf, budget: int, seed: int) -> dict:
    import ecglens

    t0 = time.perf_counter()
    screening = ecglens.screen(ecg, clf)
    t1 = time.perf_counter()
    explained = []
    queries = screening.queries
    for k, (finding, start) in enumerate(screening.windows_to_explain(MAX_WINDOWS)):
        ex = ecglens.explain(ecg, clf, query_budget=budget, seed=seed + k, start_s=start)
        explained.append((finding, start))
        queries += ex.queries
    t2 = time.perf_counter()
    return {
        "screen_s": t1 - t0,
        "explain_s": t2 - t1,
        "total_s": t2 - t0,
        "windows": screening.n_windows,
        "explained": explained,
        "queries": queries,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", default="100,119,203,208,232", help="MIT-BIH record names, comma-separated")
    parser.add_argument("--model", default="builtin", help="load_classifier spec (default: builtin)")
    parser.add_argument("--budget", type=int, default=BUDGET, help=f"explain query budget (default {BUDGET})")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1, as in the product)")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)

    import torch

    import ecglens

    torch.set_num_threads(args.threads)
    load_start = os.getloadavg()
    folder = SHARED / "mitdb"
    if not folder.is_dir():
        print(f"no MIT-BIH records at {folder}", file=sys.stderr)
        return 2
    clf = ecglens.load_classifier(args.model)
    rows = []
    for i, name in enumerate(n.strip() for n in args.records.split(",") if n.strip()):
        t = time.perf_counter()
        ecg = ecglens.read_record(folder / f"{name}.hea")
        read_s = time.perf_counter() - t
        if i == 0:
            run_once(ecg, clf, args.budget, 0)  # warm-up: first forward passes, policy load
        runs = [run_once(ecg, clf, args.budget, r) for r in range(args.repeats)]
        totals = [r["total_s"] for r in runs]
        rows.append(
            {
                "record": name,
                "leads": "+".join(ecg.leads),
                "minutes": ecg.duration_s / 60,
                "read_s": read_s,
                "median_s": statistics.median(totals),
                "max_s": max(totals),
                "screen_s": statistics.median(r["screen_s"] for r in runs),
                "explain_s": statistics.median(r["explain_s"] for r in runs),
                "windows": runs[0]["windows"],
                "explained": runs[0]["explained"],
                "queries": runs[0]["queries"],
            }
        )
    load_end = os.getloadavg()
    lines = [
        f"# Screening a whole recording + explaining up to {MAX_WINDOWS} windows (budget {args.budget})",
        "",
        f"Command: `{' '.join(shlex.quote(a) for a in ['.venv/bin/python', 'benchmarks/screening.py', *(argv or sys.argv[1:])])}`",
        f"Date: {dt.datetime.now(dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}. Model: `{args.model}`. "
        f"Machine: {os.cpu_count()} CPUs visible, torch {torch.__version__} with {args.threads} thread(s); "
        f"load average {load_start[0]:.2f} at the start, {load_end[0]:.2f} at the end.",
        f"Target (issue 17): under {TARGET_S:g} s per record on 2 cores. {args.repeats} timed runs per record after "
        "one warm-up run; the read is timed apart (not part of the total).",
        "",
        "| record | leads | min | read s | total s (median) | total s (max) | screen s | explain s | windows | "
        "explained (finding @ start) | queries | < 15 s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        explained = "; ".join(f"{f} @ {s:.0f} s" for f, s in r["explained"])
        lines.append(
            f"| {r['record']} | {r['leads']} | {r['minutes']:.1f} | {r['read_s']:.2f} | {r['median_s']:.2f} | "
            f"{r['max_s']:.2f} | {r['screen_s']:.2f} | {r['explain_s']:.2f} | {r['windows']} | {explained} | "
            f"{r['queries']} | {'yes' if r['max_s'] < TARGET_S else 'no'} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_write:
        RESULTS.mkdir(parents=True, exist_ok=True)
        out = RESULTS / "screening.md"
        out.write_text(text)
        print(f"written: {out.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
