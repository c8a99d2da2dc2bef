"""Time of ``ecglens.explain`` on 64 × 64 RGB images at budget 500 on one thread, split into the classifier's
forward passes and the rest (agent + calibration), with pointing at budget 50.

Two TorchScript classifiers built here: ``patch`` (answers on the brightness of pixels [16:24, 40:48]; 500 rows in
~0.02 s, so its figure is the agent's own time) and ``cnn`` (an untrained 3-layer CNN, 8-16-16 channels, whose
forward passes dominate). Not the benchmark (``benchmarks/vision.py``); a check of the < 1 s target.

    PYTHONPATH=backend OMP_NUM_THREADS=1 python scripts/vision_speed.py [--images 6]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import ecglens


class _Patch(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = 20.0 * (x[:, :, 16:24, 40:48].mean(dim=(1, 2, 3)) - 0.5)
        return torch.stack([z, -z], dim=1)


def _cnn() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(8, 16, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(16, 16, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.AdaptiveMaxPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(16, 3),
    ).eval()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=6)
    args = ap.parse_args()
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    images = []
    for _ in range(args.images):
        x = (rng.random((3, 64, 64)) * 0.4).astype(np.float32)
        x[:, 16:24, 40:48] = 0.8
        images.append(x)
    with tempfile.TemporaryDirectory() as tmp:
        for name, module, classes in (("patch", _Patch(), 2), ("cnn", _cnn(), 3)):
            path = Path(tmp) / f"{name}.pt"
            torch.jit.script(module).save(str(path))
            card = {"name": name, "modality": "image", "input_shape": [3, 64, 64], "output": "logits"}
            card["classes"] = [f"c{i}" for i in range(classes)]
            path.with_suffix(".json").write_text(json.dumps(card))
            clf = ecglens.load_classifier(path, device="cpu")
            forward = clf._forward
            spent = [0.0]

            def timed(chunk, forward=forward, spent=spent):
                t = time.perf_counter()
                out = forward(chunk)
                spent[0] += time.perf_counter() - t
                return out

            clf._forward = timed
            ecglens.explain(images[0], clf, query_budget=20, seed=0)  # imports, first calls
            walls, cpus, fwd, psnrs, hits = [], [], [], [], 0
            for i, x in enumerate(images):
                top = ecglens.explain(x, clf, query_budget=50, seed=i).extra["regions"][0]
                hits += (top["y0"], top["x0"]) == (16, 40)
                spent[0] = 0.0
                w, c = time.perf_counter(), time.process_time()
                e = ecglens.explain(x, clf, query_budget=500, seed=i)
                walls.append(time.perf_counter() - w)
                cpus.append(time.process_time() - c)
                fwd.append(spent[0])
                if e.adversarial is not None:
                    psnrs.append(e.adversarial.snr_db)
            print(
                f"{name}: budget 500 wall {np.mean(walls):.3f} s per image (max {max(walls):.3f}), process "
                f"{np.mean(cpus):.3f} s; classifier forward {np.mean(fwd):.3f} s, the rest "
                f"{np.mean(np.array(walls) - np.array(fwd)):.3f} s; flipped {len(psnrs)}/{len(images)}"
                + (f" (median PSNR {np.median(psnrs):.1f} dB)" if psnrs else "")
                + (f"; pointing at budget 50 {hits}/{len(images)}" if name == "patch" else "")
            )


if __name__ == "__main__":
    main()
