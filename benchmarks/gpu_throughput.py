"""Classifier throughput on CPU and CUDA: records per second for 2-lead and 12-lead inputs at several batch sizes.

What a worker does per agent step is one batched ``predict_proba`` over all the probes of that step (the record
with different segments distorted). This script times exactly that call, through the same adapter the worker uses
(``ecglens.load_classifier(spec, device=...)``), for every shipped model, at batch sizes 1 ... 512, on the CPU
and, when torch sees one, on the GPU. A lead layout (2 or 12 leads) that no shipped model takes is covered by the
built-in architecture (``resnet1d``) with that many input leads and untrained weights, saved as TorchScript with a
card at the built-in model's rate and window: a forward pass costs the same whatever the weights.

The rows of a batch are one real record (MIT-BIH 101 (MLII, V1) for 2 leads, CinC 2021 E07500 for 12 leads, read from
``../shared/data``; a neurokit2 simulation when that folder is absent), fitted to the model's rate and leads,
each row with its own Gaussian probe noise at 20 dB SNR from a seeded generator (so no two rows are equal and
runs repeat). Timing: ``--warmup`` calls, then calls until ``--min-time`` seconds have passed; ms/call = the
median call's wall time, records/s = batch / that median (the median resists other load on a shared machine;
``predict_proba`` returns NumPy, so CUDA work is synchronised inside each timed call).

Usage::

    .venv/bin/python benchmarks/gpu_throughput.py                       # all shipped models, cpu (+ cuda)
    .venv/bin/python benchmarks/gpu_throughput.py --models builtin --batch-sizes 1,32,256 --devices cpu
    .venv/bin/python benchmarks/gpu_throughput.py --untrained 2,12       # architecture only, no trained model

Prints a Markdown table and writes it to ``benchmarks/results/gpu_throughput-<device>-<YYYY-MM-DD>.md``
(``<device>`` is ``cpu`` or ``cuda-<gpu name>``, the fastest device measured).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
# One real record per lead layout: (folder, record name).
RECORDS = {2: ("mitdb", "101"), 12: ("cinc2021", "E07500")}
DEFAULT_BATCH_SIZES = (1, 8, 32, 128, 512)


@dataclass(frozen=True)
class Row:
    """One measurement: ``records_per_s`` rows answered per second at ``batch`` rows per call."""

    model: str
    leads: int
    input_shape: str
    device: str
    batch: int
    calls: int
    ms_per_call: float
    records_per_s: float
    source: str


def source_ecg(n_leads: int, seconds: float):
    """A real record with ``n_leads`` leads (or a simulated one when ../shared/data is absent) and its origin.

    Parameters
    ----------
    n_leads : int
        2 (MLII, V1 at 360 Hz) or 12 (standard leads at 500 Hz); any other count is simulated.
    seconds : float
        Length wanted, in s (real records are cut to it).

    Returns
    -------
    (Ecg, str)
        The record (float32 ``[leads, samples]`` in mV) and a description of where it came from.
    """
    from ecglens.ecg import STANDARD_12, Ecg

    folder, name = RECORDS.get(n_leads, (None, None))
    if folder and (SHARED_DATA / folder / f"{name}.hea").exists():
        import wfdb

        rec = wfdb.rdrecord(str(SHARED_DATA / folder / name))
        n = min(rec.sig_len, int(round(seconds * rec.fs)))
        signal = np.nan_to_num(rec.p_signal[:n].T.astype(np.float32))
        ecg = Ecg(signal=signal, fs=float(rec.fs), leads=tuple(rec.sig_name), name=name)
        return ecg, f"{folder}/{name}"
    import neurokit2 as nk

    fs = 360.0 if n_leads == 2 else 500.0
    if n_leads == 12:
        frame = nk.ecg_simulate(duration=seconds, sampling_rate=int(fs), method="multileads", random_state=0)
        signal = frame[list(STANDARD_12)].to_numpy(dtype=np.float32).T
        leads = STANDARD_12
    else:
        signal = np.stack(
            [nk.ecg_simulate(duration=seconds, sampling_rate=int(fs), random_state=i) for i in range(n_leads)]
        ).astype(np.float32)
        leads = ("MLII", "V1")[:n_leads] if n_leads <= 2 else tuple(STANDARD_12[:n_leads])
    return Ecg(signal=signal, fs=fs, leads=leads, name="simulated"), "neurokit2 simulation"


def probe_batch(window: np.ndarray, batch: int, rng: np.random.Generator, snr_db: float = 20.0) -> np.ndarray:
    """``batch`` copies of one input ``[leads, samples]``, each with its own Gaussian noise at ``snr_db`` dB.

    Returns float32 ``[batch, leads, samples]`` in mV, like the probes of one agent step.
    """
    power = float(np.mean(window.astype(np.float64) ** 2)) or 1e-6
    sigma = np.sqrt(power / 10 ** (snr_db / 10))
    noise = rng.standard_normal((batch,) + window.shape, dtype=np.float32) * np.float32(sigma)
    return window[None] + noise


def time_calls(classifier, batch: np.ndarray, warmup: int, min_time_s: float, max_calls: int) -> np.ndarray:
    """Seconds per ``classifier.predict_proba(batch)`` call: ``warmup`` calls untimed (TorchScript optimises a
    shape after its first runs), then calls until ``min_time_s`` s have passed (at least 5, at most
    ``max_calls``). Returns float64 ``[calls]``."""
    for _ in range(warmup):
        classifier.predict_proba(batch)
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < 5 or (time.perf_counter() - start < min_time_s and len(times) < max_calls):
        t0 = time.perf_counter()
        classifier.predict_proba(batch)
        times.append(time.perf_counter() - t0)
    return np.asarray(times)


def shipped_models() -> list[str]:
    """Names of the models in ``models/`` that have a card beside them (``builtin`` first)."""
    from ecglens.classifiers import models_dir

    names = sorted(
        {p.stem for p in models_dir().glob("*") if p.suffix in (".pt", ".onnx") and p.with_suffix(".json").exists()}
    )
    return sorted(names, key=lambda n: (n != "builtin", n))


def untrained_model(n_leads: int, folder: Path, fs: float = 360.0, window_s: float = 10.0, n_classes: int = 4) -> str:
    """The built-in architecture with ``n_leads`` inputs and untrained (seeded) weights, as TorchScript + card.

    Returns the ``.pt`` path (a `load_classifier` spec). The card takes the standard 12 leads (or MLII, V1 for 2)
    at ``fs`` Hz for ``window_s`` s, and says the outputs are logits.
    """
    import json

    import torch

    from ecglens.classifiers.train import build_network
    from ecglens.ecg import STANDARD_12

    torch.manual_seed(0)
    net = build_network("resnet1d", n_leads=n_leads, n_classes=n_classes).eval()
    samples = int(round(fs * window_s))
    with torch.inference_mode():
        scripted = torch.jit.trace(net, torch.zeros(1, n_leads, samples))
    path = folder / f"resnet1d-untrained-{n_leads}lead.pt"
    scripted.save(str(path))
    leads = ["MLII", "V1"] if n_leads == 2 else list(STANDARD_12[:n_leads])
    card = {
        "name": path.stem,
        "classes": [f"class{i}" for i in range(n_classes)],
        "sampling_rate": fs,
        "leads": leads,
        "window_s": window_s,
        "output": "logits",
        "description": "timing only: the built-in architecture with untrained weights",
    }
    path.with_suffix(".json").write_text(json.dumps(card))
    return str(path)


def cuda_name() -> str | None:
    """The first GPU's name when torch sees CUDA, else None."""
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def measure(
    specs: list[str],
    devices: list[str],
    batch_sizes: list[int],
    *,
    warmup: int,
    min_time_s: float,
    max_calls: int,
    seed: int,
) -> tuple[list[Row], dict[str, float]]:
    """Times every (model, device, batch size); models are loaded once per device with one forward per call.

    Returns the rows and, per model measured on more than one device, the largest absolute difference between
    the devices' probabilities for the same 32 probes (the GPU path must answer what the CPU answers).
    """
    from ecglens import load_classifier
    from ecglens.classifiers.fit import windows

    rows: list[Row] = []
    agreement: dict[str, float] = {}
    for spec in specs:
        answers: list[np.ndarray] = []
        for device in devices:
            # batch_size = the largest batch: every call is one forward pass, as one agent step should be.
            clf = load_classifier(spec, device=device, batch_size=max(batch_sizes))
            n_leads = len(clf.lead_names)
            ecg, origin = source_ecg(n_leads, seconds=max(10.0, clf.window_s))
            window = windows(ecg, clf)[0][0]
            answers.append(clf.predict_proba(probe_batch(window, 32, np.random.default_rng(seed))))
            for b in batch_sizes:
                rng = np.random.default_rng(seed)
                batch = probe_batch(window, b, rng)
                times = time_calls(clf, batch, warmup, min_time_s, max_calls)
                median = float(np.median(times))
                rows.append(
                    Row(
                        model=_label(spec),
                        leads=n_leads,
                        input_shape=f"{n_leads}x{window.shape[1]}",
                        device=str(getattr(clf, "device", device)),
                        batch=b,
                        calls=len(times),
                        ms_per_call=1000 * median,
                        records_per_s=b / median,
                        source=origin,
                    )
                )
                print(
                    f"  {spec:>14} {rows[-1].device:>6} batch {b:>4}: {rows[-1].records_per_s:10.1f} records/s",
                    file=sys.stderr,
                )
            del clf
        if len(answers) > 1:
            agreement[_label(spec)] = max(float(np.max(np.abs(a - answers[0]))) for a in answers[1:])
    return rows, agreement


