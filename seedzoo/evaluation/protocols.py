"""One evaluation run: features once (cached), then k-NN, linear probe and few-shot.

    from seedzoo.evaluation import evaluate, load_encoder
    report = evaluate(load_encoder("pixels"), "fashion-mnist", spec="pixels", protocols=["knn"])
    report["metrics"]["knn_top1@20"]

The result is a report in the schema of :mod:`seedzoo.results`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from seedzoo.data.transforms import transform_for
from seedzoo.errors import SeedzooError
from seedzoo.evaluation.features import FeatureCache, dataset_features
from seedzoo.evaluation.knn import DEFAULT_KS, knn_scores
from seedzoo.evaluation.linear import LinearProbe, fewshot_probe, linear_probe
from seedzoo.results import make_report
from seedzoo.zoo.hub import split_revision
from seedzoo.zoo.pretrained import weights_fingerprint

PROTOCOLS = ("knn", "linear", "fewshot")
FEWSHOT_FRACTIONS = {"1pct": 0.01, "10pct": 0.1}


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


def evaluate(model, dataset: str, *, spec: str, protocols: Sequence[str] = PROTOCOLS,
             root=None, seed: int = 0, ks: Sequence[int] = DEFAULT_KS,
             temperature: float = 0.07, knn_weights: str = "distance",
             probe_options: dict | None = None, limit_train: int | None = None,
             limit_test: int | None = None, cache_dir=None, use_cache: bool = True,
             batch_size: int = 256, num_workers: int = 0, device=None, progress: bool = True,
             config: dict | None = None) -> dict:
    """Evaluate the frozen ``model`` on ``dataset`` (train split -> test split); return a report.

    ``spec`` is how the model was named (recorded, and part of the feature-cache key).
    ``probe_options`` go to :class:`LinearProbe` (for the linear and few-shot protocols);
    ``limit_train`` / ``limit_test`` evaluate on seeded random subsets for quick runs;
    ``config`` adds entries to the report's configuration (e.g. the backend).
    """
    protocols = parse_protocols(protocols)
    probe_options = {"seed": seed, **(probe_options or {})}
    probe = LinearProbe(**probe_options)  # validates the options before any extraction
    fingerprint = weights_fingerprint(model)
    cache = FeatureCache(cache_dir) if use_cache else None
    seconds = {}

    started = time.perf_counter()
    features = {}
    for split, limit in (("train", limit_train), ("test", limit_test)):
        features[split] = dataset_features(
            model, dataset, split, spec=spec, root=root, limit=limit, seed=seed, cache=cache,
            fingerprint=fingerprint, batch_size=batch_size, num_workers=num_workers,
            device=device, progress=progress)
    seconds["features"] = time.perf_counter() - started
    (train_x, train_y), (test_x, test_y) = features["train"], features["test"]

    settings = {"model": spec, **model_identity(model), "weights_sha256": fingerprint,
                "backend": "torch", "feature_dim": int(train_x.shape[1]),
                "transform": repr(transform_for(model)), "dataset": dataset,
                "train_split": "train", "test_split": "test", "train_size": len(train_y),
                "test_size": len(test_y), "limit_train": limit_train, "limit_test": limit_test,
                "seed": seed, "protocols": protocols, **(config or {})}
    metrics = {}
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
                                         "heldout_top1": result["heldout_top1"]}
        settings["fewshot"]["probe"] = _probe_settings(probe)
        seconds["fewshot"] = time.perf_counter() - started
    return make_report(metrics, settings, seconds)
