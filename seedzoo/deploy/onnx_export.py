"""Export an encoder to ONNX that describes itself, and prove it computes what torch computes.

``export_onnx(model, "model.onnx")``:

1. exports with ``torch.onnx.export(..., dynamo=True)`` at an explicit opset (default 18) with a
   dynamic batch axis (input ``input`` (B, C, H, W), output ``features`` (B, D); an encoder
   with its classifier, :class:`~seedzoo.zoo.pretrained.EncoderClassifier`, outputs
   ``logits`` (B, classes));
2. records the preprocessing (input size, mean, std, interpolation, crop_pct, crop_mode), the
   architecture, what the output is (``output``: features or logits, with ``num_classes`` and
   ``classes`` for logits), the source model id and revision, a sha256 of the weights and the
   tool versions in the file's ``metadata_props``;
3. runs ``onnx.checker`` (with shape inference) on the graph;
4. validates it numerically against torch on real images of a registry dataset at batch 1 and
   8 (each side preprocessed by its own transform: torch's from the model, ORT's rebuilt from
   the file's metadata, so wrong metadata fails as surely as a wrong weight);
5. only then moves the file into place; a file that fails validation is never left at ``path``.

Why the dynamo exporter rather than the TorchScript one (``dynamo=False``): both graphs
reproduce torch and run equally fast once ORT has optimised them, but the dynamo graph is
smaller, it exports a ViT from symbolic shapes where the TorchScript tracer warns that it
bakes a traced tensor into a Python constant, and the TorchScript exporter is deprecated and
scheduled for removal. Its cost is a slower export, paid once per model.

Graph simplification: the dynamo exporter's own optimiser (``optimize=True``: constant
folding, BatchNorm folding, dead and redundant op removal; what onnxsim does) is kept on:
without it the graphs are several times larger and ORT runs them slower. Saving ORT's
offline-optimised graph (ORT_ENABLE_EXTENDED) on top gained nothing, so it is not done;
onnxsim is not needed. The measurements: docs/design-notes.md, onnx_export.py.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from seedzoo.data.datasets import get_dataset
from seedzoo.data.transforms import data_config_for, transform_for
from seedzoo.deploy.runtime import PREPROCESSING_KEYS, OrtEncoder, decode_metadata
from seedzoo.errors import DatasetNotFoundError, SeedzooError
from seedzoo.files import atomic_write_path
from seedzoo.provenance import __version__ as seedzoo_version
from seedzoo.zoo.hub import hub_spec, split_revision
from seedzoo.zoo.pretrained import feature_dim, weights_fingerprint

DEFAULT_OPSET = 18
MIN_OPSET = 17
EXPORTER = "torch.onnx dynamo"
INPUT_NAME = "input"
OUTPUT_NAME = "features"
LOGITS_NAME = "logits"
VALIDATION_BATCH_SIZES = (1, 8)
# fp32 kernels reorder sums differently from torch's: errors of 1e-6 relative to the largest
# feature are normal, a wrong weight or preprocessing gives errors of percents.
MAX_RELATIVE_ERROR = 1e-3
MIN_COSINE = 0.9999


@dataclass
class BatchCheck:
    """torch vs ONNX Runtime on one batch of real images."""

    batch_size: int
    max_abs_error: float
    relative_error: float  # max abs error / largest |feature| of torch
    min_cosine: float  # lowest per-image cosine similarity


@dataclass
class ValidationReport:
    """Numerical agreement of an ONNX file with its torch model."""

    dataset: str
    checks: list[BatchCheck]
    max_relative_error: float = MAX_RELATIVE_ERROR
    min_cosine_required: float = MIN_COSINE

    @property
    def max_abs_error(self) -> float:
        return max(check.max_abs_error for check in self.checks)

    @property
    def min_cosine(self) -> float:
        return min(check.min_cosine for check in self.checks)

    def to_dict(self) -> dict:
        return {**asdict(self), "max_abs_error": self.max_abs_error,
                "min_cosine": self.min_cosine}

    def summary(self) -> str:
        return "; ".join(f"batch {c.batch_size}: max abs error {c.max_abs_error:.2e}, "
                         f"cosine >= {c.min_cosine:.6f}" for c in self.checks)


@dataclass
class ExportReport:
    """What :func:`export_onnx` wrote and how it was checked."""

    path: Path
    opset: int
    exporter: str
    seconds: float
    size_bytes: int
    nodes: int
    metadata: dict
    validation: ValidationReport


def model_source(model: nn.Module) -> tuple[str | None, str | None]:
    """``(model id, revision)`` of a model loaded from a hub, else ``(None, None)``.

    seedzoo's hub loader records ``hf_hub_id`` as ``org/name@<commit sha>``; timm's default
    configs name a hub id too (without a commit), but a freshly built model has none of its
    weights, so only a pinned id counts.
    """
    repo_id, revision = split_revision(str(dict(model.pretrained_cfg).get("hf_hub_id") or ""))
    return (hub_spec(repo_id), revision) if repo_id and revision else (None, None)


def output_name(model: nn.Module) -> str:
    """``logits`` for a model with a classifier (``num_classes`` > 0), else ``features``."""
    return LOGITS_NAME if getattr(model, "num_classes", 0) else OUTPUT_NAME


def export_metadata(model: nn.Module, *, model_id: str | None = None,
                    revision: str | None = None) -> dict[str, str]:
    """The ``metadata_props`` written into an exported file (all values are strings)."""
    import onnx
    import timm

    config = data_config_for(model)
    known_id, known_revision = model_source(model)
    output = output_name(model)
    values = {
        "architecture": model.pretrained_cfg.get("architecture", type(model).__name__),
        "model_id": model_id or known_id,
        "revision": revision or known_revision,
        "weights_sha256": weights_fingerprint(model),
        "output": output,
        # the output's width: timm's MobileNet-v3 gives more features than its num_features
        "num_features": int(model.num_features) if output == LOGITS_NAME else feature_dim(model),
        "num_classes": int(model.num_classes) if output == LOGITS_NAME else None,
        "classes": getattr(model, "classes", None) if output == LOGITS_NAME else None,
        "input_size": [int(v) for v in config["input_size"]],
        "mean": [float(v) for v in config["mean"]],
        "std": [float(v) for v in config["std"]],
        "interpolation": config["interpolation"],
        "crop_pct": float(config["crop_pct"]),
        "crop_mode": config.get("crop_mode", "center"),
        "exporter": EXPORTER,
        "seedzoo_version": seedzoo_version,
        "torch_version": torch.__version__,
        "timm_version": timm.__version__,
        "onnx_version": onnx.__version__,
    }
    return {key: json.dumps(value) if not isinstance(value, str) else value
            for key, value in values.items() if value is not None}


def read_onnx_metadata(path: str | os.PathLike) -> dict:
    """The decoded ``metadata_props`` of an ONNX file (weights are not read)."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise SeedzooError(f"ONNX file {path} does not exist.")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as error:  # onnx raises DecodeError and friends
        raise SeedzooError(f"{path} is not a readable ONNX file ({type(error).__name__}).") \
            from None
    return decode_metadata({prop.key: prop.value for prop in proto.metadata_props})


