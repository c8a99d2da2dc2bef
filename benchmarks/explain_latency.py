"""Warm wall time of one ``ecglens.explain`` call per query budget, against captum Occlusion and the bare classifier.

Issue 3's speed targets: explain one 10-s two-lead strip in under 1 s on 2 CPU cores, one 10-s 12-lead record in
under 2 s; issue 16's, the built-in's at budget 500 with one torch thread: under 0.5 s and 1 s. This script
times ``ecglens.explain(ecg, classifier, query_budget=B, seed=s)`` for B = 25, 100 and 500 (500 is the service's
default budget) on:

- ``builtin`` (MLII, V1 at 360 Hz) on a 10-s window of MIT-BIH record 119 (DS1, frequent PVCs; the first 10 s hold
  two V beats);
- ``builtin`` on CinC 2021 record E07500 (12 leads, 500 Hz, its first 10 s): all 12 leads for a built-in that
  follows the record's leads (card ``lead_rule: "any"``), MLII (II) and V1 for a fixed 2-lead one;
- ``transfer_gru`` on the same window;
- a 12-lead classifier on CinC 2021 record E07500 (12 leads, 500 Hz, its first 10 s): the built-in ResNet1d
  architecture with 12 inputs and seeded UNTRAINED weights (`gpu_throughput.untrained_model`). No trained 12-lead
  model ships, so this row is for timing only: its findings, and so where and whether the search flips them,
  differ from a trained model's; the table shows the queries used for that reason.

Records come from ``../shared/data`` (read with `ecglens.read_record`); when a record is absent the script falls
back to `gpu_throughput.source_ecg` (another real record or a neurokit2 simulation) and says so.

Per (model, budget): one untimed warm-up call (seed 0), then ``--repeats`` calls with seeds 1..N; the median and
max wall seconds, the queries used (``Explanation.queries``), the method the explanation reports ("policy" or
"greedy-scan", with its fallback reason) and seconds per query. Measured in the same run on the same input, as
peers whose ratio stays comparable from run to run on a shared machine:

- captum Occlusion through ``ecglens.baselines.peer("occlusion")`` (0.2-s window, 0.1-s stride per lead; its own
  fixed query count), warm-up then ``--peer-repeats`` calls (default 3);
- the bare classifier: one ``predict_proba`` call on as many rows as explain used (the median count; the fitted
  window with 20-dB Gaussian probe noise per row), warm-up then ``--peer-repeats`` calls. The adapter splits a
  call into forwards of its ``batch_size`` (256; on a CPU the TorchScript adapter at most 2^20 input samples a
  forward, `ecglens.classifiers.torchscript.CPU_FORWARD_SAMPLES`), as it does inside explain.

Process CPU seconds are recorded beside wall seconds, for the whole call and inside ``predict_proba``: on a shared
machine wall time also holds the time the process waited for a core.

Inside each timed explain call a stopwatch on ``predict_proba`` (`ClassifierClock`) also records the seconds
spent in the classifier and the number of calls, so the table splits a call into classifier and search time.

Usage::

    .venv/bin/python benchmarks/explain_latency.py                  # all three models, budgets 25,100,500
    .venv/bin/python benchmarks/explain_latency.py --repeats 3 --models builtin --budgets 25,500
    .venv/bin/python benchmarks/explain_latency.py --threads 1 --no-write

Prints one Markdown table and writes it, with the command line and machine (CPU count, torch threads, load
average at the start and end), to ``benchmarks/results/explain_latency-<YYYY-MM-DD><--suffix>.md``.

On a 2-core machine that others are using, 2 torch threads can stall for whole time slices (one intra-op thread
waits for a core): so the default is 1 thread, as in the product (``ECGLENS_TORCH_THREADS``); ``--threads 2`` to compare.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import re
import shlex
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # gpu_throughput, when loaded by path from a test
from gpu_throughput import SHARED_DATA, probe_batch, source_ecg, untrained_model  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
DEFAULT_BUDGETS = (25, 100, 500)
# Issue 3: seconds allowed for one explanation, by lead count of the input.
TARGET_S = {2: 1.0, 12: 2.0}
# Issue 16: the built-in at budget 500 with one torch thread.
TARGET16_S = {2: 0.5, 12: 1.0}
# Model key -> (load_classifier spec or "untrained-12", record folder, record name).
MODELS: dict[str, tuple[str, str, str]] = {
    "builtin": ("builtin", "mitdb", "119"),
    "builtin-12lead": ("builtin", "cinc2021", "E07500"),
    "transfer_gru": ("transfer_gru", "mitdb", "119"),
    "resnet1d-untrained-12lead": ("untrained-12", "cinc2021", "E07500"),
}


@dataclass(frozen=True)
class Timing:
    """Wall seconds of repeated warm calls of one thing (an explain budget, Occlusion, or the bare classifier)."""

    median_s: float
    max_s: float
    queries: list[int]
    methods: list[str]
    inside_s: float | None = None  # median seconds spent inside predict_proba per call of explain
    calls: int | None = None  # median predict_proba calls per call of explain
    cpu_s: float | None = None  # median process CPU seconds per call (not slowed by waiting for a shared core)
    inside_cpu_s: float | None = None  # median process CPU seconds inside predict_proba per call of explain


@dataclass(frozen=True)
class Row:
    """One table row: ``explain`` at one budget on one model, with the peers measured on the same input."""

    model: str
    leads: int
    budget: int | None  # None for the Occlusion row
    median_s: float
    max_s: float
    queries: list[int]
    method: str
    occlusion_s: float
    classifier_s: float | None  # bare predict_proba on the median query count, one call
    target_s: float
    untrained: bool
    inside_s: float | None = None
    calls: int | None = None
    cpu_s: float | None = None
    inside_cpu_s: float | None = None
    target16_s: float | None = None

    @property
    def s_per_query(self) -> float:
        return self.median_s / max(1.0, float(np.median(self.queries)))

    @property
    def ratio_to_occlusion(self) -> float:
        return self.median_s / self.occlusion_s


# ------------------------------------------------------------------------------------------------- inputs
def record_window(folder: str, name: str, seconds: float = 10.0, start_s: float = 0.0):
    """``seconds`` s of ``../shared/data/<folder>/<name>`` from ``start_s`` s, and where it came from.

    Returns ``(Ecg, str)``; when the record is absent, `gpu_throughput.source_ecg` stands in (another real record
    with that lead count, or a neurokit2 simulation), and the description says which.
    """
    from ecglens import read_record

    header = SHARED_DATA / folder / f"{name}.hea"
    if header.exists():
        ecg = read_record(str(header))
        end = min(ecg.duration_s, start_s + seconds)
        return ecg.crop(start_s, end), f"{folder}/{name} {start_s:g}-{end:g} s"
    n_leads = 12 if folder == "cinc2021" else 2
    ecg, origin = source_ecg(n_leads, seconds)
    return ecg, f"{origin} (stand-in: {folder}/{name} not found under {SHARED_DATA})"


def fitted_window(ecg, classifier) -> np.ndarray:
    """The classifier's input for ``ecg``: float32 ``[leads, samples]`` in mV (first window, zero-padded)."""
    from ecglens.classifiers.base import input_samples
    from ecglens.classifiers.fit import fit_record

    fitted = fit_record(ecg, classifier)
    n = input_samples(classifier)
    x = np.zeros((fitted.n_leads, n), dtype=np.float32)
    piece = fitted.signal[:, :n]
    x[:, : piece.shape[1]] = piece
    return x


