"""The report's text and tables: results per student network, the lift of each method over
from-scratch self-supervised training, the papers' claims beside ours, the training budget."""

from __future__ import annotations

import math
from dataclasses import dataclass

from seedzoo.report.document import Figure, Section, Table
from seedzoo.report.study import (
    Run,
    Study,
    best_first,
    knn_curve,
    metric_order,
    metric_title,
    training_log,
)

# The from-scratch self-supervised methods a run's lift is measured against, preferred first:
# MoCo v2 is the SEED paper's baseline.
FROM_SCRATCH = ("moco", "simclr")
LATENCY_TITLES = {"onnx_fp32_b1": "ONNX fp32 ms", "onnx_int8_b1": "ONNX INT8 ms",
                  "torch_fp32_b1": "torch ms"}
PIXELS = "raw pixels (reference)"


@dataclass(frozen=True)
class PaperClaim:
    """A paper's ImageNet-1k linear top-1 (%) of a student trained from scratch and distilled."""

    architecture: str
    from_scratch: float
    distilled: float
    teacher: str | None

    @property
    def gain(self) -> float:
        return self.distilled - self.from_scratch


# SEED (Fang et al., ICLR 2021), MoCo v2 from scratch → SEED, as quoted in the project's
# design notes (which name the teacher only for ResNet-18).
SEED_CLAIMS = (PaperClaim("efficientnet_b0", 42.2, 67.6, None),
               PaperClaim("mobilenetv3_large_100", 36.3, 68.2, None),
               PaperClaim("resnet18", 52.5, 57.6, "ResNet-50"),
               PaperClaim("resnet18", 52.5, 63.0, "ResNet-50x2"))


def percent(fraction: float | None) -> str:
    return "-" if fraction is None else f"{100 * fraction:.1f}"


def points(value: float | None) -> str:
    return "-" if value is None else f"{value:+.1f}"


def labels_used(fraction: float) -> str:
    return "none" if fraction == 0 else f"{100 * fraction:g}%"


def baseline_of(run: Run, runs) -> Run | None:
    """The same-budget from-scratch self-supervised run of ``run``'s architecture: no teacher,
    no labels, the same images seen, a method of :data:`FROM_SCRATCH` (the first found)."""
    candidates = [other for other in runs if other is not run
                  and other.architecture == run.architecture
                  and other.images_seen == run.images_seen and other.teacher is None
                  and other.label_fraction == 0 and other.method in FROM_SCRATCH]
    return min(candidates, key=lambda other: FROM_SCRATCH.index(other.method), default=None)


def lift(run: Run, baseline: Run, metric: str) -> float | None:
    """``run``'s ``metric`` minus ``baseline``'s, in percentage points."""
    if metric not in run.metrics or metric not in baseline.metrics:
        return None
    return 100 * (run.metrics[metric] - baseline.metrics[metric])


def _present(runs, field: str) -> list[str]:
    """The keys some run has in its dict ``field``, in first-seen order."""
    return list(dict.fromkeys(key for run in runs for key in (getattr(run, field) or {})))


def _cell(mapping: dict | None, key: str, form) -> str:
    value = (mapping or {}).get(key)
    return "-" if value is None else form(value)


def _number(value: float | None, form: str) -> str:
    return "-" if value is None else form.format(value)


def latency_table(study: Study) -> Table | None:
    """Per architecture and input size: how many runs measured each latency, their median and
    range (the weights do not change the speed; the spread is the machine's noise)."""
    keys = [key for key in LATENCY_TITLES if any(key in (run.latency_ms or {})
                                                 for run in study.runs)]
    firsts = {(run.architecture, run.input_size): run for run in reversed(study.runs)
              if run.latency_ms}
    if not keys or not firsts:
        return None
    rows = []
    for (architecture, size), run in sorted(firsts.items(), key=lambda item: item[0][0]):
        row = [architecture, "x".join(map(str, size[1:])) if size else "-"]
        for key in keys:
            measured = study.latencies(run, key)
            row.append(f"{study.typical_latency(run, key):.2f} ({min(measured):.2f}-"
                       f"{max(measured):.2f}, n={len(measured)})" if measured else "-")
        rows.append(row)
    header = ["architecture", "input", *(f"{LATENCY_TITLES[key]}: median (range, runs)"
                                         for key in keys)]
    return Table(header, rows, [False] * 2 + [True] * len(keys))


