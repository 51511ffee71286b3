"""``report.md``, ``report.html`` and their PNGs from a study's ``summary.json``."""

from __future__ import annotations

import os
from pathlib import Path

from seedzoo.files import replace_marked_block, write_text_atomic
from seedzoo.report import figures
from seedzoo.report.content import headline, sections
from seedzoo.report.document import markdown_block, to_html, to_markdown
from seedzoo.report.study import read_study, summary_path

DEFAULT_STUDY = "benchmarks/results/study"
README_BLOCK = "study"


def build_report(study: str | os.PathLike = DEFAULT_STUDY, out: str | os.PathLike | None = None,
                 *, accuracy: str = "knn_top1@20",
                 readme: str | os.PathLike | None = None) -> dict[str, Path]:
    """Write the report of ``study`` (its folder or summary) into ``out`` (default: the study's
    folder); ``accuracy`` is the metric plotted against latency. With ``readme``, its
    ``<!-- study -->`` block gets the headline table, the accuracy/latency plot and links to
    the report. Returns the written paths."""
    summary = read_study(study)
    folder = Path(out) if out is not None else summary_path(study).parent
    drawn = {"accuracy_latency": figures.accuracy_latency(
                 summary, folder / "accuracy_latency.png", accuracy),
             "student_bars": figures.student_bars(summary, folder / "student_bars.png"),
             "training_curves": figures.training_curves(summary, folder / "training_curves.png")}
    title = f"seedzoo study: {summary.dataset}"
    content = sections(summary, drawn)
    written = {"markdown": write_text_atomic(folder / "report.md",
                                             to_markdown(title, content, folder)),
               "html": write_text_atomic(folder / "report.html", to_html(title, content))}
    if readme is not None:
        readme = Path(readme)
        blocks = [*headline(summary), *([drawn["accuracy_latency"]]
                                        if drawn["accuracy_latency"] else []),
                  f"The full report: [{_link(written['markdown'], readme.parent)}]"
                  f"({_link(written['markdown'], readme.parent)}) "
                  f"([HTML]({_link(written['html'], readme.parent)}))."]
        replace_marked_block(readme, README_BLOCK, "\n\n".join(
            markdown_block(block, readme.parent) for block in blocks) + "\n")
        written["readme"] = readme
    return written | {name: figure.path for name, figure in drawn.items() if figure}


def _link(path: Path, folder: Path) -> str:
    return Path(os.path.relpath(path, folder)).as_posix()
