"""`seedzoo` command line: a thin layer over the Python API.

Each command lives in the module of this package named exactly as the command
(``seedzoo eval`` in ``eval.py``); modules starting with ``_`` are helpers. A module
exposes ``register(subparsers)``, which adds the parser named after the module with
:func:`~seedzoo.cli._arguments.add_command` and sets ``func`` to a callable taking
the parsed arguments. Seedzoo imports happen inside those callables, and option
defaults taken from the library are :class:`~seedzoo.cli._arguments.LibraryDefault`
values, read when first needed, so that ``seedzoo --help`` imports no torch.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from seedzoo.cli._arguments import resolve_defaults
from seedzoo.errors import SeedzooError, user_message

# Order in which subcommands are listed in `seedzoo --help`; modules not named here follow.
_ORDER = ["train", "eval", "embed", "export", "bench", "push", "pull", "list", "catalog"]


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
    args = resolve_defaults(build_parser().parse_args(argv))
    try:
        result = args.func(args)
    except SeedzooError as error:
        print(f"seedzoo {args.command_name}: error: {user_message(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as interrupt:  # training stops with the signal's exit code
        detail = f": {interrupt}" if str(interrupt) else ""
        print(f"seedzoo {args.command_name}: interrupted{detail}", file=sys.stderr)
        return getattr(interrupt, "exit_code", 130)
    return int(result or 0)
