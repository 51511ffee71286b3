"""A study's ``summary.json``: its schema, and a reader that checks it.

Schema (``"schema": "seedzoo-study/1"``), written by ``benchmarks/reproduce.py``::

    {
      "schema": "seedzoo-study/1",
      "dataset": "fashion-mnist",
      "machine": {"cpu": ..., "cores": 2, "torch": "2.14.1"},   # free-form (object or text)
      "commit": "<git sha>",
      "pixels": {"knn_top1@20": 0.816, ...},   # raw pixels on the same evaluation (optional)
      "rows": [{                               # one per evaluated network, names unique
        "name": "seed_resnet50_to_resnet18",
        "architecture": "resnet18",            # timm name
        "method": "seed",                      # registry name
        "variant": "label-free",               # optional: tells runs of one method apart
        "teacher": "moco_resnet50",            # or null
        "label_fraction": 0.0,                 # labels the run trained on: 0 to 1
        "images_seen": 30000, "epochs": 3, "wall_s": 612.0,
        "machine": "cpu-2core",
        "metrics": {"knn_top1@20": 0.738, "linear_top1": 0.80, ...},   # fractions
        "params": 11.2e6, "flops": 0.56e9, "input_size": [3, 32, 32],  # optional
        "latency_ms": {"onnx_fp32_b1": 0.9, "onnx_int8_b1": 1.1, "torch_fp32_b1": 7.0},
        "int8_accuracy_drop": {"knn_top1@20": 0.004},                   # optional, fractions
        "metrics_jsonl": "runs/<name>/metrics.jsonl",   # optional, relative to the study folder
        "curve": [{"images_seen": 10000, "knn_top1@20": 0.61}, ...]     # optional
      }, ...]
    }

Metric names are those of ``seedzoo eval`` (``knn_top1@20``, ``linear_top1``,
``fewshot_1pct_top1``, ``finetune_10pct_top1``, ``classifier_top1``, ...) plus
``transfer_<dataset>_<metric>`` for another dataset's figures. Keys this reader does not know
are kept and ignored.
"""

from __future__ import annotations

import json
import math
import os
import statistics
from dataclasses import dataclass
from pathlib import Path

from seedzoo.errors import SeedzooError

SCHEMA = "seedzoo-study/1"
SUMMARY_NAME = "summary.json"
# Display names of the metrics of ``seedzoo eval``, in the order the tables show them.
METRIC_TITLES = {"knn_top1@20": "k-NN@20", "knn_top1@200": "k-NN@200", "linear_top1": "linear",
                 "fewshot_1pct_top1": "few-shot 1%", "fewshot_10pct_top1": "few-shot 10%",
                 "finetune_1pct_top1": "fine-tune 1%", "finetune_10pct_top1": "fine-tune 10%",
                 "finetune_100pct_top1": "fine-tune 100%", "classifier_top1": "classifier"}
REMEDY = ("Regenerate it with `python benchmarks/reproduce.py`, or fix the fields listed "
          "(the schema: docs/report.md).")


def metric_title(key: str) -> str:
    """How a table or an axis names the metric ``key`` (``transfer_digits_linear_top1``:
    ``digits linear``)."""
    if key.startswith("transfer_") and "_" in key[len("transfer_"):]:
        dataset, metric = key[len("transfer_"):].split("_", 1)
        return f"{dataset} {metric_title(metric)}"
    return METRIC_TITLES.get(key, key)


def metric_order(keys) -> list[str]:
    """The metrics of :data:`METRIC_TITLES` among ``keys`` in table order, then their
    transfers to other datasets by name (top-5 and other k-NN k's are left out)."""
    keys = set(keys)
    transfers = {key for key in keys if key.startswith("transfer_")
                 and key[len("transfer_"):].partition("_")[2] in METRIC_TITLES}
    return [key for key in METRIC_TITLES if key in keys] + sorted(transfers)


@dataclass(frozen=True)
class Run:
    """One row of a study: an evaluated network and how it was trained."""

    name: str
    architecture: str
    method: str
    variant: str | None
    teacher: str | None
    label_fraction: float
    images_seen: int
    epochs: float
    wall_s: float
    machine: str
    metrics: dict[str, float]
    params: float | None = None
    flops: float | None = None
    input_size: tuple[int, ...] | None = None
    latency_ms: dict[str, float] | None = None
    int8_accuracy_drop: dict[str, float] | None = None
    metrics_jsonl: Path | None = None
    curve: tuple[dict[str, float], ...] = ()

    @property
    def label(self) -> str:
        """The method, with its variant where it has one."""
        return f"{self.method} ({self.variant})" if self.variant else self.method

    @property
    def title(self) -> str:
        """The label, with the teacher where there is one."""
        return f"{self.label} from {self.teacher}" if self.teacher else self.label


