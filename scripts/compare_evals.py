"""Print several `seedzoo eval` results side by side:
`python scripts/compare_evals.py NAME=eval.json ...`.

Columns are the metrics every result shares (k-NN, linear, few-shot top-1), in percent.
"""

import argparse
import sys

from seedzoo.results import read_report


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", metavar="NAME=FILE", help="a label and an eval JSON")
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
