"""Model cards generated from what a run really produced.

:func:`gather_facts` collects what is known about an encoder folder: its ``config.json`` and
weights (architecture, parameters, input), the run summary written by ``seedzoo train``
(method, teacher, recipe, command, time), the evaluation JSONs written by ``seedzoo eval``
(a flat ``metrics`` dict per dataset) and optionally the latency JSON of ``seedzoo bench``.
:func:`model_card` turns those facts into a Hugging Face ``ModelCard``: YAML front matter with
``library_name: timm``, tags, datasets and a ``model-index`` the Hub renders, then the text.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from seedzoo.errors import SeedzooError
from seedzoo.files import dump_yaml, write_text_atomic
from seedzoo.results import read_report
from seedzoo.zoo.layout import CARD_NAME, SUMMARY_NAME, encoder_folder
from seedzoo.zoo.pretrained import (
    feature_dim,
    load_pretrained_folder,
    read_config,
    weights_fingerprint,
)

# seedzoo dataset names -> their Hugging Face Hub dataset ids, for the card's metadata.
HUB_DATASETS = {"fashion-mnist": "zalando-datasets/fashion_mnist", "mnist": "ylecun/mnist",
                "cifar10": "uoft-cs/cifar10", "cifar100": "uoft-cs/cifar100"}
# The Hub groups model-index results by task type and dataset (one task name per group); the
# metric names say the protocol. Fine-tuning and classifier figures widen the name.
TASK_NAME = "Image classification from frozen features (k-NN, linear and few-shot probes)"
WIDER_TASK_NAME = ("Image classification (k-NN, linear and few-shot probes on frozen features; "
                   "fine-tuning; the run's classifier)")
_TRAINED_PREFIXES = ("finetune_", "classifier_")
_PROTOCOLS = (("knn_", "weighted k-NN on the frozen, L2-normalised features, top-1/top-5 at each "
                       "k"),
              ("linear_", "linear probe on the frozen features"),
              ("fewshot_", "linear probes on the frozen features of class-balanced 1% and 10% "
                           "label subsets"),
              ("finetune_", "the whole encoder fine-tuned with a linear classifier on "
                            "class-balanced label subsets, the few-shot ones at 1% and 10%"),
              ("classifier_", "the classifier its run trained beside it"))


@dataclass(frozen=True)
class Evaluation:
    """One evaluation JSON: the dataset and split it measured, and its flat metrics."""

    dataset: str
    split: str
    metrics: dict[str, float]
    config: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ModelFacts:
    name: str
    architecture: str
    model_args: dict
    seedzoo_options: dict
    params: int
    num_features: int
    pretrained_cfg: dict
    method: str | None
    teacher: str | None
    train_dataset: str | None
    recipe: str | None
    command: str | None
    run_config: dict
    wall_time_s: float | None
    evaluations: list[Evaluation]
    latency: dict | None
    repo_id: str | None
    revision: str | None
    license: str = "apache-2.0"

    @property
    def input_size(self) -> tuple[int, ...]:
        return tuple(self.pretrained_cfg.get("input_size", (3, 224, 224)))

    @property
    def timm_loadable(self) -> bool:
        """Whether plain timm rebuilds this architecture (no seedzoo-only options)."""
        return not any(self.seedzoo_options.values())


def _read_json(source, what: str) -> dict:
    if isinstance(source, dict):
        return source
    path = Path(source)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise SeedzooError(f"The {what} {path} does not exist.") from None
    except json.JSONDecodeError as error:
        raise SeedzooError(f"The {what} {path} is not valid JSON ({error}).") from None


def read_evaluation(source) -> Evaluation:
    """An evaluation JSON of ``seedzoo eval`` (path or dict) as an :class:`Evaluation`."""
    result = source if isinstance(source, dict) else read_report(source)
    metrics, config = result.get("metrics"), result.get("config", {})
    if not isinstance(metrics, dict) or not metrics or "dataset" not in config:
        raise SeedzooError(f"{source if not isinstance(source, dict) else 'The evaluation'} is not "
                           "a seedzoo evaluation JSON: it needs a non-empty 'metrics' object and "
                           "'config.dataset' (write one with `seedzoo eval --out`).")
    numbers = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}
    return Evaluation(config["dataset"], config.get("test_split", "test"), numbers, config)


def _check_same_weights(source, fingerprint: str, folder: Path) -> None:
    """A :class:`SeedzooError` unless the evaluation or benchmark JSON ``source`` measured the
    weights whose :func:`~seedzoo.zoo.pretrained.weights_fingerprint` is ``fingerprint`` (an
    ONNX evaluation: the weights its file was exported from)."""
    result = _read_json(source, "results file")
    config = result.get("config") if isinstance(result.get("config"), dict) else {}
    model = result.get("model") if isinstance(result.get("model"), dict) else {}
    measured = (config.get("source_weights_sha256") or config.get("weights_sha256")
                or model.get("weights_sha256"))
    name = source if not isinstance(source, dict) else "A results file"
    if measured == fingerprint:
        return
    what = (f"other weights ({config.get('model') or model.get('model_id') or 'another model'}, "
            f"sha256 {measured[:12]}...) than {folder} ({fingerprint[:12]}...)" if measured
            else f"weights it does not identify (no weights_sha256), not provably {folder}'s")
    raise SeedzooError(f"{name} measured {what}: its figures are not this encoder's. Measure "
                       f"this one: seedzoo eval --model {folder} --out eval.json (or seedzoo "
                       f"bench --model {folder} ...).")


def _measured_on(evaluation: Evaluation) -> str:
    """The data an evaluation measured: its test split and training data, with their subsets."""
    config = evaluation.config

    def split(name: str, limit) -> str:
        return (f"a seeded {limit:,} images of the {name} split" if limit
                else f"the {name} split")

    training = split(config.get("train_split", "train"), config.get("limit_train"))
    return (f"{evaluation.dataset}: {split(evaluation.split, config.get('limit_test'))}, "
            f"training only on {training}")


def read_latency(source) -> dict | None:
    """The ONNX Runtime batch-1 latency of a ``seedzoo bench`` JSON, with its setting."""
    if source is None:
        return None
    bench = _read_json(source, "benchmark JSON")
    rows = [r for r in bench.get("results", []) if r.get("batch_size") == 1]
    ort = next((r for r in rows if r.get("backend") == "onnxruntime"
                and r.get("precision", "fp32") == "fp32"), None)
    if ort is None:
        raise SeedzooError("The benchmark JSON has no ONNX Runtime fp32 result at batch size 1 "
                           "(run `seedzoo bench --batch-sizes 1 ...`).")
    torch_row = next((r for r in rows if r.get("backend") == "torch"), None)
    int8 = next((r for r in rows if r.get("backend") == "onnxruntime"
                 and r.get("precision") == "int8"), None)
    machine = bench.get("machine")
    return {"latency_ms": ort["p50_ms"], "torch_ms": torch_row["p50_ms"] if torch_row else None,
            "int8_ms": int8["p50_ms"] if int8 else None, "batch_size": 1,
            "threads": bench.get("threads"),
            "machine": machine.get("cpu") if isinstance(machine, dict) else machine,
            "input_size": ort.get("input_size")}


def find_run_summary(run_dir: Path) -> dict | None:
    """The run summary JSON that ``seedzoo train`` leaves in its run folder, if any."""
    path = run_dir / SUMMARY_NAME
    return _read_json(path, "run summary") if path.is_file() else None


def _teacher_name(method: dict) -> str | None:
    """The teacher as the recipe names it (``source``, with its architecture when known)."""
    teacher = method.get("teacher")
    if not isinstance(teacher, dict):
        return teacher
    source, arch = teacher.get("source"), teacher.get("arch")
    if arch is None and source and (Path(source) / "config.json").is_file():
        arch = json.loads((Path(source) / "config.json").read_text()).get("architecture")
    return f"{source} ({arch})" if source and arch else source or arch


def gather_facts(folder_or_run: str | os.PathLike, *, name: str | None = None, run=None,
                 evaluations=(), bench=None, repo_id: str | None = None,
                 revision: str | None = None) -> ModelFacts:
    """Everything the card and the catalog say about an encoder, read from real files.

    ``run`` is the run summary (path, dict, or the run folder holding it; looked up in the run
    folder when omitted), ``evaluations`` evaluation JSONs (paths or dicts), ``bench`` a latency
    JSON.
    """
    folder = encoder_folder(folder_or_run)
    config = read_config(folder)
    model = load_pretrained_folder(folder)
    if run is None:
        run = find_run_summary(Path(folder_or_run)) or find_run_summary(folder.parent) or {}
    elif not isinstance(run, dict) and Path(run).is_dir():
        summary = find_run_summary(Path(run))
        if summary is None:
            raise SeedzooError(f"The run folder {run} has no run summary "
                               f"({SUMMARY_NAME}); give the summary's path, "
                               "or finish the run first.")
        run = summary
    run = _read_json(run, "run summary")
    run_config = run.get("config", {})
    method = run_config.get("method", {})
    measured, latency = [read_evaluation(e) for e in evaluations], read_latency(bench)
    fingerprint = weights_fingerprint(model)
    for source in [*evaluations, *([bench] if bench is not None else [])]:
        _check_same_weights(source, fingerprint, folder)
    return ModelFacts(
        name=name or (repo_id.split("/")[-1] if repo_id else folder.name),
        architecture=config["architecture"], model_args=config.get("model_args", {}),
        seedzoo_options=config.get("seedzoo", {}),
        params=sum(p.numel() for p in model.parameters()),
        num_features=feature_dim(model),
        pretrained_cfg=config.get("pretrained_cfg", {}),
        method=method.get("name"), teacher=_teacher_name(method),
        train_dataset=run_config.get("data", {}).get("dataset"),
        recipe=run.get("recipe"), command=run.get("command"), run_config=run_config,
        wall_time_s=run.get("wall_time_s"),
        evaluations=measured, latency=latency,
        repo_id=repo_id, revision=revision)


def _eval_results(facts: ModelFacts):
    from huggingface_hub import EvalResult

    results = []
    trained = any(m.startswith(_TRAINED_PREFIXES) for e in facts.evaluations for m in e.metrics)
    for evaluation in facts.evaluations:
        for metric, value in evaluation.metrics.items():
            results.append(EvalResult(
                task_type="image-classification",
                task_name=WIDER_TASK_NAME if trained else TASK_NAME,
                dataset_type=HUB_DATASETS.get(evaluation.dataset, evaluation.dataset),
                dataset_name=evaluation.dataset, dataset_split=evaluation.split,
                metric_type="accuracy", metric_name=metric, metric_value=value))
    return results


def _table(rows: list[list], header: list[str]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _body(facts: ModelFacts, plot: str | None = None) -> str:
    cfg = facts.pretrained_cfg
    size = "x".join(str(s) for s in facts.input_size[1:])
    spec = f"hf-hub:{facts.repo_id}" if facts.repo_id else "local-dir:<this folder>"
    if facts.teacher:
        how = f"distilled with {facts.method} from the frozen teacher `{facts.teacher}`"
    else:
        how = f"trained with {facts.method}" if facts.method else "saved"
    parts = [
        f"# {facts.name}\n",
        f"A {facts.params / 1e6:.2f}M-parameter `{facts.architecture}` image encoder {how}"
        + (f" on {facts.train_dataset}" if facts.train_dataset else "")
        + f" with seedzoo. It maps a {size} image to a "
        f"{facts.num_features}-d feature vector (no classifier head).\n",
        "## Use\n",
        "```python\nimport seedzoo\n\n"
        f'model = seedzoo.load("{spec}")           # eval mode, pretrained_cfg attached\n'
        "transform = seedzoo.transform_for(model)   # PIL image -> normalised tensor\n"
        "features = model(transform(image).unsqueeze(0))\n```\n",
    ]
    if facts.timm_loadable:
        parts.append("With timm alone:\n\n```python\nimport timm\n\n"
                     f'model = timm.create_model("{spec}", pretrained=True, num_classes=0)\n```\n')
    else:
        parts.append(f"This encoder uses seedzoo architecture options ({facts.seedzoo_options}) "
                     "that timm cannot rebuild: load it with `seedzoo.load`.\n")
    details = [["architecture", f"`{facts.architecture}`"],
               ["model arguments",
                f"`{json.dumps(facts.model_args)}`" if facts.model_args else "-"],
               ["parameters", f"{facts.params:,}"], ["feature size", facts.num_features],
               ["input", f"{facts.input_size}, mean {cfg.get('mean')}, std {cfg.get('std')}, "
                         f"{cfg.get('interpolation', 'bicubic')} resize, crop_pct "
                         f"{cfg.get('crop_pct')}"],
               ["method", facts.method or "-"], ["teacher", facts.teacher or "-"],
               ["training data", facts.train_dataset or "-"]]
    epochs = facts.run_config.get("train", {}).get("epochs")
    if epochs is not None:
        details.append(["epochs", epochs])
    if facts.wall_time_s is not None:
        details.append(["training loop time", f"{facts.wall_time_s / 60:.1f} min"])
    if facts.revision:
        details.append(["revision", f"`{facts.revision}`"])
    parts += ["## Model details\n", _table(details, ["", ""]) + "\n"]

    parts.append("## Results\n")
    if facts.evaluations:
        datasets = [e.dataset for e in facts.evaluations]
        metrics = list(dict.fromkeys(m for e in facts.evaluations for m in e.metrics))
        rows = [[m, *(f"{100 * e.metrics[m]:.2f}" if m in e.metrics else "-"
                      for e in facts.evaluations)] for m in metrics]
        protocols = [text for prefix, text in _PROTOCOLS if any(m.startswith(prefix)
                                                                 for m in metrics)]
        parts.append("Accuracy (%) measured with `seedzoo eval` ("
                     + "; ".join(protocols) + ") on "
                     + "; ".join(_measured_on(e) for e in facts.evaluations) + ".\n")
        parts.append(_table(rows, ["metric", *datasets]) + "\n")
    else:
        parts.append("Not evaluated yet.\n")
    if plot:
        parts.append(f"![This model among the other runs of its study]({plot})\n")
    if facts.latency:
        lat = facts.latency
        rows = [[name, f"{lat[key]:.2f}"] for name, key in
                (("ONNX Runtime fp32", "latency_ms"), ("ONNX Runtime INT8", "int8_ms"),
                 ("torch eager", "torch_ms")) if lat.get(key) is not None]
        parts += ["## Latency\n",
                  f"Median latency at batch 1, {lat.get('threads') or '?'} thread(s), on "
                  f"{lat.get('machine') or 'an unrecorded machine'} (`seedzoo bench`):\n",
                  _table(rows, ["backend", "ms"]) + "\n"]
    parts.append("## Reproduce\n")
    if facts.command:
        parts.append(f"```bash\n{facts.command}\n```\n")
    if facts.recipe:
        parts.append(f"Recipe: `{facts.recipe}`.\n")
    if facts.run_config:
        parts.append("The run's resolved recipe (`seedzoo train --config recipe.yaml` with this "
                     "file trains it again):\n\n```yaml\n"
                     + dump_yaml(facts.run_config) + "```\n")
    elif not facts.command:
        parts.append("No run summary was given for this card; the recipe is not recorded.\n")
    parts += [
        "## Intended use and limits\n",
        "- A frozen feature extractor for k-NN retrieval, linear probes and fine-tuning on images "
        f"like its training data{f' ({facts.train_dataset})' if facts.train_dataset else ''}, "
        f"at {size} pixels.\n"
        "- Figures come from the runs listed above; short CPU recipes are far from the paper-scale "
        "(ImageNet, 200 epochs) numbers and say nothing about other domains.\n"
        "- Not assessed for bias or robustness; do not use it alone for decisions about people.\n",
        "## Licence\n",
        f"Weights: {facts.license}. The training data keeps its own licence.\n",
    ]
    return "\n".join(parts)


def _tags(facts: ModelFacts) -> list[str]:
    tags = ["timm", "seedzoo", "image-feature-extraction", facts.architecture]
    if facts.method:
        tags += ["self-supervised", facts.method]
    if facts.teacher:
        tags.append("distillation")
    return tags


def model_card(facts: ModelFacts, plot: str | None = None):
    """The Hugging Face ``ModelCard`` for ``facts`` (front matter + text); ``plot``, a relative
    link to an image (e.g. a study's accuracy against latency), is shown under the results."""
    from huggingface_hub import ModelCard, ModelCardData

    datasets = [d for d in [facts.train_dataset, *(e.dataset for e in facts.evaluations)] if d]
    data = ModelCardData(
        library_name="timm", license=facts.license, pipeline_tag="image-feature-extraction",
        tags=_tags(facts),
        datasets=list(dict.fromkeys(HUB_DATASETS.get(d, d) for d in datasets)) or None,
        model_name=facts.name, eval_results=_eval_results(facts) or None)
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{_body(facts, plot)}")


def write_card(folder_or_run: str | os.PathLike, *, plot: str | None = None, **inputs) -> Path:
    """Write ``README.md`` (the model card) into the encoder folder; ``plot`` as in
    :func:`model_card`, ``inputs`` as in :func:`gather_facts`. Returns the card's path."""
    path = encoder_folder(folder_or_run) / CARD_NAME
    card = model_card(gather_facts(folder_or_run, **inputs), plot)
    return write_text_atomic(path, str(card))
