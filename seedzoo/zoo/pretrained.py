"""The on-disk format of a seedzoo encoder: timm's Hugging Face layout.

A folder holds ``config.json`` (architecture, num_features, global_pool, model_args,
pretrained_cfg) and ``model.safetensors`` (the encoder's weights, no heads), so that
``timm.create_model("local-dir:<folder>")`` and ``"hf-hub:org/name"`` read it without seedzoo.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import os
from pathlib import Path

import timm
import torch
from torch import nn

from seedzoo.errors import CheckpointError, ModelNotFoundError
from seedzoo.files import atomic_write_path, write_text_atomic
from seedzoo.zoo.checkpoint_formats import (
    load_state_into,
    read_safetensors,
    without_classifier,
)
from seedzoo.zoo.layout import (
    CLASSIFIER_CONFIG_NAME,
    CLASSIFIER_WEIGHTS_NAME,
    CONFIG_NAME,
    WEIGHTS_NAME,
)
from seedzoo.zoo.stems import apply_seedzoo_options, hide_small_stem, unhide_small_stem

# pretrained_cfg keys that describe where a checkpoint came from, not how to use it.
_SOURCE_KEYS = ("url", "file", "hf_hub_id", "hf_hub_filename", "source", "state_dict", "tag")


def create_encoder(arch: str, *, pretrained_cfg_overlay: dict | None = None,
                   **model_args) -> nn.Module:
    """A timm model as a feature encoder (``num_classes=0``) with random weights.

    ``model_args`` are extra ``timm.create_model`` arguments (e.g. a small-image stem); they
    are recorded on the model as ``model.model_args`` so that :func:`save_pretrained` can write
    them to ``config.json`` and timm can rebuild the same architecture.
    """
    try:
        model = timm.create_model(arch, pretrained=False, num_classes=0,
                                  pretrained_cfg_overlay=pretrained_cfg_overlay, **model_args)
    except RuntimeError as error:
        if "Unknown model" in str(error):
            close = difflib.get_close_matches(arch.split(".")[0], timm.list_models(), n=8)
            hint = f" Similar timm names: {', '.join(close)}." if close else ""
            raise ModelNotFoundError(f"timm has no architecture {arch!r}.{hint}") from None
        raise
    model.model_args = dict(model_args)
    return model


def training_preprocessing(data: dict) -> dict:
    """The ``pretrained_cfg`` entries a run's ``data`` recipe section implies: the training
    crops' size and normalisation, so evaluation preprocesses images as training did."""
    return {"input_size": (3, data["image_size"], data["image_size"]),
            "mean": tuple(data["mean"]), "std": tuple(data["std"]), "crop_pct": data["crop_pct"],
            "interpolation": (data.get("view_options") or {}).get("interpolation", "bilinear")}


def encoder_config(model: nn.Module) -> dict:
    """The ``config.json`` content for ``model`` (timm's ``save_config_for_hf`` layout)."""
    pretrained_cfg = {k: v for k, v in dict(model.pretrained_cfg).items()
                      if k not in _SOURCE_KEYS and v is not None}
    config = {"architecture": pretrained_cfg.pop("architecture"), "num_classes": 0,
              "num_features": int(model.num_features)}
    global_pool = getattr(model, "global_pool", None)
    pool_type = getattr(global_pool, "pool_type", global_pool)
    if isinstance(pool_type, str) and pool_type:
        config["global_pool"] = pool_type
    model_args = getattr(model, "model_args", None)
    if model_args:
        config["model_args"] = model_args
    seedzoo_options = getattr(model, "seedzoo_options", None)
    if seedzoo_options:  # changes timm cannot rebuild (see seedzoo.zoo.stems)
        config["seedzoo"] = dict(seedzoo_options)
    pretrained_cfg["num_classes"] = 0
    config["pretrained_cfg"] = pretrained_cfg
    return config


def save_pretrained(model: nn.Module, folder: str | os.PathLike) -> Path:
    """Write ``model`` (a timm encoder) to ``folder`` as ``config.json`` + ``model.safetensors``.
    A classifier head is left out: the folder holds the encoder. Its model card is written
    separately (:func:`seedzoo.zoo.card.write_card`), from the run and evaluation files.
    """
    from safetensors.torch import save_file

    if not isinstance(model, nn.Module) or not isinstance(getattr(model, "pretrained_cfg", None),
                                                          dict):
        raise TypeError(f"save_pretrained expects a timm encoder (an nn.Module with a "
                        f"pretrained_cfg, as seedzoo.load returns), got {type(model).__name__} "
                        f"{model!r:.60}.")

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = without_classifier(model.state_dict(), model.pretrained_cfg)
    state = {k: v.detach().cpu().contiguous() for k, v in hide_small_stem(state, model).items()}
    with atomic_write_path(folder / WEIGHTS_NAME) as tmp:
        save_file(state, str(tmp), metadata={"format": "pt"})
    write_text_atomic(folder / CONFIG_NAME,
                      json.dumps(encoder_config(model), indent=2, default=list) + "\n")
    return folder


