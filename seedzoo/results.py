"""Evaluation results: one JSON file per run, and a readable table.

Schema (``"schema": "seedzoo-eval/1"``)::

    {
      "schema": "seedzoo-eval/1",
      "metrics": {                       # flat; accuracies as fractions in [0, 1]
        "knn_top1@10": 0.856, "knn_top5@10": 0.972, ...,   # every k evaluated (10, 20, 100, 200)
        "linear_top1": 0.843, "linear_top5": 0.996,
        "fewshot_1pct_top1": 0.74, "fewshot_1pct_top5": 0.97,
        "fewshot_10pct_top1": 0.81, "fewshot_10pct_top5": 0.99,
        "finetune_1pct_top1": 0.70, ..., "finetune_100pct_top5": 1.0,  # --protocol finetune
        "classifier_top1": 0.88, "classifier_top5": 0.99             # --protocol classifier
      },
      "config": {                        # everything needed to reproduce the numbers
        "model": "<spec>", "arch": "<timm architecture or null>",
        "revision": "<hub commit or null>",
        "weights_sha256": "<fingerprint>", "backend": "torch" | "onnxruntime", "onnx": null,
        "feature_dim": 784,              # null when no frozen protocol (k-NN, linear) ran
        "transform": "<repr of the eval transform>",
        "dataset": "fashion-mnist", "train_split": "train", "test_split": "test",
        "train_size": 60000, "test_size": 10000, "limit_train": null, "limit_test": null,
        "seed": 0, "protocols": ["knn", "linear", "fewshot"],
        "knn": {"ks": [...], "temperature": 0.07, "weights": "distance"},
        "linear": {<probe settings>, "weight_decay": <chosen>, "heldout_top1": {...}},
        "fewshot": {"1pct": {"fraction": 0.01, "train_size": 600, "weight_decay": ...,
                             "subset_sha256": ...}, ...},
        "finetune": {<options>, "1pct": {"fraction": 0.01, "train_size": 600, "steps": ...,
                                         "final_loss": ..., "subset_sha256": ...}, ...},
        "classifier": {"num_classes": 10, "weights_sha256": <encoder + classifier>}
      },
      "versions": {"seedzoo": "...", "python": "...", "torch": "...", ...,
                   "seedzoo_commit": "<git commit, when run from a checkout>"},
      "seconds": {"features": ..., "knn": ..., "linear": ..., "fewshot": ..., "finetune": ...},
      "timestamp": "2025-01-01T00:00:00+00:00"
    }

Only the protocols that ran have metrics and config entries. Readers should rely on
``metrics`` and ``config`` and ignore keys they do not know.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path

from seedzoo.errors import SeedzooError
from seedzoo.files import write_text_atomic
from seedzoo.provenance import package_versions

SCHEMA = "seedzoo-eval/1"


def make_report(metrics: dict[str, float], config: dict, seconds: dict[str, float] | None = None
                ) -> dict:
    """A results document in the schema above, stamped with versions and the current time."""
    return {"schema": SCHEMA, "metrics": {k: float(v) for k, v in metrics.items()},
            "config": config, "versions": package_versions(),
            "seconds": {k: round(float(v), 2) for k, v in (seconds or {}).items()},
            "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def write_report(report: dict, path: str | os.PathLike) -> Path:
    """Write ``report`` as indented JSON, atomically (temp file + rename)."""
    return write_text_atomic(path, json.dumps(report, indent=2, sort_keys=False) + "\n")


def read_report(path: str | os.PathLike) -> dict:
    """Load a results file, checking that it is one."""
    try:
        report = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise SeedzooError(f"Cannot read results file {path}: {error}") from None
    if not isinstance(report, dict) or "metrics" not in report or "config" not in report:
        raise SeedzooError(f"{path} is not a seedzoo evaluation results file "
                           f"(no 'metrics' and 'config').")
    return report


def format_report(report: dict) -> str:
    """A plain-text table of the metrics (percent) headed by what was evaluated."""
    config = report.get("config", {})
    title = (f"{config.get('model', '?')} on {config.get('dataset', '?')}: "
             f"train {config.get('train_size', '?')}, test {config.get('test_size', '?')}")
    if config.get("feature_dim"):
        title += f", {config['feature_dim']}-d features"
    metrics = report.get("metrics", {})
    width = max([len("metric"), *map(len, metrics)])
    lines = [title, f"{'metric':<{width}}  {'%':>6}", f"{'-' * width}  {'-' * 6}"]
    lines += [f"{name:<{width}}  {100 * value:>6.2f}" for name, value in metrics.items()]
    return "\n".join(lines)