def headline_table(study: Study, architecture: str) -> Table:
    """The runs of one architecture, best k-NN@20 first with raw pixels among them; metric,
    size and latency columns only where some run has them."""
    runs = best_first(run for run in study.runs if run.architecture == architecture)
    metrics = metric_order(_present(runs, "metrics"))
    latencies = _present(runs, "latency_ms")
    drops = metric_order(_present(runs, "int8_accuracy_drop"))
    with_params, with_flops = any(run.params for run in runs), any(run.flops for run in runs)
    header = ["method", "teacher", "labels", *map(metric_title, metrics)]
    header += ["params (M)"] * with_params + ["GFLOPs"] * with_flops
    header += [LATENCY_TITLES.get(key, f"{key} ms") for key in latencies]
    header += [f"INT8 drop {metric_title(key)} (points)" for key in drops]
    rows = []
    for run in runs:
        row = [run.label, run.teacher or "-", labels_used(run.label_fraction),
               *(percent(run.metrics.get(m)) for m in metrics)]
        row += [f"{run.params / 1e6:.1f}" if run.params else "-"] * with_params
        row += [f"{run.flops / 1e9:.2f}" if run.flops else "-"] * with_flops
        row += [_cell(run.latency_ms, key, "{:.2f}".format) for key in latencies]
        row += [_cell(run.int8_accuracy_drop, key, lambda v: f"{100 * v:.2f}") for key in drops]
        rows.append(row)
    if any(m in study.pixels for m in metrics):
        pixels = [PIXELS, "-", "-", *(percent(study.pixels.get(m)) for m in metrics)]
        reference = study.pixels.get("knn_top1@20", -1)
        position = sum(run.metrics.get("knn_top1@20", -1) >= reference for run in runs)
        rows.insert(position, pixels + ["-"] * (len(header) - len(pixels)))
    return Table(header, rows, [False] * 3 + [True] * (len(header) - 3))


def lift_table(study: Study, architecture: str) -> tuple[Table | None, list[str]]:
    """Each run of one architecture against its same-budget from-scratch baseline (points),
    and the names of the runs that have none."""
    runs = [run for run in study.runs if run.architecture == architecture]
    metrics = metric_order(_present(runs, "metrics"))
    rows, orphans = [], []
    for run in best_first(runs):
        if run.method in FROM_SCRATCH and run.teacher is None:
            continue
        baseline = baseline_of(run, study.runs)
        if baseline is None:
            orphans.append(run.name)
            continue
        rows.append([run.label, run.teacher or "-", labels_used(run.label_fraction),
                     baseline.label, *(points(lift(run, baseline, m)) for m in metrics)])
    header = ["method", "teacher", "labels", "over", *map(metric_title, metrics)]
    table = Table(header, rows, [False] * 4 + [True] * len(metrics)) if rows else None
    return table, orphans


def _machine(machine) -> str:
    """The machine in a line: its text, or the plain values of its object (lists and nested
    objects, such as CPU flags and package versions, left out)."""
    if isinstance(machine, dict):
        return ", ".join(f"{key} {value}" for key, value in machine.items()
                         if isinstance(value, (str, int, float))) or "not recorded"
    return machine or "not recorded"


def _paper_cells(claims: list[PaperClaim]) -> tuple[str, str]:
    def teacher(claim: PaperClaim) -> str:
        return f" ({claim.teacher} teacher)" if claim.teacher else ""

    figures = "; ".join(f"{c.from_scratch:.1f} → {c.distilled:.1f}{teacher(c)}" for c in claims)
    return figures, " / ".join(f"{c.gain:+.1f}" for c in claims)


def _compared_metric(run: Run, baseline: Run) -> str | None:
    """The papers' metric, linear top-1, or else k-NN@20, where both runs have it."""
    return next((m for m in ("linear_top1", "knn_top1@20")
                 if m in run.metrics and m in baseline.metrics), None)


def _direction(gain: float) -> str:
    return "same" if gain > 0 else "opposite" if gain < 0 else "no change"