# ------------------------------------------------------------------------------------------------- timing
class ClassifierClock:
    """``classifier`` with a stopwatch on ``predict_proba``: seconds inside it and calls since `reset`.

    Everything else (card fields) is the wrapped classifier's; the clock costs two ``perf_counter`` and two
    ``process_time`` reads a call (``cpu_seconds``: the process CPU seconds inside it).
    """

    def __init__(self, classifier: Any):
        self._classifier = classifier
        self.seconds = 0.0
        self.cpu_seconds = 0.0
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._classifier, name)

    def predict_proba(self, batch: np.ndarray) -> np.ndarray:
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            return self._classifier.predict_proba(batch)
        finally:
            self.seconds += time.perf_counter() - t0
            self.cpu_seconds += time.process_time() - c0
            self.calls += 1

    def reset(self) -> None:
        self.seconds, self.cpu_seconds, self.calls = 0.0, 0.0, 0


def time_explain(ecg, classifier, budget: int, repeats: int) -> Timing:
    """One warm-up ``explain`` (seed 0), then ``repeats`` timed calls with seeds 1..repeats; also the seconds
    and calls spent inside ``predict_proba`` (a `ClassifierClock`)."""
    from ecglens import explain

    clock = ClassifierClock(classifier)
    explain(ecg, clock, query_budget=budget, seed=0)
    times, cpu, queries, methods, inside, inside_cpu, calls = [], [], [], [], [], [], []
    for seed in range(1, repeats + 1):
        clock.reset()
        t0, c0 = time.perf_counter(), time.process_time()
        e = explain(ecg, clock, query_budget=budget, seed=seed)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        queries.append(int(e.queries))
        methods.append(e.method + (f" ({e.fallback_reason})" if e.fallback_reason else ""))
        inside.append(clock.seconds)
        inside_cpu.append(clock.cpu_seconds)
        calls.append(clock.calls)
    return Timing(
        float(np.median(times)),
        float(np.max(times)),
        queries,
        methods,
        inside_s=float(np.median(inside)),
        calls=int(np.median(calls)),
        cpu_s=float(np.median(cpu)),
        inside_cpu_s=float(np.median(inside_cpu)),
    )


