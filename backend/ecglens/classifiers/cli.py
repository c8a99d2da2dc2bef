"""``ecglens train-classifier``: train the built-in (or a transfer) classifier on MIT-BIH DS1 and report DS2."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import torch

from ecglens.classifiers import load_classifier, models_dir
from ecglens.classifiers.card import ModelCard, card_path_for
from ecglens.classifiers.evaluate import format_table
from ecglens.classifiers.train import (
    ARCH_EPOCHS,
    TrainConfig,
    ds2_metrics,
    export_onnx,
    export_torchscript,
    save_model,
    split_ds1,
    train_classifier,
)
from ecglens.classifiers.train_anylead import (
    LOCAL_RHYTHM,
    AnyLeadConfig,
    build_anylead_card,
    cinc2021_metrics,
    ds2_lead_set_metrics,
    load_base,
    train_anylead,
)
from ecglens.datasets.mitdb import default_data_dir


def _default_out(arch: str) -> Path:
    return models_dir() / ("builtin.pt" if arch == "anylead" else f"transfer_{arch}.pt")


def _compare(card_metrics: dict[str, Any], fresh: dict[str, Any], tol: float = 1e-3) -> list[str]:
    """Differences between the card's DS2 figures and freshly computed ones (empty when they agree)."""
    diffs = []
    for cls, m in fresh.items():
        for key, value in m.items():
            old = card_metrics.get(cls, {}).get(key)
            if value is None or old is None:
                if value != old:
                    diffs.append(f"{cls} {key}: card {old}, now {value}")
            elif abs(float(value) - float(old)) > tol:
                diffs.append(f"{cls} {key}: card {old}, now {value}")
    return diffs


def train_classifier_command(args: argparse.Namespace) -> int:
    if args.threads is None:
        args.threads = 1 if args.arch == "anylead" else 2
    torch.set_num_threads(args.threads)
    out = Path(args.out) if args.out else _default_out(args.arch)
    if args.evaluate_only:
        clf = load_classifier(out, device="cpu")
        fresh = ds2_metrics(clf, args.data)
        print(f"{out}: MIT-BIH DS2, non-overlapping 10-s windows")
        print(format_table(fresh))
        diffs = _compare(ModelCard.load(card_path_for(out)).metrics.get("ds2", {}), fresh)
        print("matches the model card" if not diffs else "DIFFERS from the model card:\n  " + "\n  ".join(diffs))
        return 0 if not diffs else 1
    if args.arch == "anylead":
        return _train_anylead(args, out)
    config = TrainConfig(
        arch=args.arch,
        seed=args.seed,
        threads=args.threads,
        epochs=args.epochs or ARCH_EPOCHS.get(args.arch, TrainConfig.epochs),
    )
    t0 = time.perf_counter()
    train_spans, val_spans = split_ds1(args.data)
    result = train_classifier(train_spans, val_spans, config)
    print(f"trained in {result.train_seconds:.0f} s ({time.perf_counter() - t0:.0f} s with data loading)")
    # DS2 is looked at once, after training, calibration and thresholds are fixed.
    save_model(result, out, None)
    clf = load_classifier(out, device="cpu")
    metrics = ds2_metrics(clf, args.data)
    card = save_model(result, out, metrics)
    print(format_table(metrics))
    if args.onnx or args.arch == "gru":
        onnx_path = out.with_suffix(".onnx")
        export_onnx(result.model, onnx_path, torch.zeros(1, len(config.leads), int(config.window_s * config.fs)))
        card.save(card_path_for(onnx_path))  # same stem: the .pt and .onnx share one card
        print(f"wrote {onnx_path}")
    print(f"wrote {out} and {card_path_for(out)}")
    return 0