def _check_exportable(model: nn.Module) -> None:
    if getattr(model, "preprocess", None) is not None:
        raise SeedzooError("This model brings its own preprocess callable, which ONNX metadata "
                           "cannot describe; only timm encoders (with a pretrained_cfg) are "
                           "exported.")
    if not hasattr(model, "pretrained_cfg") or not hasattr(model, "num_features"):
        raise SeedzooError(f"{type(model).__name__} is not a timm encoder (no pretrained_cfg / "
                           "num_features); load it with seedzoo.load.")


def _export_proto(model: nn.Module, opset: int, input_size):
    """The ONNX graph of ``model`` (dynamo exporter, dynamic batch, exporter's optimiser on)."""
    device = next(model.parameters()).device
    example = torch.randn(2, *input_size, device=device)  # torch.export specialises a batch of 1
    try:
        program = torch.onnx.export(
            model, (example,), None, dynamo=True, opset_version=opset,
            input_names=[INPUT_NAME], output_names=[output_name(model)],
            dynamic_shapes=({0: torch.export.Dim("batch")},), optimize=True, verbose=False)
    except Exception as error:  # torch.export / the ONNX translator raise many error types
        message = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise SeedzooError(f"torch.onnx (dynamo exporter, opset {opset}) could not export "
                           f"{model.pretrained_cfg.get('architecture')}: {type(error).__name__}: "
                           f"{message}") from error
    return program.model_proto


