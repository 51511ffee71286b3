"""Print several `seedzoo eval` results side by side:
`python scripts/compare_evals.py NAME=eval.json ... [--lift NAME:BASELINE ...]`.

Columns are the top-1 metrics every result shares (k-NN, linear, few-shot), in percent.
``--lift student:scratch`` adds a line with the points ``student`` gains over ``scratch``.
"""

import argparse
import sys

from seedzoo.results import read_report


def lift_line(rows: dict[str, dict[str, float]], pair: str, shared: list[str]) -> str:
    """``"NAME over BASELINE: +x.y points of <metric>, ..."`` for ``pair`` = ``NAME:BASELINE``."""
    name, _, baseline = pair.partition(":")
    for label in (name, baseline):
        if label not in rows:
            sys.exit(f"--lift {pair}: no result named {label!r} (named: {', '.join(rows)})")
    gains = [f"{100 * (rows[name][k] - rows[baseline][k]):+.1f} points of {k}" for k in shared]
    return f"{name} over {baseline}: " + ", ".join(gains)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", metavar="NAME=FILE", help="a label and an eval JSON")
    parser.add_argument("--lift", action="append", default=[], metavar="NAME:BASELINE",
                        help="also print the points NAME gains over BASELINE (repeatable)")
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
    for pair in args.lift:
        print(lift_line(rows, pair, shared))
    return 0


if __name__ == "__main__":
    sys.exit(main())
