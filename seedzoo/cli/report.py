"""`seedzoo report`: a study's summary.json as report.md, report.html and PNG plots."""

from __future__ import annotations

from seedzoo.cli._arguments import LibraryDefault, add_command, output_folder


def register(subparsers) -> None:
    parser = add_command(
        subparsers, __name__, help="tables and plots of a study (report.md, report.html)",
        description="Read a study's summary.json (written by benchmarks/reproduce.py) and write "
        "report.md, a self-contained report.html and the PNG plots: results per student, "
        "lift over from-scratch SSL, the papers' claims, accuracy against latency, training "
        "budget and curves.")
    parser.add_argument("--study", default=LibraryDefault("seedzoo.report:DEFAULT_STUDY"),
                        help="the study's folder or its summary.json (default: %(default)s)")
    parser.add_argument("--out", type=output_folder,
                        help="folder for the report (default: the study's folder)")
    parser.add_argument("--accuracy",
                        default=LibraryDefault("seedzoo.report:build_report", "accuracy"),
                        choices=["knn_top1@20", "linear_top1"],
                        help="metric plotted against latency (default: %(default)s)")
    parser.add_argument("--readme", metavar="FILE",
                        help="also fill FILE's <!-- study --> ... <!-- /study --> block with the "
                        "headline table and the accuracy/latency plot (e.g. README.md)")
    parser.set_defaults(func=run)


def run(args) -> int:
    from seedzoo.report import build_report

    written = build_report(args.study, args.out, accuracy=args.accuracy, readme=args.readme)
    for path in written.values():
        print(path)
    return 0
