"""Apply the recalibration's threshold rule to a model hardened before it existed, in place, without retraining.

    .venv/bin/python scripts/keep_separated_thresholds.py HARDENED.pt PARENT_SPEC

`ecglens.hardening._recalibrate` now keeps the parent's threshold for a class that the validation windows separate
(almost) perfectly (AUC >= 0.999): there Youden's J is flat and would put the threshold at the lowest positive.
This does the same for an existing hardened model: only its card changes (thresholds, DS1 validation figures,
the recipe's threshold line, known_issues); the DS2 figures are cleared, run benchmarks/hardening.py for them.
What changed the shipped models/builtin_hardened.json (AF: 0.746 -> the built-in's 0.0356).
"""
import json
import sys

import torch

from ecglens.classifiers import load_classifier
from ecglens.classifiers.evaluate import SEPARATED_AUC
from ecglens.hardening import (KINDS, HardenConfig, _val_figures, card_path_for, load_trainable, mitdb_sources,
                               noisy_copies, validation_warnings)

torch.set_num_threads(1)
path, parent_spec = sys.argv[1], sys.argv[2]
model = load_trainable(path)
parent_thresholds = dict(load_classifier(parent_spec, device="cpu").thresholds)
card = json.loads(card_path_for(path).read_text())
cfg = HardenConfig(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in card["training"]["config"].items()})
_, vX, vY = mitdb_sources(model, hold_out=tuple(card.get("data", {}).get("held_out_records", ())))
vN = noisy_copies(vX, model.card.sampling_rate, cfg.seed, list(cfg.kinds) or KINDS)
before = _val_figures(model, vX, vY, model.card.thresholds)
kept = [c for c, f in before.items() if f["auc"] is not None and f["auc"] >= SEPARATED_AUC]
thresholds = {c: round(float(parent_thresholds[c] if c in kept else t), 6) for c, t in model.card.thresholds.items()}
card["thresholds"] = thresholds
card["metrics"]["ds1_validation"] = _val_figures(model, vX, vY, thresholds)
card["metrics"]["ds1_validation_noisy"] = _val_figures(model, vN, vY, thresholds)
card["metrics"]["ds2"], card["metrics"]["hardening_ds2"] = {}, {}
card["training"]["thresholds"] = (f"Youden's J per class on the validation windows; the parent's for "
                                  f"{', '.join(kept) or 'no class'} (validation AUC >= {SEPARATED_AUC}: Youden's J "
                                  "does not set it)")
card["training"]["threshold_note"] = ("parent's threshold kept afterwards for the separated classes by "
                                      "scripts/keep_separated_thresholds.py; weights unchanged")
m = card["metrics"]
figures = {"hardened": {"clean": m["ds1_validation"], "noisy": m["ds1_validation_noisy"]},
           "parent": {"clean": m["ds1_validation_parent"], "noisy": m["ds1_validation_noisy_parent"]}}
card.setdefault("extra", {})["known_issues"] = validation_warnings(figures, True, kept)
card_path_for(path).write_text(json.dumps(card, indent=2) + "\n")
print("kept the parent's threshold for:", kept or "no class")
print("thresholds:", thresholds)
print("DS1 validation (auc, sensitivity, specificity):",
      {c: (f["auc"], f["sensitivity"], f["specificity"]) for c, f in card["metrics"]["ds1_validation"].items()})
