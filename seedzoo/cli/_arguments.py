"""Argument types and options shared by several subcommands (not a subcommand itself)."""

from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


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


def float_list(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") \
            from None


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """``--model SPEC`` (required), ``--arch`` and ``--revision``, read by :func:`load_model`."""
    parser.add_argument("--model", required=True, metavar="SPEC",
                        help="what seedzoo.load takes: a catalog name, hf-hub:org/name[@rev], "
                        "timm:<arch>, an encoder folder, or a weights file with --arch")
    parser.add_argument("--arch", help="architecture of a weights-file --model (e.g. resnet18)")
    parser.add_argument("--revision", help="hub branch, tag or commit of --model")


def load_model(args):
    """The model named by :func:`add_model_arguments`' options."""
    from seedzoo.zoo import load

    return load(args.model, arch=args.arch, revision=args.revision)