def _train_anylead(args: argparse.Namespace, out: Path) -> int:
    """The built-in: `train_anylead`, then DS2 per lead set and the CinC 2021 check (when its folder exists)."""
    recipe = LOCAL_RHYTHM if getattr(args, "recipe", "builtin") == "local-rhythm" else {}
    config = AnyLeadConfig(
        seed=args.seed,
        threads=args.threads,
        epochs=args.epochs or AnyLeadConfig.epochs,
        beat_head=getattr(args, "beat_head", False),
        **recipe,  # type: ignore
    )
    t0 = time.perf_counter()
    train_spans, val_spans = split_ds1(args.data)
    base = load_base(args.base) if getattr(args, "base", None) else None
    result = train_anylead(train_spans, val_spans, config, base=base)
    print(f"trained in {result.train_seconds:.0f} s ({time.perf_counter() - t0:.0f} s with data loading)")
    for lead_set, figures in result.val_metrics.items():
        print(f"DS1 validation, {lead_set}\n{format_table(figures)}")
    # DS2 and CinC are looked at once, after training, calibration and thresholds are fixed.
    export_torchscript(result.model, out)
    build_anylead_card(out.stem, result, None).save(card_path_for(out))
    clf = load_classifier(out, device="cpu")
    ds2 = ds2_lead_set_metrics(clf, args.data)
    for lead_set, figures in ds2.items():
        print(f"DS2, {lead_set}\n{format_table(figures)}")
    cinc_dir = Path(args.cinc) if args.cinc else Path(args.data or default_data_dir()).parent / "cinc2021"
    cinc = cinc2021_metrics(clf, cinc_dir) if any(cinc_dir.glob("*.hea")) else None
    if cinc:
        print(f"CinC 2021, {cinc['records']} 12-lead records\n{format_table(cinc['figures'])}")
    build_anylead_card(out.stem, result, ds2, cinc).save(card_path_for(out))
    print(f"wrote {out} and {card_path_for(out)}")
    return 0


def register(subparsers: Any) -> None:
    """Add ``train-classifier`` to the ``ecglens`` command."""
    p = subparsers.add_parser(
        "train-classifier", help="train the built-in classifier on MIT-BIH DS1, report DS2", description=__doc__
    )
    p.add_argument("--data", default=None, help="folder with the MIT-BIH records (default: ../shared/data/mitdb)")
    p.add_argument(
        "--out",
        default=None,
        help="TorchScript output; its card goes beside it (default: models/builtin.pt for anylead, "
        "models/transfer_<arch>.pt for other architectures)",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument(
        "--arch",
        default="anylead",
        choices=["anylead", "resnet1d", "gru"],
        help="architecture (default: anylead, the built-in; resnet1d: the former 2-lead built-in)",
    )
    p.add_argument(
        "--cinc",
        default=None,
        help="folder of CinC 2021 records for the out-of-database check (default: cinc2021 beside --data)",
    )
    p.add_argument(
        "--recipe",
        default="builtin",
        choices=["builtin", "local-rhythm"],
        help="anylead recipe (default: builtin, the committed model's; local-rhythm: train_anylead.LOCAL_RHYTHM)",
    )
    p.add_argument("--epochs", type=int, default=None, help="epochs of 100 steps (default: the recipe's)")
    p.add_argument(
        "--base",
        default=None,
        help="anylead: start from the calibrated network of this built-in file (e.g. models/builtin.pt) instead "
        "of training one; thresholds and the supraventricular beat head are fitted again (default: train)",
    )
    p.add_argument(
        "--beat-head",
        action="store_true",
        help="anylead: add the supraventricular beat head (beat_rhythm.WithBeatHead; not in the committed built-in)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (default: 1 for anylead, as it was trained; 2 for the others)",
    )
    p.add_argument("--onnx", action="store_true", help="also export an ONNX copy (always for non-resnet1d)")
    p.add_argument(
        "--evaluate-only",
        action="store_true",
        help="load the model at --out, recompute its DS2 figures and compare them with its card",
    )
    p.set_defaults(func=train_classifier_command)
