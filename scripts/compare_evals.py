"""Print several `seedzoo eval` results side by side:
`python scripts/compare_evals.py NAME=eval.json ... [--lift NAME:BASELINE ...]`.

Columns are the top-1 metrics every result shares (k-NN, linear, few-shot), in percent.
``--lift student:scratch`` adds a line with the points ``student`` gains over ``scratch``;
``--readme README.md`` also writes the table and those lines, in Markdown, between the file's
``<!-- main-job -->`` and ``<!-- /main-job -->`` markers.
"""

import argparse
import sys

from seedzoo.files import replace_marked_block
from seedzoo.results import read_report


def lift_line(rows: dict[str, dict[str, float]], pair: str, shared: list[str]) -> str:
    """``"NAME over BASELINE: +x.y points of <metric>, ..."`` for ``pair`` = ``NAME:BASELINE``."""
    name, _, baseline = pair.partition(":")
    for label in (name, baseline):
        if label not in rows:
            sys.exit(f"--lift {pair}: no result named {label!r} (named: {', '.join(rows)})")
    gains = [f"{100 * (rows[name][k] - rows[baseline][k]):+.1f} points of {k}" for k in shared]
    return f"{name} over {baseline}: " + ", ".join(gains)


def markdown(rows: dict[str, dict[str, float]], shared: list[str], lifts: list[str]) -> str:
    """The table (percent) and the lift lines as Markdown."""
    lines = ["| encoder | " + " | ".join(shared) + " |", "|---|" + "---:|" * len(shared)]
    lines += [f"| {name} | " + " | ".join(f"{100 * metrics[k]:.1f}" for k in shared) + " |"
              for name, metrics in rows.items()]
    return "\n".join(lines) + "\n\n" + "".join(f"{line}.\n" for line in lifts)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", metavar="NAME=FILE", help="a label and an eval JSON")
    parser.add_argument("--lift", action="append", default=[], metavar="NAME:BASELINE",
                        help="also print the points NAME gains over BASELINE (repeatable)")
    parser.add_argument("--readme", metavar="FILE", help="write the table into this Markdown "
                        "file's <!-- main-job --> block")
    args = parser.parse_args(argv)
    rows = {}
    for item in args.results:
        name, _, path = item.partition("=")
        rows[name] = read_report(path)["metrics"]
    shared = [k for k in next(iter(rows.values()))
              if "top1" in k and all(k in m for m in rows.values())]
    width = max(len(n) for n in rows)
    print(" | ".join([" " * width, *shared]))
    for name, metrics in rows.items():
        cells = [f"{100 * metrics[k]:.1f}".rjust(len(k)) for k in shared]
        print(" | ".join([name.ljust(width), *cells]))
    lifts = [lift_line(rows, pair, shared) for pair in args.lift]
    for line in lifts:
        print(line)
    if args.readme:
        replace_marked_block(args.readme, "main-job", markdown(rows, shared, lifts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
