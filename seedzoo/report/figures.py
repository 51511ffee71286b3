"""The report's plots, drawn with matplotlib's object API on its Agg canvas (no pyplot, no
display): accuracy against latency with its Pareto front, k-NN and linear top-1 per student,
training curves."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from matplotlib import colormaps, rc_context
from matplotlib.figure import Figure as PlotFigure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, MaxNLocator

from seedzoo.report.document import Figure
from seedzoo.report.study import (
    Study,
    best_first,
    knn_curve,
    metric_title,
    series,
    training_log,
)

LATENCY = "onnx_fp32_b1"
MARKERS = "osD^vP*Xph"
STYLE = {"font.size": 12, "axes.titlesize": 14, "axes.labelsize": 13, "legend.fontsize": 11,
         "xtick.labelsize": 11, "ytick.labelsize": 11, "axes.grid": True, "grid.alpha": 0.3,
         "axes.spines.top": False, "axes.spines.right": False, "savefig.dpi": 110}
THOUSANDS = FuncFormatter(lambda value, _: f"{value / 1000:g}k" if value else "0")
PIXELS_STYLE = {"color": "0.35", "linestyle": "--", "linewidth": 1.5}


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the ``(latency, accuracy)`` points that no other point beats (as fast or
    faster and as accurate or more, better in one), fastest first."""
    front = [i for i, (latency, accuracy) in enumerate(points)
             if not any(other_latency <= latency and other_accuracy >= accuracy
                        and (other_latency, other_accuracy) != (latency, accuracy)
                        for other_latency, other_accuracy in points)]
    return sorted(front, key=lambda i: (points[i][0], -points[i][1]))


def method_colours(study: Study) -> dict[str, tuple]:
    """One colour per method label of the study, the same in every plot."""
    labels = sorted({run.label for run in study.runs})
    palette = colormaps["tab10" if len(labels) <= 10 else "tab20"]
    return {label: palette(index % palette.N) for index, label in enumerate(labels)}


def _save(figure: PlotFigure, path: Path, caption: str) -> Figure:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, bbox_inches="tight")
    return Figure(path, caption)


def accuracy_latency(study: Study, path: Path, metric: str = "knn_top1@20", *,
                     highlight: str | None = None) -> Figure | None:
    """``metric`` against ONNX Runtime fp32 batch-1 latency, a point per run (colour: method,
    marker: architecture), with the Pareto front; the run named ``highlight`` (a model card's)
    ringed and labelled. ``None`` when no run has both."""
    runs = [run for run in study.runs
            if metric in run.metrics and (run.latency_ms or {}).get(LATENCY) is not None]
    if not runs:
        return None
    colours = method_colours(study)
    markers = {arch: MARKERS[i % len(MARKERS)]
               for i, arch in enumerate(sorted({run.architecture for run in runs}))}
    points = [(study.typical_latency(run, LATENCY), 100 * run.metrics[metric]) for run in runs]
    with rc_context(STYLE):
        figure = PlotFigure(figsize=(11, 6.5), layout="constrained")
        ax = figure.subplots()
        for run, (latency, accuracy) in zip(runs, points, strict=True):
            ax.scatter(latency, accuracy, s=110, color=colours[run.label],
                       marker=markers[run.architecture], edgecolor="black", linewidth=0.6,
                       zorder=3)
        front = pareto_front(points)
        ax.step([points[i][0] for i in front], [points[i][1] for i in front], where="post",
                color="0.2", linewidth=1.5, alpha=0.7, zorder=2)
        for i in front:
            ax.annotate(runs[i].label, points[i], xytext=(8, 6), textcoords="offset points",
                        fontsize=10, color="0.15", zorder=4,
                        bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none",
                              "alpha": 0.8})
        for run, point in zip(runs, points, strict=True):
            if run.name == highlight:
                ax.scatter(*point, s=420, facecolor="none", edgecolor="crimson", linewidth=2.5,
                           zorder=5)
                ax.annotate(f"this model: {run.label}", point, xytext=(10, -18),
                            textcoords="offset points", fontsize=11, color="crimson",
                            weight="bold", zorder=5)
        if metric in study.pixels:
            ax.axhline(100 * study.pixels[metric], **PIXELS_STYLE)
        latencies = [latency for latency, _ in points]
        if max(latencies) > 10 * min(latencies):
            ax.set_xscale("log")
        ax.set_xlabel("ONNX Runtime fp32 latency, batch 1, median of the architecture's "
                      "measurements (ms, lower is better)")
        ax.set_ylabel(f"{metric_title(metric)} top-1 on {study.dataset} (%)")
        ax.set_title(f"Accuracy against latency: {metric_title(metric)} top-1")
        methods = [Line2D([], [], color=colours[label], marker="o", linestyle="", markersize=9,
                          label=label) for label in sorted({run.label for run in runs})]
        # figure legends "outside" are laid out by the constrained layout (never cut off)
        figure.legend(handles=methods, title="method", loc="outside right upper", frameon=False)
        extra = [Line2D([], [], color="0.2", linewidth=1.5, label="Pareto front")]
        if metric in study.pixels:
            extra.append(Line2D([], [], **PIXELS_STYLE, label="raw pixels"))
        shapes = [Line2D([], [], color="0.5", marker=marker, linestyle="", markersize=9,
                         markeredgecolor="black", label=arch) for arch, marker in markers.items()]
        figure.legend(handles=shapes + extra, title="architecture", loc="outside right lower",
                      frameon=False)
        ringed = f"; ringed: {highlight}" if highlight in {run.name for run in runs} else ""
        return _save(figure, path, f"{metric_title(metric)} top-1 against ONNX Runtime fp32 "
                     "batch-1 latency (each architecture's median over its runs' measurements); "
                     "the line joins the runs no other run beats on both (Pareto front), "
                     f"labelled{ringed}.")