def papers_section(study: Study) -> Section:
    """The SEED paper's gains over MoCo v2 beside ours, per student."""
    section = Section("Against the papers' claims", [
        "The SEED paper trains each student on ImageNet-1k (1.28 M images, 200 epochs, 224 px, "
        f"GPUs) and reports linear top-1; these runs saw the {study.dataset} images listed in "
        "the budget table. Only the direction and the size of the gain, in points, are set "
        "side by side: the scales are not the same, and neither are the absolute figures."])
    rows, verdicts = [], []
    for architecture in dict.fromkeys(claim.architecture for claim in SEED_CLAIMS):
        paper, paper_gain = _paper_cells([c for c in SEED_CLAIMS
                                          if c.architecture == architecture])
        pairs = [(run, baseline_of(run, study.runs)) for run in study.runs
                 if run.architecture == architecture and run.method == "seed"]
        compared = [(run, base, metric) for run, base in pairs
                    if base and (metric := _compared_metric(run, base))]
        if not compared:
            ours = "no same-budget from-scratch run beside it" if pairs else "not run"
            rows.append([architecture, paper, paper_gain, ours, "-", "-"])
        for run, base, metric in compared:
            gain = lift(run, base, metric)
            teacher = f"{run.teacher} teacher" if run.teacher else "no teacher"
            rows.append([architecture, paper, paper_gain,
                         f"{percent(base.metrics[metric])} → {percent(run.metrics[metric])} "
                         f"({metric_title(metric)}, {teacher})", points(gain), _direction(gain)])
            verdicts.append(f"{architecture}, {teacher}: SEED "
                            f"{'gained' if gain >= 0 else 'lost'} {abs(gain):.1f} points of "
                            f"{metric_title(metric)} over {base.label} (the paper: "
                            f"{paper_gain} linear).")
    section.blocks.append(Table(
        ["student", "paper: MoCo v2 → SEED, ImageNet-1k linear top-1", "paper gain",
         f"ours: {' or '.join(FROM_SCRATCH)} → SEED on {study.dataset}", "our gain",
         "direction"], rows, [False, False, True, False, True, False]))
    section.blocks += verdicts
    section.blocks.append(
        "The design notes also quote EsViT's Swin-T (78.0 linear, 75.7 k-NN) and SimCLRv2's "
        "distilled ResNet-50 (73.9 with 1% of the labels, 77.5 with 10%): absolute ImageNet "
        "figures without a from-scratch counterpart, so there is no gain to compare.")
    return section


def images_to_reach(curve: list[tuple[float, float]], gap: float) -> float | None:
    """Images seen for ``curve`` (``(images seen, top-1 %)``) to gain ``gap`` more points,
    extrapolating a least-squares line of top-1 against log10(images seen) from its last
    point; ``None`` with fewer than 3 points or no upward trend."""
    if len(curve) < 3:
        return None
    xs = [math.log10(images) for images, _ in curve]
    ys = [value for _, value in curve]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / spread \
        if spread else 0.0
    if slope <= 0:
        return None
    return curve[-1][0] * 10 ** (gap / slope)


def pixels_section(study: Study, metric: str = "knn_top1@20") -> Section | None:
    """Whether a label-free run beats raw pixels on ``metric``; if none does, each one's
    learning curve extrapolated to the images it would need (a trend, not a measurement)."""
    if metric not in study.pixels:
        return None
    pixels = 100 * study.pixels[metric]
    free = [run for run in best_first(study.runs)
            if run.label_fraction == 0 and metric in run.metrics]
    if not free:
        return None
    above = [run for run in free if 100 * run.metrics[metric] > pixels]
    title = f"Label-free runs against raw pixels ({metric_title(metric)} {pixels:.1f})"
    if above:
        return Section(title, ["Above raw pixels: " + ", ".join(
            f"{run.name} {percent(run.metrics[metric])}" for run in above) + "."])
    rows = []
    for run in free:
        gap = pixels - 100 * run.metrics[metric]
        needed = images_to_reach(knn_curve(run, training_log(run)), gap)
        rows.append([run.name, run.architecture, run.label, percent(run.metrics[metric]),
                     points(-gap), f"{run.images_seen:,}",
                     "no upward trend" if needed is None else f"~{needed:,.0f}"])
    return Section(title, [
        "No label-free run beats raw pixels. Extrapolation: the gap divided by the slope of a "
        "line fitted to each run's k-NN curve against log10(images seen), from its last point; "
        "a trend of a few points, not a measurement.",
        Table(["run", "architecture", "method", metric_title(metric), "vs pixels",
               "images seen", "images to reach pixels (trend)"], rows,
              [False] * 3 + [True] * 4)])


def _best(runs, metric: str) -> Run | None:
    return max((run for run in runs if metric in run.metrics),
               key=lambda run: run.metrics[metric], default=None)


def _named(run: Run | None, metric: str) -> str:
    return "-" if run is None else f"{percent(run.metrics[metric])}: {run.label}"


