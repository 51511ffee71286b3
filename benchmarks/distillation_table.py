"""The comparison table of benchmarks/fmnist_distillation.sh, made from its committed JSONs.

    python benchmarks/distillation_table.py [benchmarks/results/fmnist_distillation]

One row per evaluated network: method, architecture, images seen, training wall time, k-NN top-1
at k 20 and 200, linear top-1 and few-shot 1% / 10% top-1 (percent), and the commit that trained
it. Prints Markdown; the same text is written to ``table.md`` in the folder.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

COLUMNS = (("k-NN@20", "knn_top1@20"), ("k-NN@200", "knn_top1@200"), ("linear", "linear_top1"),
           ("few-shot 1%", "fewshot_1pct_top1"), ("few-shot 10%", "fewshot_10pct_top1"))


def rows(folder: Path) -> list[list[str]]:
    found = []
    for summary_path in sorted(folder.glob("*_summary.json")):
        name = summary_path.name.removesuffix("_summary.json")
        summary = json.loads(summary_path.read_text())
        data = summary["config"]["data"]
        images = summary["steps"] * data["batch_size"]
        for eval_path in sorted(folder.glob(f"eval_{name}_*.json")):
            network = eval_path.stem.removeprefix(f"eval_{name}_")
            report = json.loads(eval_path.read_text())
            metrics, config = report["metrics"], report["config"]
            figures = [f"{100 * metrics[key]:.1f}" if key in metrics else "-"
                       for _, key in COLUMNS]
            found.append([f"`{summary['method']}`", config.get("arch") or network,
                          f"{images:,}", f"{summary['wall_time_s'] / 60:.1f} min", *figures,
                          str(summary["versions"].get("seedzoo_commit", "?"))[:12],
                          name + ("" if network == "encoder" else f"/{network}")])
    return found


def main(argv: list[str]) -> str:
    folder = Path(argv[0] if argv else "benchmarks/results/fmnist_distillation")
    header = ["method", "network", "images seen", "training", *(c for c, _ in COLUMNS),
              "commit", "run"]
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---" if i < 2 or i >= len(header) - 2 else "---:"
                            for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows(folder)]
    text = "\n".join(lines) + "\n"
    (folder / "table.md").write_text(text)
    print(text, end="")
    return text


if __name__ == "__main__":
    main(sys.argv[1:])
