"""``report.md``, ``report.html`` and their PNGs from a study's ``summary.json``."""

from __future__ import annotations

import os
from pathlib import Path

from seedzoo.files import write_text_atomic
from seedzoo.report import figures
from seedzoo.report.content import sections
from seedzoo.report.document import to_html, to_markdown
from seedzoo.report.study import read_study, summary_path

DEFAULT_STUDY = "benchmarks/results/study"


def build_report(study: str | os.PathLike = DEFAULT_STUDY, out: str | os.PathLike | None = None,
                 *, accuracy: str = "knn_top1@20") -> dict[str, Path]:
    """Write the report of ``study`` (its folder or summary) into ``out`` (default: the study's
    folder); ``accuracy`` is the metric plotted against latency. Returns the written paths."""
    summary = read_study(study)
    folder = Path(out) if out is not None else summary_path(study).parent
    drawn = {"accuracy_latency": figures.accuracy_latency(
                 summary, folder / "accuracy_latency.png", accuracy),
             "student_bars": figures.student_bars(summary, folder / "student_bars.png"),
             "training_curves": figures.training_curves(summary, folder / "training_curves.png")}
    title = f"seedzoo study: {summary.dataset}"
    content = sections(summary, drawn)
    written = {"markdown": write_text_atomic(folder / "report.md",
                                             to_markdown(title, content)),
               "html": write_text_atomic(folder / "report.html", to_html(title, content))}
    return written | {name: figure.path for name, figure in drawn.items() if figure}