def time_occlusion(x: np.ndarray, classifier, repeats: int) -> Timing:
    """captum Occlusion on the fitted window ``x`` (the diagnosed finding), built as `benchmarks/explainers.py`
    builds its peers; one warm-up, then ``repeats`` timed calls with seeds 1..repeats."""
    from ecglens.baselines import peer

    cls = peer("occlusion")
    cls(classifier, seed=0).explain(x, None)
    times, cpu, queries = [], [], []
    for seed in range(1, repeats + 1):
        t0, c0 = time.perf_counter(), time.process_time()
        e = cls(classifier, seed=seed).explain(x, None)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        queries.append(int(e.queries))
    return Timing(
        float(np.median(times)), float(np.max(times)), queries, ["occlusion"] * repeats, cpu_s=float(np.median(cpu))
    )


def time_classifier(x: np.ndarray, classifier, rows: int, repeats: int, rng: np.random.Generator) -> float:
    """Median wall seconds of one ``predict_proba`` call on ``rows`` noisy copies of ``x`` (after one warm-up)."""
    batch = probe_batch(x, max(1, rows), rng)
    classifier.predict_proba(batch)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        classifier.predict_proba(batch)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def measure_model(
    model: str,
    ecg,
    classifier,
    budgets: list[int],
    repeats: int,
    *,
    peer_repeats: int = 3,
    untrained: bool = False,
    seed: int = 0,
    verbose: bool = True,
) -> list[Row]:
    """Every budget of ``explain`` on one model and input, then Occlusion; rows for the table.

    Parameters
    ----------
    model : str
        Label for the table.
    ecg : Ecg
        The 10-s input (any rate and leads the classifier can be fitted to).
    classifier : Classifier
        The black box, already loaded.
    budgets : list of int
        Query budgets of ``explain`` (each >= 2).
    repeats : int
        Timed calls per budget after one warm-up (seeds 1..repeats).
    peer_repeats : int
        Timed calls of Occlusion and of the bare classifier after one warm-up. Default: 3.
    untrained : bool
        The classifier has untrained weights (timing only). Default: False.
    seed : int
        Seed of the bare-classifier probe noise. Default: 0.
    verbose : bool
        Progress lines on stderr. Default: True.

    Returns
    -------
    list of Row
        One per budget, then one for Occlusion (``budget`` None, ``classifier_s`` its own rows' cost).
    """
    x = fitted_window(ecg, classifier)
    leads = x.shape[0]
    target = TARGET_S.get(leads, TARGET_S[12])
    occlusion = time_occlusion(x, classifier, peer_repeats)
    _say(verbose, f"  {model} occlusion: median {occlusion.median_s:.3f} s, {occlusion.queries[0]} queries")
    rows = []
    for budget in budgets:
        t = time_explain(ecg, classifier, budget, repeats)
        bare = time_classifier(x, classifier, int(np.median(t.queries)), peer_repeats, np.random.default_rng(seed))
        rows.append(
            Row(
                model=model,
                leads=leads,
                budget=budget,
                median_s=t.median_s,
                max_s=t.max_s,
                queries=t.queries,
                method=_one_or_all(t.methods),
                occlusion_s=occlusion.median_s,
                classifier_s=bare,
                target_s=target,
                untrained=untrained,
                inside_s=t.inside_s,
                calls=t.calls,
                cpu_s=t.cpu_s,
                inside_cpu_s=t.inside_cpu_s,
                target16_s=TARGET16_S.get(leads, TARGET16_S[12]) if _issue16_row(model, budget) else None,
            )
        )
        _say(
            verbose,
            f"  {model} budget {budget}: median {t.median_s:.3f} s, max {t.max_s:.3f} s, "
            f"queries {t.queries}, {rows[-1].method}",
        )
    bare = time_classifier(x, classifier, occlusion.queries[0], peer_repeats, np.random.default_rng(seed))
    rows.append(
        Row(
            model=model,
            leads=leads,
            budget=None,
            median_s=occlusion.median_s,
            max_s=occlusion.max_s,
            queries=occlusion.queries,
            method="captum Occlusion (0.2 s / 0.1 s)",
            occlusion_s=occlusion.median_s,
            classifier_s=bare,
            target_s=target,
            untrained=untrained,
            cpu_s=occlusion.cpu_s,
        )
    )
    return rows


