"""The study report: a study's ``summary.json`` as Markdown and self-contained HTML tables with
matplotlib plots. It reads JSON only and imports no torch.

    from seedzoo.report import build_report
    build_report("benchmarks/results/study")   # report.md, report.html and PNGs beside it
"""

from seedzoo.report.build import DEFAULT_STUDY, build_report
from seedzoo.report.study import SCHEMA, Run, Study, read_study

__all__ = ["DEFAULT_STUDY", "SCHEMA", "Run", "Study", "build_report", "read_study"]
