"""``ecglens explain | robustness | train-agent``: the agent's subcommands (registered by ``ecglens.cli``)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from ecglens.errors import RecordError


def register(subparsers: Any) -> None:
    """Add ``explain``, ``robustness`` and ``train-agent`` to the ``ecglens`` command."""
    p = subparsers.add_parser(
        "explain",
        help="explain a classifier's diagnosis of a record",
        description="Critical segments and the minimal realistic distortion that flips the "
        "diagnosis, found by the RL agent.",
    )
    _record_args(p)
    p.add_argument(
        "--budget",
        type=_positive_int,
        default=500,
        metavar="N",
        help="query budget: classifier rows, hard cap (default: 500)",
    )
    p.add_argument("--seed", type=int, default=0, metavar="S", help="noise seed (default: 0)")
    p.add_argument(
        "--start-s",
        type=float,
        default=None,
        metavar="T",
        help="start (s) of the window to explain in a long record (default: the most abnormal one)",
    )
    p.add_argument(
        "--distortions",
        default=None,
        metavar="a,b",
        help="distortion kinds allowed, comma-separated (default: all: baseline_wander, powerline, "
        "muscle, electrode_motion, gaussian)",
    )
    p.add_argument("--segment-s", type=float, default=0.25, metavar="S", help="cell length in s (default: 0.25)")
    p.add_argument("--beat-aligned", action="store_true", help="one cell per QRS complex")
    p.add_argument(
        "--policy",
        default=None,
        metavar="PATH",
        help="who chooses the agent's actions: 'learned' (models/agent_actions.pt; the default for ECG), "
        "'hand' (the fixed order; the default for images and video) or an action policy file",
    )
    p.add_argument("--json", action="store_true", help="print the full Explanation JSON")
    p.add_argument("--out", default=None, metavar="PATH", help="write the full Explanation JSON to PATH")
    p.add_argument(
        "--saliency-png",
        default=None,
        metavar="PATH",
        help="image / video: write the saliency map as a grey PNG (a video's frames side by side)",
    )
    p.add_argument(
        "--patch",
        type=_positive_int,
        default=None,
        metavar="PX",
        help="image / video: patch side in px (default: H / 8)",
    )
    p.set_defaults(func=explain_command)

    p = subparsers.add_parser("robustness", help="SNR at which realistic noise flips the diagnosis")
    _record_args(p)
    p.add_argument("--seed", type=int, default=0, metavar="S", help="noise seed (default: 0)")
    p.add_argument(
        "--start-s",
        type=float,
        default=None,
        metavar="T",
        help="start (s) of the window to test in a long record (default: the most abnormal one)",
    )
    p.add_argument(
        "--distortions",
        default=None,
        metavar="a,b",
        help="distortion kinds to test, comma-separated (default: all five)",
    )
    p.add_argument("--json", action="store_true", help="print the full RobustnessReport JSON")
    p.set_defaults(func=robustness_command)

    p = subparsers.add_parser(
        "train-agent",
        help="train the agent's policy with PPO on MIT-BIH DS1",
        description="PPO training of the cell-ranking policy against a classifier on MIT-BIH DS1 windows (never DS2).",
    )
    p.add_argument("--model", default="builtin", metavar="SPEC", help="classifier to train against (default: builtin)")
    p.add_argument("--data", default=None, metavar="DIR", help="MIT-BIH folder (default: ../shared/data/mitdb)")
    p.add_argument("--out", default=None, metavar="PATH", help="policy file (default: models/agent_policy.pt)")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="seed (default: 0)")
    p.add_argument(
        "--steps",
        type=_positive_int,
        default=200_000,
        metavar="N",
        help="environment steps, all episodes together (default: 200000, about 20 min on one core)",
    )
    p.add_argument(
        "--minutes",
        type=float,
        default=25.0,
        metavar="N",
        help="wall-time safety cap; the card records the steps done (default: 25)",
    )
    p.add_argument("--n-envs", type=_positive_int, default=16, metavar="N", help="parallel episodes (default: 16)")
    p.add_argument(
        "--records",
        default=None,
        metavar="a,b",
        help="DS1 records to train on, comma-separated (default: DS1 minus the held-out 119, 208, 215, 223)",
    )
    p.set_defaults(func=train_agent_command)


def _record_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "record",
        metavar="RECORD",
        help="record file (WFDB .hea, EDF, CSV, JSON, DICOM, aECG XML, .zip); for an image or video classifier an "
        "image file (PNG, JPEG, ...) or a .npy array",
    )
    p.add_argument(
        "record_files", nargs="*", metavar="RECORD_FILES", help="further files of the same record (e.g. the WFDB .dat)"
    )
    p.add_argument(
        "--model",
        default="builtin",
        metavar="SPEC",
        help="classifier: builtin, a .pt / .onnx file or an http(s):// endpoint (default: builtin)",
    )


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def read_cli_record(record: str, files: list[str]):
    """The `Ecg` named on the command line. A WFDB record may be given by its name without ``.hea``;
    several files are read together as one upload. Raises `RecordError` naming the file."""
    from ecglens import read_record

    paths = [Path(record), *(Path(f) for f in files)]
    if not paths[0].exists() and paths[0].with_suffix(".hea").exists() and not files:
        paths[0] = paths[0].with_suffix(".hea")
    for path in paths:
        if not path.exists():
            raise RecordError(str(path), "no such file")
        if path.is_dir():
            raise RecordError(str(path), "is a folder, not a record file")
    if len(paths) == 1:
        return read_record(paths[0])
    try:
        named = {p.name: p.read_bytes() for p in paths}
    except OSError as exc:
        raise RecordError(str(exc.filename or paths[0]), exc.strerror or str(exc)) from None
    return read_record(named, filename=paths[0].name)


def explain_command(args: argparse.Namespace) -> int:
    from ecglens import load_classifier
    from ecglens.agent.explain import explain
    from ecglens.vision.io import is_vision_file

    if is_vision_file(args.record):
        return _explain_vision_command(args)
    ecg = read_cli_record(args.record, args.record_files)
    classifier = load_classifier(args.model)
    result = explain(
        ecg,
        classifier,
        distortions=args.distortions,
        query_budget=args.budget,
        seed=args.seed,
        start_s=args.start_s,
        segment_s=args.segment_s,
        beat_aligned=args.beat_aligned,
        policy=args.policy,
    )
    return _emit(result, args, lambda: _explanation_summary(result, ecg.name or args.record))


def _explain_vision_command(args: argparse.Namespace) -> int:
    """``ecglens explain IMAGE.png|ARRAY.npy --model M``: the same agent on an image or video classifier."""
    from ecglens import load_classifier
    from ecglens.agent.explain import explain
    from ecglens.vision.io import read_input, write_saliency_png

    classifier = load_classifier(args.model)
    modality = getattr(classifier, "modality", "ecg")
    if modality not in ("image", "video"):
        raise RecordError(
            args.record, f"an image or array file needs an image or video classifier; {args.model} is an ECG one"
        )
    x, notes = read_input(args.record, classifier.input_shape)
    result = explain(
        x,
        classifier,
        distortions=args.distortions,
        query_budget=args.budget,
        seed=args.seed,
        policy=args.policy,
        patch=args.patch,
    )
    result.extra["input_notes"] = notes
    if args.saliency_png:
        write_saliency_png(result.saliency, args.saliency_png)
    return _emit(result, args, lambda: _vision_summary(result, args.record, notes))


def _emit(result: Any, args: argparse.Namespace, summary: Any) -> int:
    """Write the explanation to ``--out``, then print it as JSON (``--json``) or as ``summary()``."""
    if args.out:
        _write_json(result.to_dict(), args.out)
    if args.json:
        json.dump(result.to_dict(), sys.stdout)
        sys.stdout.write("\n")
    else:
        print(summary())
    return 0


def _outcome_lines(result: Any, ecg: bool) -> list[str]:
    """The summary lines every modality shares: diagnosis, who chose the actions, queries, the flip (an ECG's
    with its findings, SNR and L2 in mV; an image's or video's with its PSNR)."""
    d = result.diagnosis
    probs = ", ".join(f"{k} {v:.2f}" for k, v in d.probabilities.items())
    findings = f"findings: {', '.join(d.findings) or 'none'}; " if ecg else ""
    lines = [
        f"diagnosis: {d.label} ({findings}{probs})",
        f"method: {result.method}" + (f" (fallback: {result.fallback_reason})" if result.fallback_reason else ""),
        f"queries: {result.queries}, elapsed: {result.elapsed_s:.2f} s",
    ]
    adv = result.adversarial
    if adv is None:
        lines.append("no flip found within the query budget")
    else:
        lines.append(
            f"flipped to {adv.label} at {'SNR' if ecg else 'PSNR'} {adv.snr_db:.1f} dB"
            + (f" (L2 {adv.l2:.3f} mV)" if ecg else "")
        )
    return lines


def _vision_summary(result: Any, name: str, notes: list[str]) -> str:
    grid = result.extra.get("grid", {})
    lines = [f"{result.modality} {name}: shape {grid.get('shape')}, patches {grid.get('patch')} px"]
    lines += [f"note: {n}" for n in notes]
    lines += _outcome_lines(result, ecg=False)
    lines.append(
        "top patches (" + ("frames, " if result.modality == "video" else "") + "rows, cols px, score, distortion):"
    )
    for r in result.extra.get("regions", [])[:10]:
        frames = f"t {r['t0']}-{r['t1']}  " if "t0" in r else ""
        lines.append(f"  {frames}y {r['y0']}-{r['y1']}  x {r['x0']}-{r['x1']}  {r['score']:.2f}  {r['distortion']}")
    if not result.extra.get("regions"):
        lines.append("  none")
    return "\n".join(lines)


def _write_json(data: dict, path: str) -> None:
    try:
        Path(path).write_text(json.dumps(data) + "\n")
    except OSError as exc:
        raise RecordError(path, f"cannot write ({exc.strerror or exc})") from None


def _explanation_summary(result: Any, name: str) -> str:
    lines = [f"record {name}: window {result.start_s:.2f} s, {len(result.leads)} leads at {result.fs:g} Hz"]
    lines += _outcome_lines(result, ecg=True)
    lines.append("critical segments (lead, start-end s, score, distortion):")
    for s in result.segments[:10]:
        lines.append(f"  {s.lead:>5} {s.start_s:7.2f}-{s.end_s:<7.2f} {s.score:.2f}  {s.distortion}")
    if not result.segments:
        lines.append("  none")
    return "\n".join(lines)


def robustness_command(args: argparse.Namespace) -> int:
    from ecglens import load_classifier, robustness

    ecg = read_cli_record(args.record, args.record_files)
    classifier = load_classifier(args.model)
    report = robustness(ecg, classifier, seed=args.seed, start_s=args.start_s, distortions=args.distortions)
    if args.json:
        json.dump(report.to_dict(), sys.stdout)
        sys.stdout.write("\n")
        return 0
    print(
        f"record {ecg.name or args.record}: {report.label}, robustness score {report.score:.2f} "
        f"({report.queries} queries, {report.elapsed_s:.2f} s)"
    )
    for d in report.distortions:
        flip = "holds at every level" if d.flip_snr_db is None else f"flips at {d.flip_snr_db:g} dB"
        print(f"  {d.distortion:>16}: {flip}")
    return 0


def train_agent_command(args: argparse.Namespace) -> int:
    from ecglens.agent.train import train_agent

    t0 = time.perf_counter()

    def log(row: dict[str, float]) -> None:
        flip = row.get("rollout/flip_rate")
        print(
            f"  steps {int(row['time/steps']):>8}  {row['time/elapsed_s']:7.0f} s  reward "
            f"{row['rollout/reward_mean']:+.3f}  flip rate {'-' if flip is None else f'{flip:.2f}'}",
            flush=True,
        )

    out = train_agent(
        args.model,
        data_dir=args.data,
        out=args.out,
        seed=args.seed,
        minutes=args.minutes,
        steps=args.steps,
        n_envs=args.n_envs,
        records=args.records.split(",") if args.records else None,
        log=log,
    )
    print(f"policy written to {out} (card {out.with_suffix('.json')}) in {time.perf_counter() - t0:.0f} s")
    return 0