@dataclass(frozen=True)
class Study:
    """A study's summary: its runs and what they were measured against."""

    path: Path
    dataset: str
    machine: dict | str | None
    commit: str | None
    pixels: dict[str, float]
    runs: tuple[Run, ...]

    @property
    def architectures(self) -> list[str]:
        return sorted({run.architecture for run in self.runs})

    def latencies(self, run: Run, key: str) -> list[float]:
        """Every ``key`` latency (ms) measured on a run of ``run``'s architecture and input size."""
        return [other.latency_ms[key] for other in self.runs
                if (other.architecture, other.input_size) == (run.architecture, run.input_size)
                and (other.latency_ms or {}).get(key) is not None]

    def typical_latency(self, run: Run, key: str) -> float | None:
        """The median of :meth:`latencies`: a float network's speed does not depend on its
        weights, and one measurement on a shared machine is noisy."""
        measured = self.latencies(run, key)
        return statistics.median(measured) if measured else None


def best_first(runs) -> list[Run]:
    """Runs by k-NN@20, best first (runs without it last), then by name."""
    return sorted(runs, key=lambda run: (-run.metrics.get("knn_top1@20", -1), run.name))


def _is_number(value) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def _text(value) -> str | None:
    return None if isinstance(value, str) and value else "is not a non-empty string"


def _positive(value) -> str | None:
    return None if _is_number(value) and value > 0 else "is not a positive number"


def _fraction(value) -> str | None:
    if not _is_number(value):
        return "is not a number"
    if not 0 <= value <= 1:
        hint = " (percent given? write fractions: 0.738, not 73.8)" if 1 < value <= 100 else ""
        return f"is {value}, not a fraction in [0, 1]{hint}"
    return None


def _mapping(check):
    def check_mapping(value) -> str | None:
        if not isinstance(value, dict):
            return "is not an object"
        problems = [f"[{key!r}] {problem}" for key, item in value.items()
                    if (problem := check(item))]
        return "; ".join(problems) or None
    return check_mapping


def _drop(value) -> str | None:
    return None if _is_number(value) and -1 <= value <= 1 else "is not a fraction in [-1, 1]"


def _size(value) -> str | None:
    ok = isinstance(value, list) and value and all(isinstance(v, int) and v > 0 for v in value)
    return None if ok else "is not a list of positive integers"


def _curve(value) -> str | None:
    if not isinstance(value, list):
        return "is not a list"
    for index, point in enumerate(value):
        if not isinstance(point, dict) or _positive(point.get("images_seen")):
            return f"[{index}] has no positive images_seen"
        if problem := _mapping(_fraction)({k: v for k, v in point.items() if k != "images_seen"}):
            return f"[{index}] {problem}"
    return None


# Row fields: the check of each, and whether it may be absent (or null).
_ROW_FIELDS = {
    "name": (_text, False), "architecture": (_text, False), "method": (_text, False),
    "variant": (_text, True), "teacher": (_text, True), "label_fraction": (_fraction, False),
    "images_seen": (_positive, False), "epochs": (_positive, False), "wall_s": (_positive, False),
    "machine": (_text, False), "metrics": (_mapping(_fraction), False),
    "params": (_positive, True), "flops": (_positive, True), "input_size": (_size, True),
    "latency_ms": (_mapping(_positive), True), "int8_accuracy_drop": (_mapping(_drop), True),
    "metrics_jsonl": (_text, True), "curve": (_curve, True),
}


def _row_problems(row, index: int) -> list[str]:
    if not isinstance(row, dict):
        return [f"rows[{index}] is not an object"]
    where = f"rows[{index}]" + (f" ({row['name']})" if isinstance(row.get("name"), str) else "")
    problems = []
    for field, (check, optional) in _ROW_FIELDS.items():
        if row.get(field) is None:
            if not optional:
                problems.append(f"{where}: '{field}' is missing")
        elif problem := check(row[field]):
            problems.append(f"{where}: '{field}' {problem}")
    return problems