def save_classifier(classifier: nn.Linear, folder: str | os.PathLike,
                    classes: list[str] | None = None) -> Path:
    """Write ``classifier`` (a linear head on an encoder's pooled features) into the encoder
    ``folder`` as ``classifier.safetensors`` ("weight", "bias") and ``classifier.json``
    (``num_classes``, ``in_features``, ``classes``: the class names, index = label, or null).
    The encoder files are left alone: timm and :func:`seedzoo.load` read the folder as before.
    """
    from safetensors.torch import save_file

    if not isinstance(classifier, nn.Linear):
        raise TypeError(f"save_classifier expects an nn.Linear, got {type(classifier).__name__}.")
    if classes is not None and len(classes) != classifier.out_features:
        raise ValueError(f"{len(classes)} class names for a classifier of "
                         f"{classifier.out_features} classes.")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().float().contiguous() for k, v in classifier.state_dict().items()}
    if "bias" not in state:  # one layout for every head
        state["bias"] = torch.zeros(classifier.out_features)
    with atomic_write_path(folder / CLASSIFIER_WEIGHTS_NAME) as tmp:
        save_file(state, str(tmp), metadata={"format": "pt"})
    info = {"num_classes": classifier.out_features, "in_features": classifier.in_features,
            "classes": None if classes is None else [str(c) for c in classes]}
    write_text_atomic(folder / CLASSIFIER_CONFIG_NAME, json.dumps(info, indent=2) + "\n")
    return folder


def has_classifier(folder: str | os.PathLike) -> bool:
    """Whether the encoder ``folder`` keeps a classifier beside the encoder."""
    return (Path(folder) / CLASSIFIER_WEIGHTS_NAME).is_file()


def load_classifier(folder: str | os.PathLike) -> nn.Linear:
    """The classifier :func:`save_classifier` wrote into the encoder ``folder``, in eval mode;
    its class names (or None) are ``classifier.classes``."""
    folder = Path(folder)
    weights, info_path = folder / CLASSIFIER_WEIGHTS_NAME, folder / CLASSIFIER_CONFIG_NAME
    if not weights.is_file():
        raise ModelNotFoundError(f"{folder} keeps no classifier ({CLASSIFIER_WEIGHTS_NAME}): only "
                                 "runs of methods that train one (supervised, kd) export it.")
    try:
        info = json.loads(info_path.read_text()) if info_path.is_file() else {}
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{info_path} is not valid JSON ({error}).") from None
    state = read_safetensors(weights)
    weight = state.get("weight")
    if weight is None or weight.ndim != 2 or set(state) - {"weight", "bias"}:
        raise CheckpointError(f"{weights} is not a linear classifier: it holds "
                              f"{sorted(state)}, expected 'weight' (classes x features) and "
                              "'bias'.")
    num_classes, in_features = weight.shape
    expected = {"num_classes": num_classes, "in_features": in_features}
    wrong = {k: info[k] for k in expected if k in info and info[k] != expected[k]}
    if wrong:
        raise CheckpointError(f"{info_path} says {wrong}, but {weights} holds a {num_classes} x "
                              f"{in_features} classifier; save the classifier again.")
    bias = state.get("bias", torch.zeros(num_classes))
    if tuple(bias.shape) != (num_classes,):
        raise CheckpointError(f"{weights}: bias of shape {tuple(bias.shape)} for a "
                              f"{num_classes}-class classifier; save the classifier again.")
    classifier = nn.Linear(in_features, num_classes)
    classifier.load_state_dict({"weight": weight, "bias": bias})
    classes = info.get("classes")
    if classes is not None and len(classes) != num_classes:
        raise CheckpointError(f"{info_path} names {len(classes)} classes for a classifier of "
                              f"{num_classes}.")
    classifier.classes = classes
    return classifier.eval()