def student_bars(study: Study, path: Path) -> Figure | None:
    """k-NN@20 and linear top-1 of every run, one panel per architecture, methods best k-NN
    first, raw pixels' k-NN@20 as a line; ``None`` when no run has either."""
    shown = ("knn_top1@20", "linear_top1")
    groups = {arch: best_first(run for run in study.runs if run.architecture == arch
                                and any(m in run.metrics for m in shown))
              for arch in study.architectures}
    groups = {arch: runs for arch, runs in groups.items() if runs}
    if not groups:
        return None
    width, bar_colours = 0.4, ("#3b75af", "#ef8636")
    widest = max(len(runs) for runs in groups.values())
    with rc_context(STYLE):
        figure = PlotFigure(figsize=(max(8.0, 1.4 * widest + 2), 3.6 * len(groups) + 0.6),
                            layout="constrained")
        axes = figure.subplots(len(groups), 1, squeeze=False)[:, 0]
        for ax, (arch, runs) in zip(axes, groups.items(), strict=True):
            positions = range(len(runs))
            for offset, metric, colour in zip((-width / 2, width / 2), shown, bar_colours,
                                              strict=True):
                values = [100 * run.metrics.get(metric, float("nan")) for run in runs]
                bars = ax.bar([p + offset for p in positions], values, width, color=colour,
                              label=metric_title(metric), zorder=2)
                ax.bar_label(bars, ["" if math.isnan(v) else f"{v:.1f}" for v in values],
                             fontsize=9, padding=-14, color="white", fontweight="bold")
            if "knn_top1@20" in study.pixels:
                ax.axhline(100 * study.pixels["knn_top1@20"], **PIXELS_STYLE, zorder=1,
                           label="raw pixels k-NN@20")
            ax.set_xticks(list(positions), [run.title.replace(" from ", "\nfrom ")
                                            for run in runs], fontsize=10)
            ax.set_xlim(-0.6, widest - 0.4)  # the same bar width in every panel
            ax.set_ylim(0, 100)
            ax.set_ylabel("top-1 (%)")
            ax.set_title(arch, loc="left")
            ax.grid(axis="x", visible=False)
        figure.legend(*axes[0].get_legend_handles_labels(), loc="outside upper center",
                      ncols=3, frameon=False)
        return _save(figure, path, f"k-NN@20 and linear top-1 on {study.dataset} per student "
                     "network, best k-NN first; the dashed line is raw pixels' k-NN@20.")


def training_curves(study: Study, path: Path) -> Figure | None:
    """Loss and k-NN top-1 against images seen, a row of two panels per architecture; ``None``
    when no run has a training log or a curve."""
    logs = {run.name: training_log(run) for run in study.runs}
    groups = {arch: [run for run in study.runs if run.architecture == arch
                     and (logs[run.name] or run.curve)] for arch in study.architectures}
    groups = {arch: runs for arch, runs in groups.items() if runs}
    if not groups:
        return None
    colours = method_colours(study)
    with rc_context(STYLE):
        figure = PlotFigure(figsize=(13, 4.2 * len(groups)), layout="constrained")
        axes = figure.subplots(len(groups), 2, squeeze=False, sharex="row")
        for (loss_ax, knn_ax), (arch, runs) in zip(axes, groups.items(), strict=True):
            for run in runs:
                style = {"color": colours[run.label], "label": run.title, "linewidth": 1.8}
                loss = series(logs[run.name], run, "loss")
                if loss:
                    loss_ax.plot(*zip(*loss, strict=True), **style)
                knn = knn_curve(run, logs[run.name])
                if knn:
                    knn_ax.plot(*zip(*knn, strict=True), marker="o", **style)
            if all(value > 0 for line in loss_ax.get_lines() for value in line.get_ydata()):
                loss_ax.set_yscale("log")
            loss_ax.set_title(f"{arch}: training loss", loc="left")
            loss_ax.set_ylabel("loss (each method its own)")
            knn_ax.set_title("k-NN top-1 during training", loc="left")
            knn_ax.set_ylabel("k-NN top-1 (%)")
            for ax in (loss_ax, knn_ax):
                ax.set_xlabel("images seen")
                ax.xaxis.set_major_locator(MaxNLocator(6))
                ax.xaxis.set_major_formatter(THOUSANDS)
            knn_ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False,
                          fontsize=10)
        return _save(figure, path, "Training loss and k-NN top-1 against images seen (k-NN: the "
                     "trainer's monitor, or the study's k-NN@20 where a run gives its curve).")
