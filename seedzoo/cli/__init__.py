"""`seedzoo` command line: a thin layer over the Python API.

Each subcommand lives in its own module of this package and exposes
``register(subparsers)``, which adds its parser and sets ``func`` to a callable
taking the parsed arguments. Heavy imports happen inside those callables so that
``seedzoo --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from seedzoo.errors import SeedzooError

# Order in which subcommands are listed in `seedzoo --help`; modules not named here follow.
_ORDER = ["train", "evaluate", "export", "bench", "hub", "catalog"]


def _command_modules() -> list[str]:
    found = {m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")}
    return [n for n in _ORDER if n in found] + sorted(found - set(_ORDER))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="seedzoo",
        description="Small self-supervised image encoders made by distillation: "
        "train, evaluate, export, publish and load them.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in _command_modules():
        importlib.import_module(f"{__name__}.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result = args.func(args)
    except SeedzooError as error:
        print(f"seedzoo {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as interrupt:  # training stops with the signal's exit code
        detail = f": {interrupt}" if str(interrupt) else ""
        print(f"seedzoo {args.command}: interrupted{detail}", file=sys.stderr)
        return getattr(interrupt, "exit_code", 130)
    return int(result or 0)