def _problems(document) -> list[str]:
    if not isinstance(document, dict):
        return ["the file does not hold a JSON object"]
    problems = []
    if document.get("schema") != SCHEMA:
        problems.append(f"'schema' is {document.get('schema')!r}, not {SCHEMA!r}")
    if problem := _text(document.get("dataset")):
        problems.append(f"'dataset' {problem}")
    if document.get("commit") is not None and (problem := _text(document["commit"])):
        problems.append(f"'commit' {problem}")
    if document.get("pixels") is not None and (problem := _mapping(_fraction)(document["pixels"])):
        problems.append(f"'pixels' {problem}")
    rows = document.get("rows")
    if not isinstance(rows, list) or not rows:
        return [*problems, "'rows' is missing or empty: the study has no run"]
    for index, row in enumerate(rows):
        problems += _row_problems(row, index)
    names = [row.get("name") for row in rows if isinstance(row, dict)]
    problems += [f"the name {name!r} is given to {names.count(name)} rows"
                 for name in sorted({n for n in names if isinstance(n, str)})
                 if names.count(name) > 1]
    return problems


def summary_path(study: str | os.PathLike) -> Path:
    """The summary of ``study``: the file itself, or ``summary.json`` in the folder."""
    path = Path(study)
    return path / SUMMARY_NAME if path.is_dir() else path


def _run(row: dict, folder: Path) -> Run:
    jsonl = row.get("metrics_jsonl")
    return Run(
        name=row["name"], architecture=row["architecture"], method=row["method"],
        variant=row.get("variant"), teacher=row.get("teacher"),
        label_fraction=row["label_fraction"], images_seen=row["images_seen"],
        epochs=row["epochs"], wall_s=row["wall_s"], machine=row["machine"],
        metrics=row["metrics"], params=row.get("params"), flops=row.get("flops"),
        input_size=tuple(row["input_size"]) if row.get("input_size") else None,
        latency_ms=row.get("latency_ms"), int8_accuracy_drop=row.get("int8_accuracy_drop"),
        metrics_jsonl=folder / jsonl if jsonl else None, curve=tuple(row.get("curve") or ()))


def read_study(study: str | os.PathLike) -> Study:
    """The study in ``study`` (its folder or its ``summary.json``), checked against the schema;
    a :class:`SeedzooError` lists every problem found."""
    path = summary_path(study)
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError:
        raise SeedzooError(f"No study summary at {path}: run `python benchmarks/reproduce.py` to "
                           "make one, or give the folder that holds its summary.json "
                           "(--study FOLDER).") from None
    except json.JSONDecodeError as error:
        raise SeedzooError(f"{path} is not valid JSON ({error}). {REMEDY}") from None
    if problems := _problems(document):
        listed = "".join(f"\n  - {problem}" for problem in problems)
        raise SeedzooError(f"{path} is not a seedzoo study summary ({SCHEMA}):{listed}\n{REMEDY}")
    return Study(path=path, dataset=document["dataset"], machine=document.get("machine"),
                 commit=document.get("commit"), pixels=document.get("pixels") or {},
                 runs=tuple(_run(row, path.parent) for row in document["rows"]))


def training_log(run: Run) -> list[dict]:
    """The rows of ``run``'s ``metrics.jsonl`` (empty when it has none or the file is gone),
    each with ``images_seen`` added from its fractional ``epoch``; a line a killed run cut
    short is skipped."""
    if run.metrics_jsonl is None or not run.metrics_jsonl.is_file():
        return []
    per_epoch = run.images_seen / run.epochs
    rows = []
    for line in run.metrics_jsonl.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and _is_number(row.get("epoch")):
            rows.append({**row, "images_seen": row["epoch"] * per_epoch})
    return rows


def series(log: list[dict], run: Run, column: str) -> list[tuple[float, float]]:
    """``(images seen, value)`` of ``column`` in a training log. The k-NN monitor's column
    ``knn_top1`` (in %) is ``knn_top1_<architecture>`` where a run trained several networks
    named by their architecture (DoGo's peers)."""
    keys = (column, f"{column}_{run.architecture}")
    return [(row["images_seen"], row[key]) for row in log for key in keys
            if _is_number(row.get(key))]


def knn_curve(run: Run, log: list[dict]) -> list[tuple[float, float]]:
    """The run's k-NN curve in %: its ``curve`` (the study's k-NN@20) if given, else the
    trainer's k-NN monitor from its log."""
    if run.curve:
        return [(p["images_seen"], 100 * p["knn_top1@20"]) for p in run.curve
                if "knn_top1@20" in p]
    return series(log, run, "knn_top1")
