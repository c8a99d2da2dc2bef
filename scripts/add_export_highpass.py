"""Put the export high-pass in front of a model hardened before it existed, without retraining.

    .venv/bin/python scripts/add_export_highpass.py OLD_HARDENED.pt NEW.pt

What made the shipped models/builtin_hardened.pt from the session-2 soup: the file `ecglens harden` now writes
for the same fine-tune (the filter comes after recalibration, so thresholds and Platt buffers carry over). The
DS1 validation figures are recomputed with the filter; run benchmarks/hardening.py for the DS2 ones.
"""
import hashlib
import json
import sys
from dataclasses import asdict

import torch

from ecglens.hardening import (HardenConfig, card_path_for, front_end_text, highpass_length, load_trainable,
                               mitdb_sources, noisy_copies, with_highpass, _val_figures, KINDS)
torch.set_num_threads(1)
src, dst = sys.argv[1], sys.argv[2]
t = load_trainable(src)
card = json.loads(card_path_for(src).read_text())
cfg = HardenConfig(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in card["training"]["config"].items()})
cfg.highpass_taps = highpass_length(t.card)
f = with_highpass(t, cfg.export_highpass_hz, cfg.highpass_taps)
f.module.eval()
torch.jit.save(f.module, dst)
_, vX, vY = mitdb_sources(t)
vN = noisy_copies(vX, t.card.sampling_rate, cfg.seed, list(cfg.kinds) or KINDS)
thr = t.card.thresholds
card["metrics"]["ds1_validation"] = _val_figures(f, vX, vY, thr)
card["metrics"]["ds1_validation_noisy"] = _val_figures(f, vN, vY, thr)
card["metrics"]["ds2"], card["metrics"]["hardening_ds2"] = {}, {}
card["training"]["front_end"] = front_end_text(cfg)
card["training"]["config"] = json.loads(json.dumps(asdict(cfg)))
card["training"]["export_note"] = ("the session-2 soup (sha256 of the unfiltered file in 'unfiltered_sha256') with "
                                   "the export high-pass added afterwards; thresholds and Platt buffers unchanged")
card["training"]["unfiltered_sha256"] = hashlib.sha256(open(src, "rb").read()).hexdigest()
card_path_for(dst).write_text(json.dumps(card, indent=2) + "\n")
print("V AUC DS1 val:", {k: round(v.get("auc", float("nan")), 4) for k, v in card["metrics"]["ds1_validation"].items() if isinstance(v, dict)})