def _label(spec: str) -> str:
    return Path(spec).stem if spec.endswith((".pt", ".onnx")) else spec


def markdown(rows: list[Row], *, threads: int, note: str, agreement: dict[str, float] | None = None) -> str:
    """The results as a Markdown document: context lines, then one table row per measurement."""
    import torch

    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())

    cpu = platform.processor() or platform.machine()
    try:
        text = Path("/proc/cpuinfo").read_text()
        cpu = re.search(r"model name\s*:\s*(.+)", text).group(1).strip()
    except (OSError, AttributeError):
        pass
    gpu = cuda_name()
    lines = [
        f"# Classifier throughput ({dt.date.today().isoformat()})",
        "",
        "`benchmarks/gpu_throughput.py`: records/s through `load_classifier(spec, device=...).predict_proba` "
        "with one forward pass per call (the batched probes of one agent step).",
        "",
        f"- CPU: {cpu} ({os.cpu_count()} cores); torch {torch.__version__}, {threads} intra-op thread(s); "
        f"load average at the end {load}",
        f"- GPU: {gpu or 'none available (torch.cuda.is_available() is False)'}",
        f"- {note}",
        "",
        "`resnet1d-untrained-<n>lead`: the built-in architecture with n input leads and untrained weights "
        "(timing only; a forward pass costs the same whatever the weights).",
        "",
        "| model | leads | input [leads x samples] | device | batch | calls | median ms / call | records / s | record |",
        "|---|---:|---|---|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.model} | {r.leads} | {r.input_shape} | {r.device} | {r.batch} | {r.calls} | "
            f"{r.ms_per_call:.2f} | {r.records_per_s:.1f} | {r.source} |"
        )
    if agreement:
        lines += [
            "",
            "Same 32 probes on every device, largest |p(device) - p(cpu)|: "
            + ", ".join(f"{name} {diff:.2e}" for name, diff in agreement.items()),
        ]
    return "\n".join(lines) + "\n"