def _issue16_row(model: str, budget: int) -> bool:
    """Issue 16's targets are the built-in's at budget 500."""
    return model.startswith("builtin") and budget == 500


def _one_or_all(methods: list[str]) -> str:
    unique = sorted(set(methods))
    return unique[0] if len(unique) == 1 else " / ".join(f"{m} x{methods.count(m)}" for m in unique)


def _say(verbose: bool, text: str) -> None:
    if verbose:
        print(text, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------------- report
def markdown_table(rows: list[Row]) -> str:
    """One line per (model, budget) and one per model's Occlusion run."""
    lines = [
        "| model | budget | median s | max s | CPU s (in predict_proba) | queries | s / query | method | "
        "inside predict_proba s (calls) | classifier alone, same rows, one call (s) | ratio to Occlusion | "
        "target held? (median / max) | issue 16 target held? (median / max) |",
        "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---|---|",
    ]

    def held(limit: float | None, r: Row) -> str:
        if r.budget is None or limit is None:
            return "–"
        return f"{'yes' if r.median_s < limit else 'NO'} / {'yes' if r.max_s < limit else 'NO'} (< {limit:g} s)"

    for r in rows:
        q = sorted(r.queries)
        queries = f"{q[0]}" if q[0] == q[-1] else f"{int(np.median(q))} ({q[0]}-{q[-1]})"
        label = r.model + (" (untrained)" if r.untrained else "")
        bare = "–" if r.classifier_s is None else f"{r.classifier_s:.3f}"
        inside = "–" if r.inside_s is None else f"{r.inside_s:.3f} ({r.calls})"
        cpu = "–" if r.cpu_s is None else f"{r.cpu_s:.3f}"
        if r.inside_cpu_s is not None:
            cpu += f" ({r.inside_cpu_s:.3f})"
        lines.append(
            f"| {label} | {r.budget if r.budget is not None else 'Occlusion'} | {r.median_s:.3f} | "
            f"{r.max_s:.3f} | {cpu} | {queries} | {1000 * r.s_per_query:.2f} ms | {r.method} | {inside} | "
            f"{bare} | {r.ratio_to_occlusion:.2f} | {held(r.target_s, r)} | {held(r.target16_s, r)} |"
        )
    return "\n".join(lines)


def report(
    rows: list[Row],
    *,
    command: str,
    threads: int,
    repeats: int,
    peer_repeats: int,
    load_start: tuple[float, ...],
    load_end: tuple[float, ...],
    sources: dict[str, str],
    total_s: float,
) -> str:
    """The Markdown document: context, the table, how to read it."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        cpu = re.search(r"model name\s*:\s*(.+)", Path("/proc/cpuinfo").read_text()).group(1).strip()
    except (OSError, AttributeError):
        pass

    def load(values: tuple[float, ...]) -> str:
        return " / ".join(f"{v:.2f}" for v in values)

    untrained = sorted({r.model for r in rows if r.untrained})
    return "\n".join(
        [
            f"# ecglens.explain latency ({dt.date.today().isoformat()})",
            "",
            "Issue 3 targets: one 10-s two-lead strip explained in under 1 s on 2 CPU cores; one 10-s 12-lead record "
            "in under 2 s. Issue 16 targets, the built-in at budget 500 with one torch thread: under 0.5 s (two leads) "
            "and 1 s (12 leads).",
            "",
            f"Command: `{command}`",
            f"Machine: {cpu}, {os.cpu_count()} CPUs visible, torch {torch.__version__} with {threads} thread(s) "
            f"(torch.get_num_threads() = {torch.get_num_threads()}), Python {platform.python_version()}",
            f"Load average (1 / 5 / 15 min): {load(load_start)} at the start, {load(load_end)} at the end "
            "(a shared machine: other benchmarks may have been running)",
            f"Repeats: 1 warm-up call, then {repeats} timed calls (seeds 1..{repeats}) per explain row, "
            f"{peer_repeats} for Occlusion and the bare classifier; wall time {total_s:.0f} s in all",
            "Inputs: " + "; ".join(f"`{m}` on {s}" for m, s in sources.items()),
            "",
            *(
                [
                    f"**{', '.join(untrained)}: untrained weights, timing only.** The built-in ResNet1d architecture with "
                    "12 inputs and seeded untrained weights (no trained 12-lead model ships). A forward pass costs what a "
                    "trained one costs, but its findings, and where and whether the search flips them, differ from a "
                    "trained model's: compare the queries column, not only the seconds.",
                    "",
                ]
                if untrained
                else []
            ),
            markdown_table(rows),
            "",
            "Median / max: wall seconds of one warm `ecglens.explain(ecg, classifier, query_budget=B, seed=s)` call "
            "(record in, `Explanation` out: window fit, diagnosis, localisation, search, minimisation). Queries: "
            "classifier rows the explanation used (median, and range when seeds differ). s / query: median / median "
            "queries. CPU s: median process CPU seconds of one call (all threads; unlike wall time, not stretched "
            "while the process waits for a core of a shared machine), in brackets those inside `predict_proba`: the "
            "search's own CPU seconds are the difference. Method: what the explanation reports (`policy` = learned "
            "agent, `greedy-scan` = fallback, with its reason). Inside predict_proba: median seconds of the "
            "explain call spent in the classifier's `predict_proba` and how many calls it made (the rest is the "
            "search's own work). Classifier alone: median seconds of one `predict_proba` call on as many rows (the fitted window "
            "with 20-dB probe noise per row; the TorchScript adapter forwards 256 rows at a time, on a CPU at most "
            "2^20 input samples: 24 rows of 12 leads): what that many queries cost in one batch. "
            'Ratio to Occlusion: median / the median of captum Occlusion (`ecglens.baselines.peer("occlusion")`, '
            "0.2-s window, 0.1-s stride) on the same input in the same run; it stays comparable between runs when "
            "the machine's load differs. Target held: median and max against the issue's target for the input's "
            "lead count.",
            "",
        ]
    )


# ------------------------------------------------------------------------------------------------- cli
def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 2:
        raise argparse.ArgumentTypeError(f"query budgets must be integers >= 2, got {text!r}")
    return values


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default=",".join(MODELS), help=f"comma-separated subset of: {', '.join(MODELS)}")
    p.add_argument(
        "--budgets", type=_int_list, default=list(DEFAULT_BUDGETS), help="explain query budgets. Default: 25,100,500"
    )
    p.add_argument("--repeats", type=int, default=5, help="timed calls per row after one warm-up. Default: 5")
    p.add_argument(
        "--peer-repeats",
        type=int,
        default=3,
        help="timed calls of Occlusion and of the bare classifier after one warm-up. Default: 3",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads; 1 is the product default (ECGLENS_TORCH_THREADS). Default: 1",
    )
    p.add_argument(
        "--start-s",
        type=float,
        default=0.0,
        help="start of the 10-s window in MIT-BIH 119, in s (0-10 s holds two PVCs). Default: 0",
    )
    p.add_argument("--seed", type=int, default=0, help="bare-classifier probe-noise seed. Default: 0")
    p.add_argument("--suffix", default="", help="appended to the result file name (e.g. -threads1)")
    p.add_argument("--no-write", action="store_true", help="print only")
    args = p.parse_args(argv)
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in args.models if m not in MODELS]
    if unknown or not args.models:
        p.error(f"unknown model(s) {', '.join(unknown) or '(none given)'}; valid: {', '.join(MODELS)}")
    if min(args.repeats, args.peer_repeats, args.threads) < 1:
        p.error("--repeats, --peer-repeats and --threads must be at least 1")
    return args


def _load(key: str, scratch: Path) -> Any:
    from ecglens import load_classifier

    spec = MODELS[key][0]
    if spec == "untrained-12":
        spec = untrained_model(12, scratch, fs=500.0)
    return load_classifier(spec, device="cpu")


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    import torch

    from ecglens.errors import ClassifierError, RecordError

    torch.set_num_threads(args.threads)
    load_start = os.getloadavg()
    t0 = time.perf_counter()
    rows: list[Row] = []
    sources: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="explain_latency-") as scratch:
        for key in args.models:
            _, folder, name = MODELS[key]
            try:
                ecg, origin = record_window(folder, name, start_s=args.start_s if folder == "mitdb" else 0.0)
                classifier = _load(key, Path(scratch))
            except (ClassifierError, RecordError, ValueError) as exc:
                print(f"explain_latency: error: {key}: {exc}", file=sys.stderr)
                return 2
            sources[key] = origin
            _say(True, f"{key} on {origin}")
            rows += measure_model(
                key,
                ecg,
                classifier,
                args.budgets,
                args.repeats,
                peer_repeats=args.peer_repeats,
                seed=args.seed,
                untrained=MODELS[key][0].startswith("untrained"),
            )
    command = " ".join(
        shlex.quote(a)
        for a in [".venv/bin/python", "benchmarks/explain_latency.py", *(sys.argv[1:] if argv is None else argv)]
    )
    text = report(
        rows,
        command=command,
        threads=args.threads,
        repeats=args.repeats,
        peer_repeats=args.peer_repeats,
        load_start=load_start,
        load_end=os.getloadavg(),
        sources=sources,
        total_s=time.perf_counter() - t0,
    )
    print(text)
    if not args.no_write:
        RESULTS.mkdir(parents=True, exist_ok=True)
        path = RESULTS / f"explain_latency{args.suffix}.md"
        path.write_text(text)
        print(f"written: {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
