"""Argument types and options shared by several subcommands (not a subcommand itself)."""

from __future__ import annotations

import argparse
import functools
import importlib
import inspect
import json
import math
import sys

from seedzoo.errors import SeedzooError
from seedzoo.files import check_output_path


def add_command(subparsers, module: str, **options) -> argparse.ArgumentParser:
    """The parser of the command named after ``module`` (its ``__name__``): ``seedzoo.cli.eval``
    adds ``seedzoo eval``. ``options`` go to ``add_parser``."""
    name = module.rpartition(".")[2]
    parser = subparsers.add_parser(name, **options)
    parser.set_defaults(command_name=name)  # for messages; options may use the dest "command"
    return parser


class LibraryDefault:
    """An option default read from the library, so the CLI cannot drift from it.

    ``where`` is ``"module:name"``: a constant, or with ``parameter`` the default of that
    parameter of the callable. It is imported when first needed (help text or parsing), so
    building the parser imports no torch; :func:`resolve_defaults` puts the value in place.
    """

    def __init__(self, where: str, parameter: str | None = None):
        self.where, self.parameter = where, parameter

    @functools.cached_property
    def value(self):
        module, _, name = self.where.partition(":")
        found = getattr(importlib.import_module(module), name)
        if self.parameter is None:
            return found
        return inspect.signature(found).parameters[self.parameter].default

    def __str__(self) -> str:  # as %(default)s shows it, in the option's own syntax
        value = self.value
        return ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def resolve_defaults(args: argparse.Namespace) -> argparse.Namespace:
    """``args`` with every untouched :class:`LibraryDefault` replaced by its value."""
    for name, value in list(vars(args).items()):
        if isinstance(value, LibraryDefault):
            setattr(args, name, value.value)
    return args


def _non_negative(text: str, kind: type, wanted: str, *, allow_zero: bool):
    """``text`` as a finite ``kind`` (int or float) >= 0 (> 0 without ``allow_zero``), else an
    ``argparse.ArgumentTypeError`` saying that ``wanted`` is wanted."""
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {wanted}, got {text!r}") from None
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise argparse.ArgumentTypeError(f"must be {wanted}, got {text!r}")
    return value


def output_file(text: str) -> str:
    """Type of an output file option: checked before any work (see
    :func:`seedzoo.files.check_output_path`)."""
    return _checked_output(text, folder=False)


def output_folder(text: str) -> str:
    """Type of an output folder option, checked likewise."""
    return _checked_output(text, folder=True)


def _checked_output(text: str, *, folder: bool) -> str:
    try:
        check_output_path(text, folder=folder)
        return text
    except SeedzooError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def positive_int(text: str) -> int:
    return _non_negative(text, int, "a positive integer", allow_zero=False)


def non_negative_int(text: str) -> int:
    return _non_negative(text, int, "an integer >= 0", allow_zero=True)


def positive_float(text: str) -> float:
    return _non_negative(text, float, "a positive number", allow_zero=False)


def non_negative_float(text: str) -> float:
    return _non_negative(text, float, "a number >= 0", allow_zero=True)


def positive_int_list(what: str):
    """Type of a comma-separated list of positive integers; errors name it ``what``."""

    def parse(text: str) -> list[int]:
        try:
            values = [int(v) for v in text.split(",") if v.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{what}: expected comma-separated integers, got {text!r}") from None
        if not values or min(values) < 1:
            raise argparse.ArgumentTypeError(f"{what} must be positive integers, got {text!r}")
        return values

    return parse


def non_negative_float_list(text: str) -> list[float]:
    """Type of a non-empty comma-separated list of finite numbers >= 0."""
    values = [non_negative_float(v) for v in text.split(",") if v.strip()]
    if not values:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers >= 0, got {text!r}")
    return values


def json_object(text: str) -> dict:
    """Type of an option holding a JSON object, e.g. ``'{"window_size": 14}'``."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"is not valid JSON ({error}): {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"must be a JSON object such as "
                                         f"'{{\"window_size\": 14}}', got {text!r}")
    return value


def add_arch_arguments(parser) -> None:
    """``--arch`` and ``--model-args``: the architecture of a weights-file ``--model``."""
    parser.add_argument("--arch", help="timm architecture of a weights-file --model (e.g. "
                                       "resnet18, swin_tiny_patch4_window7_224)")
    parser.add_argument("--model-args", type=json_object, metavar="JSON",
                        help="extra timm.create_model arguments for --arch or timm:<arch>, e.g. "
                             "'{\"window_size\": 14}'")


def print_load_report(model) -> None:
    """Say on stderr what a weights-file load took and skipped (heads, other networks...)."""
    report = getattr(model, "load_report", None)
    if report is not None:
        print(report.summary(), file=sys.stderr)


def fraction_list(text: str) -> list[float]:
    """Type of a non-empty comma-separated list of fractions in (0, 1]."""
    values = [non_negative_float(v) for v in text.split(",") if v.strip()]
    if not values or not all(0 < v <= 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected comma-separated fractions in (0, 1], got "
                                         f"{text!r}")
    return values


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """``--model SPEC`` (required), ``--arch``, ``--model-args`` and ``--revision``, read by
    :func:`load_model`."""
    parser.add_argument("--model", required=True, metavar="SPEC",
                        help="what seedzoo.load takes: a catalog name, hf-hub:org/name[@rev], "
                        "timm:<arch>, an encoder folder, or a weights file with --arch")
    add_arch_arguments(parser)
    parser.add_argument("--revision", help="hub branch, tag or commit of --model")


def load_model(args):
    """The model named by :func:`add_model_arguments`' options (never the raw-pixel baseline,
    which only ``seedzoo eval`` measures)."""
    from seedzoo.errors import ModelNotFoundError
    from seedzoo.evaluation.pixels import PIXELS
    from seedzoo.zoo import load

    if args.model == PIXELS:
        raise ModelNotFoundError(f"{PIXELS!r} is the raw-pixel baseline of `seedzoo eval`, not a "
                                 "network to export or time; give an encoder (a catalog name, "
                                 "hf-hub:org/name, a folder or timm:<arch>).")

    model = load(args.model, arch=args.arch, model_args=args.model_args, revision=args.revision)
    print_load_report(model)
    return model
