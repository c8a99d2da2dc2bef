"""How far supraventricular-ectopy detection carries from one MIT-BIH patient to another, within DS1 only.

Issue 17's supraventricular target (DS2 AUC >= 0.90) is judged on patients the model never saw. DS1's 944
supraventricular beats come from few patients (209 alone has 383), so this benchmark asks, without looking at
DS2: leave one DS1 patient out, fit the beat head's boosted trees (`ecglens.classifiers.beat_rhythm`, the same
15 beat features against the window's own rhythm and median beat, the same `TREE_CONFIG`) on every other DS1
record's beats, and score the held-out patient's beats. Beside it, a logistic regression on the nine RR-timing and rhythm features only, and
the single most transferable cue, prematurity (``-log rr_pre/neighbours``), with nothing fitted. Beat-level AUC per held-out patient (those with >= 30
supraventricular beats), and over all held-out beats pooled.

    python benchmarks/supraventricular_lopo.py [--out benchmarks/results/supraventricular_lopo.md]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MIN_S_BEATS = 30


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/supraventricular_lopo.md"))
    parser.add_argument("--model", default=str(ROOT / "models/builtin.pt"))
    args = parser.parse_args(argv)

    import torch
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from ecglens.classifiers.beat_rhythm import FEATURE_NAMES, TREE_CONFIG, beat_table
    from ecglens.classifiers.train import Span
    from ecglens.classifiers.train_anylead import load_base
    from ecglens.datasets.mitdb import AAMI_CLASSES, DS1, load_record

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    base = load_base(args.model)
    tables, n_s = {}, {}
    for name in DS1:
        rec = load_record(name, leads=("MLII", "V1"))
        tables[name] = beat_table(base, [Span(rec, 0, rec.n_samples)])
        n_s[name] = int(np.isin(rec.beat_symbol, list(AAMI_CLASSES["S"])).sum())
    prem = FEATURE_NAMES.index("log rr_pre/neighbours")

    rows, pooled_y, pooled = [], [], []
    rhythm = [FEATURE_NAMES.index(f) for f in FEATURE_NAMES[:9]]  # RR timing and the window's rhythm context
    for name in DS1:
        x_out, y_out = tables[name]
        if n_s[name] < MIN_S_BEATS:
            continue
        x_in = np.concatenate([tables[k][0] for k in DS1 if k != name])
        y_in = np.concatenate([tables[k][1] for k in DS1 if k != name])
        trees = HistGradientBoostingClassifier(**TREE_CONFIG).fit(x_in, y_in)
        linear = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(x_in[:, rhythm], y_in)
        scores = (trees.decision_function(x_out), linear.decision_function(x_out[:, rhythm]), -x_out[:, prem])
        rows.append((name, n_s[name], *(roc_auc_score(y_out, s) for s in scores)))
        pooled_y.append(y_out)
        pooled.append(scores)
    y = np.concatenate(pooled_y)
    lines = [
        "# Supraventricular ectopy between DS1 patients (leave one patient out)",
        "",
        f"`python benchmarks/supraventricular_lopo.py` ({time.perf_counter() - t0:.0f} s, "
        f"{os.cpu_count()} cores). Beat-level AUC of supraventricular against every other beat, on the detected "
        "beats of the held-out DS1 patient (windows every 5 s, each seen on MLII+V1, MLII and V1, so a beat counts up to six times); the trees are fitted on the "
        "other 21 DS1 records. DS2 is not read.",
        "",
        "| held-out patient | S beats (annotated) | beat-head trees, 15 features | logistic, 9 rhythm features "
        "| prematurity alone |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, count, *aucs in rows:
        lines.append(f"| {name} | {count} | " + " | ".join(f"{a:.3f}" for a in aucs) + " |")
    mean = np.mean([r[2:] for r in rows], axis=0)
    lines.append("| mean over patients | | " + " | ".join(f"{a:.3f}" for a in mean) + " |")
    pooled_aucs = [roc_auc_score(y, np.concatenate([p[i] for p in pooled])) for i in range(3)]
    lines.append(f"| pooled beats | {sum(r[1] for r in rows)} | " + " | ".join(f"{a:.3f}" for a in pooled_aucs) + " |")
    text = "\n".join(lines) + "\n"
    print(text)
    Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
