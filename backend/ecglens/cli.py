"""The ``ecglens`` command: ``serve | explain | robustness | screen | harden | train-classifier | train-agent |
train-zoo | train-vision-zoo | train-actions | create-key | audit``.

Each subcommand lives beside the code it drives: a module in `COMMAND_MODULES` exposes
``register(subparsers)``, which adds its parsers and sets ``func`` on them. Bad input ends with a one-line
message naming the file and what is wrong (exit 2), never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from ecglens.errors import ClassifierError, RecordError
from ecglens.threads import configure_torch_threads

COMMAND_MODULES = (
    "ecglens.service.cli",  # serve, create-key, audit verify
    "ecglens.classifiers.cli",  # train-classifier
    "ecglens.agent.cli",  # explain, robustness, train-agent
    "ecglens.hardening.cli",  # harden
    "ecglens.screening",  # screen
    "ecglens.classifiers.zoo",  # train-zoo
    "ecglens.classifiers.vision_zoo",  # train-vision-zoo
    "ecglens.agent.train_actions",  # train-actions
)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command; with ``command``, modules are imported in order only until one registers
    it, so ``ecglens serve`` never imports the training commands (and torch with them, ~180 MB)."""
    parser = argparse.ArgumentParser(prog="ecglens", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
        if command is not None and command in sub.choices:
            break
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv[0] if argv and not argv[0].startswith("-") else None)
    args = parser.parse_args(argv)
    try:
        configure_torch_threads()  # commands with a --threads option set their own afterwards
        return int(args.func(args) or 0)
    except (RecordError, ClassifierError, FileNotFoundError, KeyError, ValueError) as exc:
        print(f"ecglens {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