def headline(study: Study) -> list[str | Table]:
    """Per student (an architecture with a ``seed`` run): the same-budget from-scratch run and
    SEED (k-NN@20) with SEED's lift, the best label-free run (k-NN@20), the best linear top-1
    with at most 10% of the labels and with all of them, size and ONNX latency; then the best
    run without the full labels against the linear target and raw pixels."""
    knn, linear = "knn_top1@20", "linear_top1"
    rows = []
    for architecture in study.architectures:
        runs = [run for run in study.runs if run.architecture == architecture]
        seed = _best([run for run in runs if run.method == "seed"], knn)
        if seed is None:
            continue
        baseline = baseline_of(seed, study.runs)
        few_labels = _best([run for run in runs if 0 < run.label_fraction <= 0.1], linear)
        rows.append([
            architecture, percent(baseline.metrics.get(knn)) if baseline else "-",
            percent(seed.metrics[knn]), points(lift(seed, baseline, knn)) if baseline else "-",
            _named(_best([run for run in runs if run.label_fraction == 0], knn), knn),
            _named(few_labels, linear),
            _named(_best([run for run in runs if run.label_fraction == 1], linear), linear),
            f"{seed.params / 1e6:.1f}" if seed.params else "-",
            _number(study.typical_latency(seed, "onnx_fp32_b1"), "{:.2f}")])
    if not rows:
        return []
    blocks: list[str | Table] = [Table(
        ["student", "from scratch k-NN@20", "SEED k-NN@20", "SEED lift", "best label-free "
         "k-NN@20", "best linear, ≤10% labels", "best linear, all labels", "params (M)",
         "ONNX fp32 ms (median)"], rows, [False] + [True] * 3 + [False] * 3 + [True] * 2)]
    unlabelled = [run for run in study.runs if run.label_fraction <= 0.1]
    best_linear, best_knn = _best(unlabelled, linear), _best(
        [run for run in unlabelled if run.label_fraction == 0], knn)
    if best_linear:
        blocks.append(f"Best linear top-1 without the full labels: {best_linear.name} "
                      f"({best_linear.architecture}) {percent(best_linear.metrics[linear])}"
                      + (f"; raw pixels {percent(study.pixels[linear])}."
                         if linear in study.pixels else "."))
    if best_knn and knn in study.pixels:
        gap = 100 * (best_knn.metrics[knn] - study.pixels[knn])
        blocks.append(f"Best label-free k-NN@20: {best_knn.name} ({best_knn.architecture}) "
                      f"{percent(best_knn.metrics[knn])}, {points(gap)} points against raw "
                      f"pixels' {percent(study.pixels[knn])}.")
    return blocks


def budget_table(study: Study) -> Table:
    """What each run cost: images seen, epochs, wall time, throughput, machine."""
    rows = [[run.name, run.architecture, run.label, f"{run.images_seen:,}", f"{run.epochs:g}",
             f"{run.wall_s / 60:.1f}", f"{run.images_seen / run.wall_s:.0f}", run.machine]
            for run in sorted(study.runs, key=lambda run: (run.architecture, run.name))]
    header = ["run", "architecture", "method", "images seen", "epochs", "wall time (min)",
              "images/s", "machine"]
    return Table(header, rows, [False] * 3 + [True] * 4 + [False])


def sections(study: Study, figures: dict[str, Figure | None]) -> list[Section]:
    """The whole report; ``figures`` by name (``accuracy_latency``, ``student_bars``,
    ``training_curves``), ``None`` where a plot had nothing to draw."""
    intro = Section("The study", [
        f"{len(study.runs)} runs on {study.dataset}, "
        f"commit {study.commit[:12] if study.commit else 'not recorded'}, machine: "
        f"{_machine(study.machine)}. Accuracies are top-1 in % on the study's evaluation, "
        "lifts in percentage points."])
    intro.blocks += headline(study)
    if figures.get("accuracy_latency"):
        intro.blocks.append(figures["accuracy_latency"])
    result = [intro, Section("Results per student network", [
        "Best k-NN@20 first, with raw pixels on the same evaluation as a reference row.",
        *([figures["student_bars"]] if figures.get("student_bars") else [])])]
    result += [Section(arch, [headline_table(study, arch)], level=3)
               for arch in study.architectures]
    result.append(Section("Lift over from-scratch self-supervised training", [
        f"Each run minus the run of its architecture trained from scratch by "
        f"{' or '.join(FROM_SCRATCH)} (no teacher, no labels) on as many images, in points."]))
    for arch in study.architectures:
        table, orphans = lift_table(study, arch)
        blocks = [table] if table else []
        if orphans:
            blocks.append("No same-budget from-scratch run for " + ", ".join(orphans) + ".")
        if blocks:
            result.append(Section(arch, blocks, level=3))
    result.append(papers_section(study))
    against_pixels = pixels_section(study)
    if against_pixels:
        result.append(against_pixels)
    latencies = latency_table(study)
    if latencies:
        result.append(Section("Latency by architecture", [
            "Batch-1 latency of every run's network, grouped by architecture and input size: "
            "a float network's speed does not depend on its weights, so the spread is the "
            "machine's noise, and the plots and headline use the median.", latencies]))
    result.append(Section("Training budget", [
        budget_table(study),
        *([figures["training_curves"]] if figures.get("training_curves") else [])]))
    return result
