"""How fast each realistic distortion is drawn in the batch sizes the agent uses.

The agent lays noise over hundreds of candidate strips per classifier call, so drawing it must stay far below the
classifier's own cost. Prints a Markdown table (median of repeats, milliseconds per batch) and writes it to
``benchmarks/results/distortions.md``.

    python benchmarks/distortions.py [--batch 256] [--samples 3600] [--repeats 7]
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import time
from pathlib import Path

import numpy as np

from ecglens import distortions as dist

FS = 360.0
RESULTS = Path(__file__).resolve().parent / "results" / "distortions.md"


def time_kind(kind: str, batch: int, samples: int, repeats: int, rng: np.random.Generator) -> float:
    dist.noise_batch(kind, batch, samples, FS, rng)  # warm the caches
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        dist.noise_batch(kind, batch, samples, FS, rng)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--samples", type=int, default=3600)
    p.add_argument("--repeats", type=int, default=7)
    args = p.parse_args()
    rng = np.random.default_rng(0)
    rows = [(kind, time_kind(kind, args.batch, args.samples, args.repeats, rng)) for kind in dist.KINDS]
    fastest = min(t for _, t in rows)
    lines = [
        f"# Distortion draw time ({dt.date.today().isoformat()})",
        "",
        f"`python benchmarks/distortions.py --batch {args.batch} --samples {args.samples} "
        f"--repeats {args.repeats}`: median of {args.repeats} draws of {args.batch} x {args.samples} samples "
        f"at {FS:g} Hz.",
        "",
        "| kind | ms per batch | x fastest |",
        "|---|---|---|",
    ]
    lines += [f"| {kind} | {t * 1e3:.1f} | {t / fastest:.1f} |" for kind, t in rows]
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text)


if __name__ == "__main__":
    main()
