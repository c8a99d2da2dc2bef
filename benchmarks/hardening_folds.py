"""Hardening recipes on DS1 folds: does a recipe's robustness gain hold on patients that neither the parent nor
the hardening saw? (Development only; DS2 stays for the final before/after of `hardening.py`.)

Why: the first protocol (`git show 1d72211:benchmarks/results/hardening-ds1-experiments-2026-11-24.md`) scored recipes on three hold-out
records plus the validation records, and its 17-22 dB electrode-motion gains became 3 dB on DS2. Per fold here:

1. a *proxy parent*: the built-in's recipe (`ecglens.classifiers.train`) on DS1 without the fold's records
   (reused from ``OUT/fold-K/proxy.pt`` when present, so recipes share parents);
2. the recipe's hardening of it with the fold held out (`ecglens.hardening.harden`, ``--config`` overrides);
3. `hardening.py` on the fold's records: breakable-trial gains with their intervals, robustness score, V AUC.

The validation records (116, 118, 124, 215, 220) are never in a fold: they select and calibrate both models. The
AF records (201, 203; DS1 has AF nowhere else) can be held out one at a time: the other one's first 70% then
trains both models and its last 30% validates them (a fold of 203 alone checks AF, where DS2 lost most).

Usage::

    .venv/bin/python benchmarks/hardening_folds.py --out /tmp/folds \\
        --folds 101,108,112,114,122,230 109,115,205,207,208,209 [--config '{"kind_weights": ...}'] [--tag base]

Folds run side by side (``--jobs``, one torch thread each); prints one table (a row per fold) and writes it to
``OUT/folds-TAG.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
KINDS = ("baseline_wander", "powerline", "muscle", "electrode_motion", "gaussian")


def run_fold(k: int, records: list[str], out: Path, tag: str, overrides: dict, per_class: int) -> dict:
    """Proxy parent, hardening and benchmark of fold ``k``; the benchmark's summary."""
    import torch

    torch.set_num_threads(1)
    from ecglens.classifiers.train import (
        AF_SPLIT_RECORDS,
        VAL_RECORDS,
        TrainConfig,
        save_model,
        split_ds1,
        train_classifier,
    )
    from ecglens.datasets.mitdb import DS1
    from ecglens.hardening import HardenConfig, harden

    bad = sorted(set(records) & set(VAL_RECORDS) | (set(records) - set(DS1)))
    if set(AF_SPLIT_RECORDS) <= set(records):
        bad += sorted(AF_SPLIT_RECORDS)
    if bad:
        raise ValueError(f"fold {k}: {bad} cannot be held out (validation records, both AF records, or not DS1)")
    folder = out / f"fold-{k}"
    folder.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    proxy = folder / "proxy.pt"
    if not proxy.exists():
        train, val = split_ds1(records=[r for r in DS1 if r not in records])
        result = train_classifier(train, val, TrainConfig(threads=1), log=None)
        save_model(result, proxy, None, name=f"proxy-fold{k}")
    hardened = folder / f"hardened-{tag}.pt"
    if not hardened.exists():
        config = HardenConfig(**{key: (tuple(v) if isinstance(v, list) else v) for key, v in overrides.items()})
        harden(str(proxy), hardened, config=config, hold_out=records, log=None)
    sys.path.insert(0, str(REPO / "benchmarks"))
    import hardening as bench

    report = folder / f"report-{tag}.md"
    bench.main(
        [
            "--original",
            str(proxy),
            "--hardened",
            str(hardened),
            "--records",
            ",".join(records),
            "--per-class",
            str(per_class),
            "--agent-seeds",
            "0",
            "--no-card",
            "--out",
            str(report),
        ]
    )
    summary = json.loads(report.with_suffix(".summary.json").read_text())
    summary.update(fold=k, records=records, minutes=round((time.perf_counter() - t0) / 60, 1))
    return summary


def table(rows: list[dict]) -> str:
    head = (
        "| fold | records | cases | ΔV AUC | "
        + " | ".join(k.replace("_", " ") for k in KINDS)
        + " | robustness score |"
    )
    lines = [head, "|" + "---|" * (5 + len(KINDS))]
    for r in rows:
        t = r["targets"]
        gains = []
        for kind in KINDS:
            b = t["breakable_flip_snr_db"].get(kind, {})
            lo, hi = b.get("gain_ci95_db", [None, None])
            gains.append(f"{b.get('gain_db', float('nan')):.1f} [{lo}, {hi}] (n={b.get('trials', 0)})")
        dv = t.get("ventricular_auc_delta")
        lines.append(
            f"| {r['fold']} | {','.join(r['records'])} | {r['cases']} | "
            f"{dv if dv is None else format(dv, '+.4f')} | "
            + " | ".join(gains)
            + f" | {r['score']['original']:.3f} → {r['score']['hardened']:.3f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--folds", nargs="+", required=True, help="one comma-separated record list per fold")
    p.add_argument("--out", required=True, help="folder for the proxies, hardened models and reports")
    p.add_argument("--config", default="{}", help="HardenConfig overrides as JSON (default: the shipped recipe)")
    p.add_argument("--tag", default="base", help="names this recipe's files (default: base)")
    p.add_argument("--per-class", type=int, default=16, help="benchmark cases per class (default: 16)")
    p.add_argument("--jobs", type=int, default=2, help="folds run side by side (default: 2)")
    args = p.parse_args(argv)
    folds = [[r.strip() for r in f.split(",") if r.strip()] for f in args.folds]
    out = Path(args.out)
    overrides = json.loads(args.config)
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        futures = [
            pool.submit(run_fold, k, recs, out, args.tag, overrides, args.per_class) for k, recs in enumerate(folds, 1)
        ]
        rows = [f.result() for f in futures]
    text = (
        f"# Hardening on DS1 folds, recipe `{args.tag}` (config {json.dumps(overrides)})\n\n"
        f"Breakable-trial gain per kind in dB (95% interval over cases; trials), as in `hardening.py`.\n\n"
        + table(rows)
        + "\n"
    )
    print(text)
    (out / f"folds-{args.tag}.md").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
