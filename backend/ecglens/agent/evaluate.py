"""Quick evaluation of the agent on held-out DS1 windows (never DS2): the figures the benchmark checks on DS2.

Cases: 10-s windows of `ecglens.agent.train.HELD_OUT_DS1` records with exactly one ventricular beat (V or E)
that the classifier flags as "ventricular ectopy". Per case, with a small budget (default 25): pointing game
(top segment within 0.15 s of the beat) and deletion AUC of the cell ranking; with a large budget (default 500):
flip and SNR of the minimal distortion, queries and time.

    python -m ecglens.agent.evaluate --model builtin [--policy models/agent_policy.pt] [--cases 40]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np

V_LABEL = "ventricular ectopy"


def held_out_cases(
    classifier: Any, max_cases: int = 40, records: tuple[str, ...] | None = None, data_dir: str | None = None
) -> list[tuple[Any, float]]:
    """``(Ecg window, beat time s)`` for held-out DS1 windows with exactly one V/E beat flagged by the classifier."""
    from ecglens.agent.train import HELD_OUT_DS1
    from ecglens.datasets.mitdb import load_windows

    windows = load_windows(
        list(records or HELD_OUT_DS1), data_dir, window_s=float(classifier.window_s), leads=tuple(classifier.lead_names)
    )
    one_v = np.flatnonzero(windows.count_beats(("V", "E")) == 1)
    if len(one_v) == 0:
        return []
    names = tuple(classifier.class_names)
    col = names.index(V_LABEL) if V_LABEL in names else 1
    thr = (getattr(classifier, "thresholds", {}) or {}).get(names[col], 0.5)
    probs = classifier.predict_proba(windows.X[one_v])
    flagged = one_v[probs[:, col] >= thr]
    # Evenly spread over the flagged windows (records stay mixed), deterministic.
    pick = (
        flagged[np.linspace(0, len(flagged) - 1, min(max_cases, len(flagged))).round().astype(int)]
        if len(flagged)
        else flagged
    )
    cases = []
    for i in pick:
        samples, symbols = windows.beats(int(i))
        beat = int(samples[np.isin(symbols, ["V", "E"])][0])
        cases.append((windows.ecg(int(i)), beat / windows.fs))
    return cases


def evaluate(
    classifier: Any,
    policy: Any = None,
    *,
    max_cases: int = 40,
    small_budget: int = 25,
    large_budget: int = 500,
    seed: int = 0,
) -> dict[str, Any]:
    """Run the agent on the held-out cases; returns per-case rows and the summary figures."""
    from ecglens.agent.grid import make_grid
    from ecglens.agent.search import explain
    from ecglens.metrics import deletion_auc, pointing_game

    rows = []
    for ecg, beat_s in held_out_cases(classifier, max_cases):
        small = explain(ecg, classifier, query_budget=small_budget, seed=seed, policy=policy)
        grid = make_grid(ecg.signal, ecg.fs, segment_s=0.25)
        scores = np.asarray(small.cell_scores, dtype=float)
        ranking = np.lexsort((np.arange(len(scores)), -scores))
        col = list(classifier.class_names).index(small.diagnosis.label)
        auc = deletion_auc(ecg.signal, ranking, grid, classifier, col)
        t0 = time.perf_counter()
        large = explain(ecg, classifier, query_budget=large_budget, seed=seed, policy=policy)
        rows.append(
            {
                "case": ecg.name,
                "label": small.diagnosis.label,
                "method": small.method,
                "hit": pointing_game(small, beat_s - small.start_s) if small.segments else False,
                "deletion_auc": auc,
                "queries_small": small.queries,
                "flipped": large.adversarial is not None,
                "snr_db": large.adversarial.snr_db if large.adversarial else None,
                "queries_large": large.queries,
                "elapsed_s": time.perf_counter() - t0,
            }
        )
    if not rows:
        return {"cases": 0, "rows": []}
    snrs = [r["snr_db"] for r in rows if r["snr_db"] is not None]
    return {
        "cases": len(rows),
        "pointing_game": float(np.mean([r["hit"] for r in rows])),
        "deletion_auc_mean": float(np.mean([r["deletion_auc"] for r in rows])),
        "flip_rate": float(np.mean([r["flipped"] for r in rows])),
        "flip_snr_db_median": float(np.median(snrs)) if snrs else None,
        "queries_large_median": float(np.median([r["queries_large"] for r in rows])),
        "elapsed_s_median": float(np.median([r["elapsed_s"] for r in rows])),
        "rows": rows,
    }


def main(argv: list[str] | None = None) -> int:
    import torch

    from ecglens.classifiers import load_classifier

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="builtin")
    parser.add_argument("--policy", default=None, help="policy path or 'greedy' (default: models/agent_policy.pt)")
    parser.add_argument("--cases", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rows", action="store_true", help="print every case")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    classifier = load_classifier(args.model, device="cpu")
    result = evaluate(classifier, args.policy, max_cases=args.cases, seed=args.seed)
    if args.rows:
        for r in result["rows"]:
            print(r)
    print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in result.items() if k != "rows"})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