def export_onnx(model: nn.Module, path: str | os.PathLike, *, opset: int = DEFAULT_OPSET,
                model_id: str | None = None, revision: str | None = None,
                validate_dataset: str = "fashion-mnist", data_root: str | os.PathLike | None = None,
                batch_sizes=VALIDATION_BATCH_SIZES, max_relative_error: float = MAX_RELATIVE_ERROR,
                min_cosine: float = MIN_COSINE) -> ExportReport:
    """Export ``model`` to ``path`` as a checked, validated, self-describing ONNX file.

    ``model_id`` / ``revision`` name where the weights come from (defaults: the Hub id and
    commit a hub-loaded model records). Validation runs on the test split of
    ``validate_dataset``; a disagreement beyond the tolerances raises :class:`SeedzooError`
    and leaves nothing at ``path``.
    """
    import onnx

    if opset < MIN_OPSET:
        raise SeedzooError(f"Opset {opset} is too old; use {MIN_OPSET} or later "
                           f"(default {DEFAULT_OPSET}).")
    _check_exportable(model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    start = time.perf_counter()
    proto = _export_proto(model, opset, data_config_for(model)["input_size"])
    metadata = export_metadata(model, model_id=model_id, revision=revision)
    onnx.helper.set_model_props(proto, metadata)
    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as error:
        raise SeedzooError(f"The exported graph fails onnx.checker: {error}") from error
    with atomic_write_path(path) as tmp:  # only a validated graph replaces ``path``
        onnx.save(proto, str(tmp))
        validation = validate_onnx(tmp, model, dataset=validate_dataset, data_root=data_root,
                                   batch_sizes=batch_sizes, max_relative_error=max_relative_error,
                                   min_cosine=min_cosine)
    return ExportReport(path=path, opset=opset, exporter=EXPORTER,
                        seconds=time.perf_counter() - start, size_bytes=path.stat().st_size,
                        nodes=len(proto.graph.node), metadata=decode_metadata(metadata),
                        validation=validation)


def _metadata_mismatches(metadata: dict, model: nn.Module) -> list[str]:
    """Preprocessing entries where the file's metadata and the model's data config differ."""
    config = data_config_for(model)
    config.setdefault("crop_mode", "center")
    differences = []
    for key in PREPROCESSING_KEYS:
        expected, recorded = config.get(key), metadata.get(key)
        if isinstance(expected, (tuple, list)):
            same = recorded is not None and len(recorded) == len(expected) and np.allclose(
                np.asarray(recorded, dtype=float), np.asarray(expected, dtype=float))
        elif isinstance(expected, float):
            same = recorded is not None and math.isclose(float(recorded), expected, rel_tol=1e-6)
        else:
            same = recorded == expected
        if not same:
            differences.append(f"{key}: file says {recorded!r}, model uses {expected!r}")
    return differences


def _validation_images(dataset: str, data_root, count: int):
    try:
        images = get_dataset(dataset, "test", root=data_root)
    except DatasetNotFoundError as error:
        raise DatasetNotFoundError(f"{error} (Validation needs real images; any registry "
                                   "dataset works, e.g. --validate-dataset digits, which ships "
                                   "with scikit-learn.)") from None
    if len(images) < count:
        raise SeedzooError(f"{dataset} has {len(images)} test images; validation needs {count}.")
    picks = np.linspace(0, len(images) - 1, count).round().astype(int)
    return [images[int(i)][0] for i in picks]


def validate_onnx(path: str | os.PathLike, model: nn.Module, *, dataset: str = "fashion-mnist",
                  data_root: str | os.PathLike | None = None,
                  batch_sizes=VALIDATION_BATCH_SIZES,
                  max_relative_error: float = MAX_RELATIVE_ERROR,
                  min_cosine: float = MIN_COSINE) -> ValidationReport:
    """Check that the ONNX file at ``path`` computes ``model``'s features on real images.

    The file's preprocessing metadata must match the model's data config, and at every batch
    size the ORT features must be within ``max_relative_error`` (max abs error / largest torch
    feature) and have a cosine similarity of at least ``min_cosine`` with torch's, image by
    image. Anything else raises :class:`SeedzooError` saying what differs.
    """
    path = Path(path)
    encoder = OrtEncoder(path)
    differences = _metadata_mismatches(encoder.metadata, model)
    if differences:
        raise SeedzooError(f"{path.name}'s preprocessing metadata does not match the model "
                           f"({'; '.join(differences)}). Re-export it from this model.")
    images = _validation_images(dataset, data_root, max(batch_sizes))
    torch_transform, ort_transform = transform_for(model), transform_for(encoder)
    torch_batch = torch.stack([torch_transform(image) for image in images])
    ort_batch = torch.stack([ort_transform(image) for image in images])
    device = next(model.parameters()).device
    checks = []
    for batch_size in batch_sizes:
        with torch.inference_mode():
            expected = model(torch_batch[:batch_size].to(device)).float().cpu().numpy()
        actual = encoder(ort_batch[:batch_size]).numpy()
        if actual.shape != expected.shape:
            raise SeedzooError(f"{path.name} returns features of shape {actual.shape} at batch "
                               f"{batch_size}; the model returns {expected.shape}.")
        error = np.abs(actual - expected)
        cosine = (actual * expected).sum(1) / np.maximum(
            np.linalg.norm(actual, axis=1) * np.linalg.norm(expected, axis=1), 1e-30)
        check = BatchCheck(batch_size, float(error.max()),
                           float(error.max() / max(float(np.abs(expected).max()), 1e-30)),
                           float(cosine.min()))
        if not (check.relative_error <= max_relative_error and check.min_cosine >= min_cosine):
            raise SeedzooError(
                f"{path.name} does not reproduce the torch model on {dataset} images at batch "
                f"{batch_size}: max abs error {check.max_abs_error:.3g} "
                f"({check.relative_error:.2g} of the largest feature; allowed "
                f"{max_relative_error:g}), lowest cosine similarity {check.min_cosine:.6f} "
                f"(required >= {min_cosine:g}). The graph or its weights differ from the model: "
                "re-export it, and do not edit the file afterwards.")
        checks.append(check)
    return ValidationReport(dataset, checks, max_relative_error, min_cosine)