def _int_list(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"batch sizes must be positive integers, got {text!r}")
    return values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models",
        default="",
        help="comma-separated model specs (default: every model in "
        "models/ with a card, e.g. builtin and the 12-lead model)",
    )
    parser.add_argument(
        "--untrained",
        default=None,
        help="comma-separated lead counts to time with the built-in architecture, untrained "
        "(default: 2 and/or 12, whichever no shipped model takes)",
    )
    parser.add_argument(
        "--devices", default="", help="comma-separated: cpu, cuda (default: cpu, and cuda when torch sees a GPU)"
    )
    parser.add_argument(
        "--batch-sizes",
        type=_int_list,
        default=list(DEFAULT_BATCH_SIZES),
        help="rows per call. Default: 1,8,32,128,512",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (more than the idle cores stalls "
        "intra-op threads for whole time slices on a shared machine). Default: 1",
    )
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls per cell first. Default: 3")
    parser.add_argument("--min-time", type=float, default=1.0, help="seconds timed per cell. Default: 1.0")
    parser.add_argument("--max-calls", type=int, default=200, help="timed calls at most per cell. Default: 200")
    parser.add_argument("--seed", type=int, default=0, help="probe-noise seed. Default: 0")
    parser.add_argument(
        "--out",
        type=Path,
        default=REPO / "benchmarks" / "results",
        help="folder for the Markdown table. Default: benchmarks/results",
    )
    args = parser.parse_args(argv)

    import torch

    from ecglens import load_classifier
    from ecglens.errors import ClassifierError

    torch.set_num_threads(args.threads)
    specs = [s.strip() for s in args.models.split(",") if s.strip()] or shipped_models()
    try:
        if args.untrained is None:
            covered = {len(load_classifier(s, device="cpu").lead_names) for s in specs}
            untrained = [n for n in (2, 12) if n not in covered]
        else:
            untrained = [int(n) for n in args.untrained.split(",") if n.strip()]
    except (ClassifierError, ValueError) as exc:
        print(f"gpu_throughput: error: {exc}", file=sys.stderr)
        return 2
    scratch = tempfile.TemporaryDirectory(prefix="gpu_throughput-")
    specs += [untrained_model(n, Path(scratch.name)) for n in untrained]
    if not specs:
        print(
            "gpu_throughput: error: nothing to time (no --models, no shipped model, --untrained empty)", file=sys.stderr
        )
        return 2
    devices = [d.strip() for d in args.devices.split(",") if d.strip()]
    if not devices:
        devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    if any(d.startswith("cuda") for d in devices) and not torch.cuda.is_available():
        print("gpu_throughput: error: --devices asks for cuda but torch sees no GPU", file=sys.stderr)
        return 2
    try:
        rows, agreement = measure(
            specs,
            devices,
            args.batch_sizes,
            warmup=args.warmup,
            min_time_s=args.min_time,
            max_calls=args.max_calls,
            seed=args.seed,
        )
    except (ClassifierError, KeyError) as exc:
        print(f"gpu_throughput: error: {exc}", file=sys.stderr)
        return 2
    gpu = cuda_name() if any(r.device.startswith("cuda") for r in rows) else None
    note = (
        "Measured on CUDA and CPU."
        if gpu
        else "No GPU was available for this run: CPU only. Run the same command on a CUDA machine for the GPU rows."
    )
    text = markdown(rows, threads=args.threads, note=note, agreement=agreement)
    print(text)
    slug = "cuda-" + re.sub(r"[^a-z0-9]+", "-", gpu.lower()).strip("-") if gpu else "cpu"
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"gpu_throughput-{slug}.md"
    path.write_text(text)
    print(f"wrote {path.relative_to(REPO) if path.is_relative_to(REPO) else path}", file=sys.stderr)
    scratch.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