class EncoderClassifier(nn.Module):
    """An encoder and a linear classifier on its pooled features: ``model(images)`` gives logits.

    It answers as a timm classifier does: ``pretrained_cfg`` is the encoder's (so
    :func:`~seedzoo.data.transforms.transform_for` preprocesses as for the encoder),
    ``num_features`` the encoder's feature size, ``num_classes`` the classifier's outputs and
    ``classes`` their names (or None).
    """

    def __init__(self, encoder: nn.Module, classifier: nn.Linear):
        super().__init__()
        width = int(encoder.num_features)
        if classifier.in_features != width:
            raise CheckpointError(f"The classifier takes {classifier.in_features} features, but "
                                  f"the encoder gives {width}: they do not belong together.")
        self.encoder, self.classifier = encoder, classifier

    @property
    def pretrained_cfg(self) -> dict:
        return self.encoder.pretrained_cfg

    @property
    def num_features(self) -> int:
        return int(self.encoder.num_features)

    @property
    def num_classes(self) -> int:
        return self.classifier.out_features

    @property
    def classes(self) -> list[str] | None:
        return getattr(self.classifier, "classes", None)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.encoder(images))


def read_config(folder: str | os.PathLike) -> dict:
    """Parse ``config.json`` of an encoder folder, with a clear error when it is not one."""
    path = Path(folder) / CONFIG_NAME
    if not path.is_file():
        raise ModelNotFoundError(f"{folder} is not an encoder folder: it has no {CONFIG_NAME}.")
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{path} is not valid JSON ({error}); re-download or re-save it.") \
            from None
    if "architecture" not in config:
        raise CheckpointError(f"{path} has no 'architecture' entry; it is not a timm config.")
    problem = pretrained_cfg_problem(config.get("pretrained_cfg") or {})
    if problem:
        raise CheckpointError(f"{path}: pretrained_cfg {problem}. Fix the file, or save the "
                              "encoder again with seedzoo.save_pretrained.")
    return config


def _finite_numbers(values, count: int) -> bool:
    return (isinstance(values, (list, tuple)) and len(values) == count
            and all(isinstance(v, (int, float)) and math.isfinite(v) for v in values))


def pretrained_cfg_problem(cfg: dict) -> str | None:
    """What makes a ``pretrained_cfg`` unusable for preprocessing, or None when it is sound."""
    size = cfg.get("input_size")
    if size is not None and not (_finite_numbers(size, 3) and all(
            int(v) == v and v > 0 for v in size)):
        return f"input_size must be 3 positive integers (channels, height, width), got {size}"
    channels = int(size[0]) if size is not None else 3
    for key in ("mean", "std"):
        if key in cfg and not _finite_numbers(cfg[key], channels):
            return f"{key} must be {channels} finite numbers, got {cfg[key]}"
    if "std" in cfg and min(cfg["std"]) <= 0:
        return f"std must be positive, got {cfg['std']}"
    crop = cfg.get("crop_pct")
    if crop is not None and not (isinstance(crop, (int, float)) and 0 < crop <= 1):
        return f"crop_pct must be in (0, 1], got {crop}"
    return None


def encoder_from_config(config: dict) -> nn.Module:
    """The encoder a ``config.json`` describes, with random weights and no classifier, also when
    the config (timm's own, e.g.) has ``num_classes`` in ``model_args``."""
    model_args = {k: v for k, v in config.get("model_args", {}).items() if k != "num_classes"}
    model = create_encoder(config["architecture"],
                           pretrained_cfg_overlay=config.get("pretrained_cfg"), **model_args)
    return apply_seedzoo_options(model, config.get("seedzoo"))


def load_pretrained_folder(folder: str | os.PathLike) -> nn.Module:
    """Build the encoder described by ``folder/config.json`` and load ``model.safetensors``,
    less the classifier a folder in timm's own format holds."""
    folder = Path(folder)
    config = read_config(folder)
    weights = folder / WEIGHTS_NAME
    if not weights.is_file():
        pickled = " Its pytorch_model.bin is a pickle, which seedzoo never loads: save it with " \
            "timm.models.save_for_hf(..., safe_serialization=True)." \
            if (folder / "pytorch_model.bin").is_file() else ""
        raise CheckpointError(f"{folder} has {CONFIG_NAME} but no {WEIGHTS_NAME}; only safetensors "
                              f"weights are read.{pickled}")
    model = encoder_from_config(config)
    state = without_classifier(unhide_small_stem(read_safetensors(weights)), model.pretrained_cfg)
    load_state_into(model, state, str(weights))
    return model.eval()


def weights_fingerprint(model) -> str:
    """A sha256 identifying the model's weights.

    Uses ``model.fingerprint`` when the model provides one (e.g. the hash of an ONNX file),
    else hashes every tensor of the state dict (names, dtypes, shapes and values).
    """
    own = getattr(model, "fingerprint", None)
    if isinstance(own, str) and own:
        return own
    digest = hashlib.sha256(type(model).__qualname__.encode())
    state = model.state_dict() if hasattr(model, "state_dict") else {}
    for name, tensor in sorted(state.items()):
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}".encode())
        digest.update(tensor.view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
