"""One evaluation run: frozen features once (cached), then k-NN, linear probe and few-shot;
and, asked for by name, fine-tuning (:mod:`~seedzoo.evaluation.finetune`) and the run's own
classifier (:mod:`~seedzoo.evaluation.classifier`).

    from seedzoo.evaluation import evaluate, load_encoder
    report = evaluate(load_encoder("pixels"), "fashion-mnist", spec="pixels", protocols=["knn"])
    report["metrics"]["knn_top1@20"]

The result is a report in the schema of :mod:`seedzoo.results`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from seedzoo.data.subsets import fraction_label
from seedzoo.data.transforms import transform_for
from seedzoo.errors import SeedzooError
from seedzoo.evaluation.classifier import classifier_model, classifier_scores
from seedzoo.evaluation.features import FeatureCache, MemoryFeatureCache, dataset_features
from seedzoo.evaluation.finetune import FineTuneOptions, check_finetunable, finetune_scores
from seedzoo.evaluation.knn import DEFAULT_KS, knn_scores
from seedzoo.evaluation.linear import LinearProbe, fewshot_probe, linear_probe
from seedzoo.results import make_report
from seedzoo.zoo.hub import split_revision
from seedzoo.zoo.pretrained import weights_fingerprint

# Protocols on frozen features (the default), then those that train or score a whole network.
FROZEN_PROTOCOLS = ("knn", "linear", "fewshot")
PROTOCOLS = (*FROZEN_PROTOCOLS, "finetune", "classifier")
FEWSHOT_FRACTIONS = {fraction_label(f): f for f in (0.01, 0.1)}


def parse_protocols(text: str | Sequence[str]) -> list[str]:
    """``"knn,linear"`` (or a list) -> validated protocol names in run order."""
    names = [n.strip() for n in (text.split(",") if isinstance(text, str) else text) if n.strip()]
    unknown = sorted(set(names) - set(PROTOCOLS))
    if unknown or not names:
        raise SeedzooError(f"Unknown protocol(s) {', '.join(unknown) or '(none given)'}; "
                           f"choose from {', '.join(PROTOCOLS)}.")
    return [p for p in PROTOCOLS if p in names]


def model_identity(model) -> dict:
    """Architecture and hub revision recorded on a model's ``pretrained_cfg``, when known, and
    for an exported file the fingerprint of the torch weights it was made from."""
    cfg = dict(getattr(model, "pretrained_cfg", None) or {})
    _, revision = split_revision(cfg.get("hf_hub_id") or "")
    identity = {"arch": cfg.get("architecture"), "revision": revision or cfg.get("revision")}
    source = (getattr(model, "metadata", None) or {}).get("weights_sha256")
    if source:
        identity["source_weights_sha256"] = source
    return identity


def _probe_settings(probe: LinearProbe) -> dict:
    return {"weight_decays": list(probe.weight_decays), "epochs": probe.epochs,
            "min_steps": probe.min_steps, "batch_size": probe.batch_size, "lr": probe.lr,
            "momentum": probe.momentum, "heldout_fraction": probe.heldout_fraction,
            "standardise": True, "schedule": "cosine"}


def evaluate(model, dataset: str, *, spec: str, protocols: Sequence[str] = FROZEN_PROTOCOLS,
             root=None, seed: int = 0, ks: Sequence[int] = DEFAULT_KS,
             temperature: float = 0.07, knn_weights: str = "distance",
             probe_options: dict | None = None, finetune_options: dict | None = None,
             classifier=None, limit_train: int | None = None,
             limit_test: int | None = None, cache_dir=None, use_cache: bool = True,
             batch_size: int = 256, num_workers: int = 0, device=None, progress: bool = True,
             config: dict | None = None) -> dict:
    """Evaluate ``model`` on ``dataset`` (train split -> test split); return a report.

    ``spec`` is how the model was named (recorded, and part of the feature-cache key).
    ``probe_options`` go to :class:`LinearProbe` (for the linear and few-shot protocols),
    ``finetune_options`` to :class:`~seedzoo.evaluation.finetune.FineTuneOptions`;
    ``classifier`` (an ``nn.Linear``) is the head the classifier protocol scores, by default the
    one kept beside the encoder folder ``spec`` names. ``limit_train`` / ``limit_test``
    evaluate on seeded random subsets for quick runs; ``use_cache=False`` keeps the features in
    memory for this call only (each split is still extracted once); ``config`` adds entries to
    the report's configuration (e.g. the backend). Options, the model and the classifier are
    checked before any work.
    """
    protocols = parse_protocols(protocols)
    probe_options = {"seed": seed, **(probe_options or {})}
    probe = LinearProbe(**probe_options)  # validates the options before any extraction
    finetune = FineTuneOptions(**(finetune_options or {}))
    if "finetune" in protocols:
        check_finetunable(model)
    if "classifier" in protocols:
        scored = classifier_model(model, spec, dataset, root=root, classifier=classifier)
    fingerprint = weights_fingerprint(model)
    cache = FeatureCache(cache_dir) if use_cache else MemoryFeatureCache()
    extraction = {"batch_size": batch_size, "num_workers": num_workers, "device": device,
                  "progress": progress}
    seconds = {}
    settings = {"model": spec, **model_identity(model), "weights_sha256": fingerprint,
                "backend": "torch", "feature_dim": None,   # measured by the frozen protocols
                "transform": repr(transform_for(model)), "dataset": dataset,
                "train_split": "train", "test_split": "test", "limit_train": limit_train,
                "limit_test": limit_test, "seed": seed, "protocols": protocols, **(config or {})}
    metrics = {}
    if set(protocols) & set(FROZEN_PROTOCOLS):
        started = time.perf_counter()
        features = {}
        for split, limit in (("train", limit_train), ("test", limit_test)):
            features[split] = dataset_features(
                model, dataset, split, spec=spec, root=root, limit=limit, seed=seed, cache=cache,
                fingerprint=fingerprint, **extraction)
        seconds["features"] = time.perf_counter() - started
        (train_x, train_y), (test_x, test_y) = features["train"], features["test"]
        settings.update(feature_dim=int(train_x.shape[1]), train_size=len(train_y),
                        test_size=len(test_y))
    if "knn" in protocols:
        started = time.perf_counter()
        used = sorted({min(int(k), len(train_y)) for k in ks})
        metrics.update(knn_scores(train_x, train_y, test_x, test_y, ks=used,
                                  temperature=temperature, weights=knn_weights))
        settings["knn"] = {"ks": used, "temperature": temperature, "weights": knn_weights,
                           "metric": "cosine"}
        seconds["knn"] = time.perf_counter() - started
    if "linear" in protocols:
        started = time.perf_counter()
        result = linear_probe(train_x, train_y, test_x, test_y, **probe_options)
        metrics["linear_top1"], metrics["linear_top5"] = result["top1"], result["top5"]
        settings["linear"] = {**_probe_settings(probe), "weight_decay": result["weight_decay"],
                              "heldout_top1": result["heldout_top1"]}
        seconds["linear"] = time.perf_counter() - started
    if "fewshot" in protocols:
        started = time.perf_counter()
        settings["fewshot"] = {}
        for name, fraction in FEWSHOT_FRACTIONS.items():
            result = fewshot_probe(train_x, train_y, test_x, test_y, fraction, **probe_options)
            metrics[f"fewshot_{name}_top1"] = result["top1"]
            metrics[f"fewshot_{name}_top5"] = result["top5"]
            settings["fewshot"][name] = {"fraction": fraction, "train_size": result["train_size"],
                                         "weight_decay": result["weight_decay"],
                                         "heldout_top1": result["heldout_top1"],
                                         "subset_sha256": result["subset_sha256"]}
        settings["fewshot"]["probe"] = _probe_settings(probe)
        seconds["fewshot"] = time.perf_counter() - started
    if "finetune" in protocols:
        started = time.perf_counter()
        tuned, settings["finetune"] = finetune_scores(
            model, dataset, spec=spec, options=finetune, root=root, seed=seed,
            limit_train=limit_train, limit_test=limit_test, probe_options=probe_options,
            cache=cache, fingerprint=fingerprint,
            **extraction)
        metrics.update(tuned)
        settings.setdefault("train_size", settings["finetune"]["train_size"])
        settings.setdefault("test_size", settings["finetune"]["test_size"])
        seconds["finetune"] = time.perf_counter() - started
    if "classifier" in protocols:
        started = time.perf_counter()
        result = classifier_scores(scored, dataset, spec=spec, root=root, limit=limit_test,
                                   seed=seed, **extraction)
        metrics["classifier_top1"], metrics["classifier_top5"] = result["top1"], result["top5"]
        settings["classifier"] = {"num_classes": scored.num_classes,
                                  "weights_sha256": weights_fingerprint(scored)}
        settings.setdefault("test_size", result["test_size"])
        seconds["classifier"] = time.perf_counter() - started
    return make_report(metrics, settings, seconds)
