"""Apply the hardening's threshold rule to a model hardened before it existed, in place, without retraining.

    .venv/bin/python scripts/keep_parent_thresholds.py HARDENED.pt PARENT_SPEC [parent|separated]

`ecglens.hardening` now keeps the parent's operating thresholds (`HardenConfig.thresholds = "parent"`); with
"separated" only for the classes the validation windows separate (almost) perfectly (AUC >= 0.999, where Youden's
J is flat), as the "youden" rule does. Only the card changes (thresholds, DS1 validation figures, the recipe's
threshold line, known_issues); the DS2 figures are cleared, run benchmarks/hardening.py for them. What changed
the shipped models/builtin_hardened.json: first "separated" (AF 0.746 -> 0.0356), then "parent" (every class).
"""
import json
import sys

import torch

from ecglens.classifiers import load_classifier
from ecglens.classifiers.evaluate import separated_classes
from ecglens.hardening import (KINDS, HardenConfig, _val_figures, card_path_for, load_trainable, mitdb_sources,
                               noisy_copies, thresholds_text, validation_warnings)

torch.set_num_threads(1)
path, parent_spec = sys.argv[1], sys.argv[2]
rule = sys.argv[3] if len(sys.argv) > 3 else "parent"
model = load_trainable(path)
parent_thresholds = dict(load_classifier(parent_spec, device="cpu").thresholds)
card = json.loads(card_path_for(path).read_text())
cfg = HardenConfig(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in card["training"]["config"].items()})
_, vX, vY = mitdb_sources(model, hold_out=tuple(card.get("data", {}).get("held_out_records", ())))
vN = noisy_copies(vX, model.card.sampling_rate, cfg.seed, list(cfg.kinds) or KINDS)
before = _val_figures(model, vX, vY, model.card.thresholds)
kept = list(before) if rule == "parent" else separated_classes(before)
thresholds = {c: round(float(parent_thresholds[c] if c in kept else t), 6) for c, t in model.card.thresholds.items()}
card["thresholds"] = thresholds
card["metrics"]["ds1_validation"] = _val_figures(model, vX, vY, thresholds)
card["metrics"]["ds1_validation_noisy"] = _val_figures(model, vN, vY, thresholds)
card["metrics"]["ds2"], card["metrics"]["hardening_ds2"] = {}, {}
card["training"]["thresholds"] = thresholds_text(rule != "parent", kept)
card["training"]["config"]["thresholds"] = "parent" if rule == "parent" else "youden"
card["training"]["threshold_note"] = (f"thresholds set afterwards by scripts/keep_parent_thresholds.py ({rule}); "
                                      "weights unchanged")
m = card["metrics"]
figures = {"hardened": {"clean": m["ds1_validation"], "noisy": m["ds1_validation_noisy"]},
           "parent": {"clean": m["ds1_validation_parent"], "noisy": m["ds1_validation_noisy_parent"]}}
card.setdefault("extra", {})["known_issues"] = (validation_warnings(figures, False) if rule == "parent"
                                                else validation_warnings(figures, True, kept))
card_path_for(path).write_text(json.dumps(card, indent=2) + "\n")
print("kept the parent's threshold for:", kept or "no class")
print("thresholds:", thresholds)
print("DS1 validation (auc, sensitivity, specificity):",
      {c: (f["auc"], f["sensitivity"], f["specificity"]) for c, f in card["metrics"]["ds1_validation"].items()})
