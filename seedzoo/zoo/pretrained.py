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

from seedzoo.errors import CheckpointError, ModelNotFoundError, SeedzooError
from seedzoo.files import atomic_write_path, write_text_atomic
from seedzoo.zoo.checkpoint_formats import (
    load_state_into,
    read_safetensors,
    sequential_from,
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
    them to ``config.json`` and timm can rebuild the same architecture. An ``img_size`` among
    them is also the input size of the preprocessing (``pretrained_cfg["input_size"]``), unless
    the overlay gives one: a model of fixed input size (Swin) takes no other.
    """
    if "img_size" in model_args and "input_size" not in (pretrained_cfg_overlay or {}):
        height, width = _pair(model_args["img_size"])
        pretrained_cfg_overlay = {**(pretrained_cfg_overlay or {}),
                                  "input_size": (model_args.get("in_chans", 3), height, width)}
    try:
        model = timm.create_model(arch, pretrained=False, num_classes=0,
                                  pretrained_cfg_overlay=pretrained_cfg_overlay, **model_args)
    except RuntimeError as error:
        if "Unknown model" in str(error):
            close = difflib.get_close_matches(arch.split(".")[0], timm.list_models(), n=8)
            hint = f" Similar timm names: {', '.join(close)}." if close else ""
            raise ModelNotFoundError(f"timm has no architecture {arch!r}.{hint}") from None
        raise
    cfg = model.pretrained_cfg
    if cfg.get("fixed_input_size") and "img_size" in model_args \
            and tuple(cfg["input_size"][1:]) != _pair(model_args["img_size"]):
        raise SeedzooError(f"{arch} is built for img_size {model_args['img_size']} but its "
                           f"pretrained_cfg input_size is {tuple(cfg['input_size'])}; it takes "
                           "only images of its img_size: give one of the two, or equal sizes.")
    model.model_args = dict(model_args)
    return model


@torch.no_grad()
def feature_dim(model: nn.Module) -> int:
    """Width of ``model``'s pooled output, measured by a forward pass at its own input size.

    (``num_features`` is not always the output width: timm's MobileNet-v3 returns its
    ``head_hidden_size`` features.)
    """
    input_size = tuple(model.pretrained_cfg.get("input_size", (3, 224, 224)))
    was_training = model.training
    model.eval()
    try:
        parameter = next(model.parameters())
        output = model(torch.zeros(1, *input_size, device=parameter.device, dtype=parameter.dtype))
    finally:
        model.train(was_training)
    if output.ndim != 2:
        raise SeedzooError(f"{type(model).__name__} returns {tuple(output.shape)} features, not a "
                           "pooled vector; use an encoder with global pooling.")
    return output.shape[1]


def _pair(size) -> tuple[int, int]:
    return tuple(size) if isinstance(size, (tuple, list)) else (size, size)


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


class MLPClassifier(nn.Sequential):
    """A classifier with hidden layers: ``Linear``, ``BatchNorm1d`` and ``ReLU`` layers, first and
    last a ``Linear`` (the last over the classes). A network fine-tuned from the first layers of
    its projection head (SimCLRv2) exports them this way, beside its encoder. ``in_features`` and
    ``out_features`` read as an ``nn.Linear``'s do.
    """

    def __init__(self, *layers: nn.Module):
        super().__init__(*layers)
        kinds = (nn.Linear, nn.BatchNorm1d, nn.ReLU)
        if len(self) < 2 or not isinstance(self[0], nn.Linear) \
                or not isinstance(self[-1], nn.Linear) \
                or not all(isinstance(layer, kinds) for layer in self):
            raise ValueError(f"An MLPClassifier is Linear/BatchNorm1d/ReLU layers from a Linear to "
                             f"a Linear; got {[type(layer).__name__ for layer in self]}.")

    @property
    def in_features(self) -> int:
        return self[0].in_features

    @property
    def out_features(self) -> int:
        return self[-1].out_features

    @property
    def hidden_layers(self) -> int:
        """The linear layers before the one over the classes."""
        return sum(isinstance(layer, nn.Linear) for layer in self) - 1


def save_classifier(classifier: nn.Linear | MLPClassifier, folder: str | os.PathLike,
                    classes: list[str] | None = None) -> Path:
    """Write ``classifier`` (a head on an encoder's pooled features) into the encoder ``folder``
    as ``classifier.safetensors`` and ``classifier.json`` (``num_classes``, ``in_features``,
    ``hidden_layers``, ``classes``: the class names, index = label, or null).

    A linear head is stored as "weight" and "bias"; an :class:`MLPClassifier` as its layers'
    indexed tensors ("0.weight", "1.running_mean", ...). The encoder files are left alone: timm
    and :func:`seedzoo.load` read the folder as before.
    """
    from safetensors.torch import save_file

    if not isinstance(classifier, (nn.Linear, MLPClassifier)):
        raise TypeError(f"save_classifier expects an nn.Linear or an MLPClassifier, got "
                        f"{type(classifier).__name__}.")
    if classes is not None and len(classes) != classifier.out_features:
        raise ValueError(f"{len(classes)} class names for a classifier of "
                         f"{classifier.out_features} classes.")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: (v.float() if v.is_floating_point() else v).detach().cpu().contiguous()
             for k, v in classifier.state_dict().items()}
    hidden_layers = 0
    if isinstance(classifier, MLPClassifier):
        hidden_layers = classifier.hidden_layers
    elif "bias" not in state:  # one layout for every linear head
        state["bias"] = torch.zeros(classifier.out_features)
    with atomic_write_path(folder / CLASSIFIER_WEIGHTS_NAME) as tmp:
        save_file(state, str(tmp), metadata={"format": "pt"})
    info = {"num_classes": classifier.out_features, "in_features": classifier.in_features,
            "hidden_layers": hidden_layers,
            "classes": None if classes is None else [str(c) for c in classes]}
    write_text_atomic(folder / CLASSIFIER_CONFIG_NAME, json.dumps(info, indent=2) + "\n")
    return folder


def has_classifier(folder: str | os.PathLike) -> bool:
    """Whether the encoder ``folder`` keeps a classifier beside the encoder."""
    return (Path(folder) / CLASSIFIER_WEIGHTS_NAME).is_file()


def _classifier_from(state: dict[str, torch.Tensor], weights: Path) -> nn.Linear | MLPClassifier:
    """The linear or MLP classifier whose tensors are ``state``."""
    if "weight" in state or "bias" in state:
        weight = state.get("weight")
        if weight is None or weight.ndim != 2 or set(state) - {"weight", "bias"}:
            raise CheckpointError(f"{weights} is not a linear classifier: it holds "
                                  f"{sorted(state)}, expected 'weight' (classes x features) and "
                                  "'bias'.")
        num_classes, in_features = weight.shape
        bias = state.get("bias", torch.zeros(num_classes))
        if tuple(bias.shape) != (num_classes,):
            raise CheckpointError(f"{weights}: bias of shape {tuple(bias.shape)} for a "
                                  f"{num_classes}-class classifier; save the classifier again.")
        classifier = nn.Linear(in_features, num_classes)
        classifier.load_state_dict({"weight": weight, "bias": bias})
        return classifier
    layers = sequential_from(state) if state else None
    try:
        return MLPClassifier(*(layers if layers is not None else ()))
    except ValueError:
        raise CheckpointError(f"{weights} is not a classifier: it holds {sorted(state)[:6]}, "
                              "expected 'weight' and 'bias' (a linear classifier) or the "
                              "indexed Linear/BatchNorm1d layers of an MLP classifier.") from None


def load_classifier(folder: str | os.PathLike) -> nn.Linear | MLPClassifier:
    """The classifier :func:`save_classifier` wrote into the encoder ``folder``, in eval mode;
    its class names (or None) are ``classifier.classes``."""
    folder = Path(folder)
    weights, info_path = folder / CLASSIFIER_WEIGHTS_NAME, folder / CLASSIFIER_CONFIG_NAME
    if not weights.is_file():
        raise ModelNotFoundError(f"{folder} keeps no classifier ({CLASSIFIER_WEIGHTS_NAME}): only "
                                 "runs of methods that train one (supervised, kd, finetune, "
                                 "simclrv2_distill) export it.")
    try:
        info = json.loads(info_path.read_text()) if info_path.is_file() else {}
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{info_path} is not valid JSON ({error}).") from None
    classifier = _classifier_from(read_safetensors(weights), weights)
    num_classes, in_features = classifier.out_features, classifier.in_features
    expected = {"num_classes": num_classes, "in_features": in_features}
    wrong = {k: info[k] for k in expected if k in info and info[k] != expected[k]}
    if wrong:
        raise CheckpointError(f"{info_path} says {wrong}, but {weights} holds a {num_classes} x "
                              f"{in_features} classifier; save the classifier again.")
    classes = info.get("classes")
    if classes is not None and len(classes) != num_classes:
        raise CheckpointError(f"{info_path} names {len(classes)} classes for a classifier of "
                              f"{num_classes}.")
    classifier.classes = classes
    return classifier.eval()


def check_classifier_fits(encoder: nn.Module, classifier: nn.Module, where: str = "") -> int:
    """The width of ``encoder``'s output, which ``classifier`` must take (else a
    ``CheckpointError``; ``where`` names the folder they came from)."""
    width = feature_dim(encoder)
    if classifier.in_features != width:
        place = f" in {where}" if where else ""
        raise CheckpointError(f"The classifier{place} takes {classifier.in_features} features, "
                              f"but its encoder gives {width}: they do not belong together.")
    return width


class EncoderClassifier(nn.Module):
    """An encoder and a linear classifier on its pooled features: ``model(images)`` gives logits.

    It answers as a timm classifier does: ``pretrained_cfg`` is the encoder's (so
    :func:`~seedzoo.data.transforms.transform_for` preprocesses as for the encoder),
    ``num_features`` the width of the encoder's pooled output (measured: timm's MobileNet-v3
    gives more than its ``num_features``), ``num_classes`` the classifier's outputs and
    ``classes`` their names (or None).
    """

    def __init__(self, encoder: nn.Module, classifier: nn.Module):
        super().__init__()
        self.num_features = check_classifier_fits(encoder, classifier)
        self.encoder, self.classifier = encoder, classifier

    @property
    def pretrained_cfg(self) -> dict:
        return self.encoder.pretrained_cfg

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
