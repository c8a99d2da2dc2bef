"""``ecglens harden``: the command-line front of `harden` (``register`` adds it to the ``ecglens`` command)."""

from __future__ import annotations

import argparse
from typing import Any

from ecglens.classifiers.card import card_path_for
from ecglens.hardening.config import THRESHOLD_RULES, HardenConfig
from ecglens.hardening.trainer import harden


def harden_command(args: argparse.Namespace) -> int:
    """Run ``ecglens harden``: `harden` with the options' recipe, then print the DS1 validation AUC per class of
    parent and hardened model, clean and noisy. Returns 0."""
    config = HardenConfig(seed=args.seed, threads=args.threads)
    if args.epochs:
        config.epochs = args.epochs
    if args.agent_windows is not None:
        config.agent_windows = args.agent_windows
    if args.soup is not None:
        config.soup = max(1, args.soup)
    config.thresholds = args.thresholds
    if args.highpass_hz is not None:
        config.highpass_hz = max(0.0, args.highpass_hz)
    hold_out = [r.strip() for r in (args.hold_out or "").split(",") if r.strip()]
    card = harden(args.model, args.out, data_dir=args.data, config=config, hold_out=hold_out)
    before = card.metrics["ds1_validation_parent"]
    after = card.metrics["ds1_validation"]
    noisy_before = card.metrics["ds1_validation_noisy_parent"]
    noisy_after = card.metrics["ds1_validation_noisy"]
    print(f"{'DS1 validation AUC':<30} {'parent':>8} {'hardened':>9} {'noisy parent':>13} {'noisy hardened':>15}")
    for cls in card.classes:

        def f(m: dict, cls: str = cls) -> str:
            v = m.get(cls, {}).get("auc")
            return "-" if v is None else f"{v:.4f}"

        print(f"{cls:<30} {f(before):>8} {f(after):>9} {f(noisy_before):>13} {f(noisy_after):>15}")
    print(
        f"wrote {args.out} and {card_path_for(args.out)} ({card.training['timing_s']['total']:.0f} s); "
        f"DS2 before/after: .venv/bin/python benchmarks/hardening.py --hardened {args.out}"
    )
    return 0


def register(subparsers: Any) -> None:
    """Add ``harden`` to the ``ecglens`` command."""
    p = subparsers.add_parser(
        "harden",
        help="fine-tune a classifier on noise and the agent's flips (DS1)",
        description="Fine-tune a classifier (built-in or TorchScript) on its MIT-BIH DS1 "
        "training data mixed with realistic noise at the NSTDB SNR levels and "
        "the agent's minimal flipping distortions, original labels kept; "
        "recalibrate on DS1 validation; write the new model and its card.",
    )
    p.add_argument(
        "--model",
        default="builtin",
        help="parent: 'builtin', a model name under models/, or a TorchScript .pt (default: builtin)",
    )
    p.add_argument("--data", default=None, help="folder with the MIT-BIH records (default: ../shared/data/mitdb)")
    p.add_argument("--out", required=True, help="the hardened TorchScript file; its card goes beside it (.json)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--epochs", type=int, default=None, help="epochs of 100 steps (default: the recipe's, 6)")
    p.add_argument(
        "--agent-windows",
        type=int,
        default=None,
        help="DS1 training windows the agent explains for the pool (default: 64; 0 = noise only)",
    )
    p.add_argument(
        "--highpass-hz",
        type=float,
        default=None,
        help="cut-off of the linear-phase FIR high-pass front end (default: the recipe's; 0 = none)",
    )
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: 1)")
    p.add_argument(
        "--thresholds",
        choices=THRESHOLD_RULES,
        default="parent",
        help="keep the parent's operating thresholds, or re-pick them on DS1 validation (default: parent)",
    )
    p.add_argument(
        "--soup",
        type=int,
        default=None,
        help="fine-tunes (seeds seed, seed+1, ...) whose weights are averaged (default: the recipe's, 2)",
    )
    p.add_argument(
        "--hold-out",
        default=None,
        help="comma-separated DS1 records to leave out of hardening, for recipe experiments that "
        "validate on them (default: none)",
    )
    p.set_defaults(func=harden_command)
