"""The comparison tables of benchmarks/fmnist_distillation.sh, made from its committed JSONs.

    python benchmarks/distillation_table.py [FOLDER] [--readme README.md]

One row per evaluated network: method (with its variant: CRD's label terms, DoGo's shared views,
EsViT's view level alone,
the label fraction of a fine-tuning), architecture, images seen, training wall time, k-NN top-1
at k 20 and 200, linear top-1, few-shot 1% / 10% top-1 and the network's own classifier's top-1
(percent, "-" where not measured), the commit that trained it and its run. Rows are grouped by
architecture, best k-NN@20 first. Prints Markdown and writes it to ``table.md`` in the folder;
with ``--readme`` it also replaces the block between ``<!-- distillation -->`` and
``<!-- /distillation -->`` (``--block`` names another) in that file by the short table (method,
network and the metrics).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from seedzoo.files import replace_marked_block

METRICS = (("k-NN@20", "knn_top1@20"), ("k-NN@200", "knn_top1@200"), ("linear", "linear_top1"),
           ("few-shot 1%", "fewshot_1pct_top1"), ("few-shot 10%", "fewshot_10pct_top1"),
           ("classifier", "classifier_top1"))
FULL = ("method", "network", "images seen", "training", *(c for c, _ in METRICS), "commit", "run")
SHORT = ("method", "network", *(c for c, _ in METRICS))


def teacher_fraction(summary: dict, folder: Path) -> float | None:
    """The label fraction the run's teacher was fine-tuned on, from the teacher run's summary
    in ``folder`` (a SimCLRv2 distillation's teacher is a ``finetune`` run)."""
    source = (summary["config"]["method"].get("teacher") or {}).get("source")
    teacher = folder / f"{Path(source).name}_summary.json" if source else None
    if teacher is None or not teacher.is_file():
        return None
    return json.loads(teacher.read_text())["config"]["data"].get("label_fraction")


def method_label(summary: dict, folder: Path) -> str:
    """The registry name, with the variant a recipe chose where the name alone hides it."""
    options = summary["config"]["method"]
    label = f"`{summary['method']}`"
    if summary["method"] == "crd":
        terms = [name for name, key in (("KD", "kd_weight"), ("CE", "ce_weight"))
                 if options.get(key)]
        label += " + " + " + ".join(terms) if terms else " (label-free)"
    if summary["method"] == "dogo" and options.get("own_views") is False:
        label += " (shared views)"
    if summary["method"] == "esvit" and options.get("region_loss") is False:
        label += " (view level only)"
    fraction = summary["config"]["data"].get("label_fraction")
    if fraction:
        label += f" on {fraction:.0%} of the labels"
    if summary["method"] == "simclrv2_distill" and teacher_fraction(summary, folder):
        label += f" from a teacher fine-tuned on {teacher_fraction(summary, folder):.0%}"
    return label


def rows(folder: Path) -> list[dict[str, str]]:
    found = []
    for summary_path in sorted(folder.glob("*_summary.json")):
        name = summary_path.name.removesuffix("_summary.json")
        summary = json.loads(summary_path.read_text())
        images = summary["steps"] * summary["config"]["data"]["batch_size"]
        for network in sorted(summary["encoders"]):  # eval_<run>_<network>.json, if evaluated
            eval_path = folder / f"eval_{name}_{network}.json"
            if not eval_path.is_file():
                continue
            report = json.loads(eval_path.read_text())
            metrics = report["metrics"]
            arch = report["config"].get("arch") or network
            spec = summary["config"]["method"].get("encoder")
            if isinstance(spec, dict) and spec.get("model_args"):  # not the architecture's size
                arch += " (own model_args)"
            row = {"method": method_label(summary, folder), "network": arch,
                   "images seen": f"{images:,}",
                   "training": f"{summary['wall_time_s'] / 60:.1f} min",
                   "commit": str(summary["versions"].get("seedzoo_commit", "?"))[:12],
                   "run": name + ("" if network == "encoder" else f"/{network}"),
                   "_order": -metrics.get("knn_top1@20", 0.0)}
            for column, key in METRICS:
                row[column] = f"{100 * metrics[key]:.1f}" if key in metrics else "-"
            found.append(row)
    return sorted(found, key=lambda row: (row["network"], row["_order"]))


def markdown(table: list[dict[str, str]], columns: tuple[str, ...]) -> str:
    """The rows as a Markdown table of ``columns``, less the metrics no row has."""
    columns = [c for c in columns if any(row[c] != "-" for row in table)]
    numeric = {"images seen", "training", *(c for c, _ in METRICS)}
    lines = ["| " + " | ".join(columns) + " |",
             "|" + "|".join("---:" if c in numeric else "---" for c in columns) + "|"]
    lines += ["| " + " | ".join(row[c] for c in columns) + " |" for row in table]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", type=Path,
                        default=Path("benchmarks/results/fmnist_distillation"))
    parser.add_argument("--readme", type=Path, help="a Markdown file with the block to replace")
    parser.add_argument("--block", default="distillation",
                        help="the name of that block: <!-- NAME --> ... <!-- /NAME -->")
    args = parser.parse_args(argv)
    table = rows(args.folder)
    text = markdown(table, FULL)
    (args.folder / "table.md").write_text(text)
    if args.readme:
        replace_marked_block(args.readme, args.block, markdown(table, SHORT))
    print(text, end="")
    return text


if __name__ == "__main__":
    main()
