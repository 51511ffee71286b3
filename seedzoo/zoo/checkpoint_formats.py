"""Backbone weights out of the checkpoint formats self-supervised learning code publishes.

:func:`backbone_state_dict` turns a loaded checkpoint into the state dict of a timm backbone and
a :class:`LoadReport` of what was taken and what was skipped, and why. Recognised layouts:

- MoCo v1/v2: ``{"state_dict": {"module.encoder_q.*", "module.encoder_k.*", "module.queue"}}``,
  the query encoder is taken and its ``fc`` head dropped (MoCo v3: ``module.base_encoder.*``);
- SimCLR converted to PyTorch: ``{"state_dict": <torchvision ResNet>}`` (``fc`` dropped);
- SwAV: ``module.*`` keys with ``projection_head`` and ``prototypes`` (dropped);
- DINO: ``{"teacher": ..., "student": ...}``; the teacher's ``backbone.*`` is taken, ``head.*``
  and the student dropped (a released ``*_pretrain.pth`` backbone is a plain state dict);
- EsViT: DINO's layout with a second, region-level head ``head_dense.*`` (dropped); its Swin
  backbones sit unprefixed in the teacher, in the Swin Transformer repository's key names;
- SEED: ``{"state_dict": {"module.student.*", "module.teacher.*", "module.queue"}}``; the
  trained student is taken, its ``fc`` MLP head dropped;
- a seedzoo training checkpoint: ``{"method": {"encoder.*", "head.*", ...}}``, the encoder is taken;
- torchvision, timm and seedzoo state dicts (``fc``/``head``/``classifier`` and the classifier
  the model's ``pretrained_cfg`` names dropped).

Buffers the model recomputes (Swin's ``relative_position_index`` and ``attn_mask``) are skipped.
A checkpoint that does not fit as it is goes through timm's own conversion for the
architecture, where timm has one (the ``checkpoint_filter_fn`` of the model's timm module: for
Swin it moves the original layout's patch merging from the end of stage i to the start of stage
i+1); the report names the conversion, and the keys are reported under their original names.

:func:`projection_head` rebuilds the MLP projection head such checkpoints carry (SEED's reference
code distils the teacher's projected embedding). Wrappers such as ``module.`` are removed as
prefixes, never as character sets. The result must
fill the backbone completely: an unmatched, partly matched or extra key is a ``CheckpointError``
naming the keys, so a load can never silently leave weights at their random initialisation.
"""

from __future__ import annotations

import argparse
import os
import pickle
import re
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from seedzoo.errors import CheckpointError
from seedzoo.zoo.layout import CHECKPOINT_METHOD_KEY

# Prefixes added by wrappers (DataParallel/DDP), removed wherever they lead a key.
WRAPPER_PREFIXES = ("module.",)
# Sub-models holding the backbone, with the format they indicate; others (encoder_k, teacher of
# a SEED run, momentum_encoder) are skipped.
SUBMODEL_PREFIXES = {"encoder_q.": "moco", "base_encoder.": "moco_v3", "student.": "seed",
                     "backbone.": "dino", "encoder.": "encoder", "model.": "model"}
# Heads and training state that are not part of a backbone: skipped when the model lacks them.
HEAD_PREFIXES = {"fc.": "classifier/projection head", "head.": "projection head",
                 "head_dense.": "region-level projection head", "heads.": "projection heads",
                 "classifier.": "classifier",
                 "projection_head.": "projection head", "projector.": "projection head",
                 "predictor.": "prediction head", "prototypes.": "prototypes"}
TRAINING_STATE_KEYS = {"queue": "queue", "queue_ptr": "queue pointer"}
# Where projection heads sit (after wrapper prefixes are removed), most specific first.
PROJECTION_HEAD_PREFIXES = ("encoder_q.fc.", "head.", "projection_head.", "student.fc.", "fc.")
# Buffers some exporters omit; the model's own value is kept.
OPTIONAL_SUFFIXES = ("num_batches_tracked",)


TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".tar")


def read_weights_file(path: str | os.PathLike) -> dict:
    """The raw content of a weights file: safetensors, or a torch file loaded with weights_only."""
    path = Path(path)
    if path.suffix == ".safetensors":
        return read_safetensors(path)
    if path.is_file() and path.stat().st_size == 0:
        raise CheckpointError(f"{path} is empty (0 bytes): an interrupted copy or save? Copy or "
                              "save it again.")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if "Weights only load failed" not in str(error):
            raise CheckpointError(_not_a_torch_file(path, error)) from None
        raise CheckpointError(_needs_pickle(path, error)) from None
    except Exception as error:  # torch raises RuntimeError, EOFError, KeyError, ...
        raise CheckpointError(_not_a_torch_file(path, error)) from None


def _needs_pickle(path: Path, error: Exception) -> str:
    """Why ``path`` is refused, and the one-line conversion for a file the user trusts (training
    code often saves its ``args`` or config object beside the state dicts)."""
    found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(error))
    what = f" ({found.group(1)})" if found else ""
    converted = path.with_name(f"{path.stem}.weights{path.suffix or '.pth'}")
    return (f"{path} needs arbitrary pickled objects{what}, not only tensors, which seedzoo never "
            "unpickles. If you trust the file, keep only its tensors and state dicts, once: "
            f"python -c \"import torch; c = torch.load('{path}', map_location='cpu', "
            "weights_only=False); torch.save({k: v for k, v in c.items() if isinstance(v, "
            f"(dict, torch.Tensor))}}, '{converted}')\" and load {converted}; or convert it where "
            "it was made to safetensors.")


def _not_a_torch_file(path: Path, error: Exception) -> str:
    detail = (str(error).splitlines() or [""])[0][:120]
    return (f"{path} is not a readable torch weights file ({type(error).__name__}: {detail}); it "
            "may be truncated or in another format. Copy or save it again.")


def read_safetensors(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors of a safetensors file; a corrupt or truncated file is a ``CheckpointError``."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{path} is not a readable safetensors file ({error}). It may be "
                              "truncated or corrupted: delete it and download or save it again.") \
            from None


def load_state_into(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Strictly load ``state`` into ``model``; any missing, unexpected or mis-shaped key is an
    error."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or mismatched:
        arch = model.pretrained_cfg.get("architecture", type(model).__name__)
        parts = [f"{name} ({len(keys)}): {', '.join(keys[:6])}{' ...' if len(keys) > 6 else ''}"
                 for name, keys in (("missing", missing), ("unexpected", unexpected),
                                    ("shape mismatch", mismatched)) if keys]
        raise CheckpointError(f"The weights in {source} do not fit architecture {arch!r}: "
                              + "; ".join(parts)
                              + ". Check that config and weights belong together.")
    model.load_state_dict(state, strict=True)


@dataclass
class LoadReport:
    """What a checkpoint load took (``loaded``) and left out (``skipped``: key -> reason), by the
    checkpoint's own key names; ``conversion`` names timm's key conversion when one was used."""

    source: str
    format: str
    loaded: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    conversion: str | None = None

    def summary(self) -> str:
        reasons = Counter(self.skipped.values())
        skipped = "; ".join(f"{count} {reason}" for reason, count in reasons.most_common())
        return (f"{self.source} ({self.format}): loaded {len(self.loaded)} tensors"
                + (f" converted by {self.conversion}" if self.conversion else "")
                + (f", skipped {skipped}" if skipped else ""))

    def __str__(self) -> str:
        return self.summary()


def classifier_prefixes(pretrained_cfg: dict) -> tuple[str, ...]:
    """Key prefixes of the classifier(s) a timm ``pretrained_cfg`` names (``"fc"`` -> ``"fc."``)."""
    names = pretrained_cfg.get("classifier") or ()
    return tuple(f"{name}." for name in ((names,) if isinstance(names, str) else names))


def without_classifier(state: dict[str, torch.Tensor], pretrained_cfg: dict
                       ) -> dict[str, torch.Tensor]:
    """``state`` less the tensors of the classifier that ``pretrained_cfg`` names."""
    prefixes = classifier_prefixes(pretrained_cfg)
    return {key: value for key, value in state.items() if not key.startswith(prefixes)}


def _strip(key: str, prefix: str) -> str:
    return key[len(prefix):] if key.startswith(prefix) else key


def _unwrap(checkpoint) -> tuple[dict, str | None, dict[str, str]]:
    """The tensor dict inside a checkpoint container, the format the container indicates, and
    what else the container holds (key -> why it is not loaded)."""
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"expected a dict of tensors, found a {type(checkpoint).__name__}")
    if isinstance(checkpoint.get("teacher"), dict) and isinstance(checkpoint.get("student"), dict):
        teacher = checkpoint["teacher"]
        regions = any(_strip_wrappers(key).startswith("head_dense.") for key in teacher)
        student = {f"student.{key}": "the student network (the teacher is loaded)"
                   for key in checkpoint["student"]}
        return teacher, "esvit" if regions else "dino", {
            **student, **_other_entries(checkpoint, ("teacher", "student"))}
    containers = (("state_dict", None), ("model", None), (CHECKPOINT_METHOD_KEY, "seedzoo run"))
    for container, format in containers:
        if isinstance(checkpoint.get(container), dict):
            return checkpoint[container], format, _other_entries(checkpoint, (container,))
    return checkpoint, None, {}


def _other_entries(checkpoint: dict, taken: tuple[str, ...]) -> dict[str, str]:
    return {str(key): "training state or settings" for key in checkpoint if key not in taken}


def _strip_wrappers(key: str) -> str:
    while key.startswith(WRAPPER_PREFIXES):
        key = next(_strip(key, p) for p in WRAPPER_PREFIXES if key.startswith(p))
    return key


def backbone_state_dict(checkpoint, model: nn.Module, *, source: str
                        ) -> tuple[dict[str, torch.Tensor], LoadReport]:
    """The state dict of ``model`` found in ``checkpoint`` (any layout above), with its report.

    Raises ``CheckpointError`` listing missing and unexpected keys unless every backbone tensor
    of ``model`` is found.
    """
    try:
        tensors, container_format, others = _unwrap(checkpoint)
    except CheckpointError as error:
        raise CheckpointError(f"{source} is not a state dict: {error}.") from None
    own = model.state_dict()
    report = LoadReport(source=source, format=container_format or "state dict", skipped=others)
    keys = {}
    for key, value in tensors.items():
        if isinstance(value, torch.Tensor):
            keys[_strip_wrappers(key)] = key
        else:
            report.skipped[key] = "not a tensor"

    def fits(name: str, original: str) -> bool:
        return name in own and own[name].shape == tensors[original].shape

    def matches(prefix: str) -> int:  # weights and statistics, not batch counters
        return sum(fits(k[len(prefix):], o) for k, o in keys.items()
                   if k.startswith(prefix) and not k.endswith(OPTIONAL_SUFFIXES))

    heads = {**dict.fromkeys(classifier_prefixes(model.pretrained_cfg), "classifier"),
             **HEAD_PREFIXES}
    prefix = max(SUBMODEL_PREFIXES, key=matches)  # first listed wins ties
    if matches(prefix) > matches(""):
        report.format = container_format or SUBMODEL_PREFIXES[prefix]
    else:
        prefix = ""

    candidates = {}
    for key, original in keys.items():
        if key.startswith(prefix):
            candidates[key[len(prefix):]] = (original, tensors[original])
        else:
            report.skipped[original] = (_head_reason(key, heads)
                                        or f"outside the {prefix[:-1]!r} sub-model")
    fit = _Fit.of(candidates, model, heads)
    convert = timm_conversion(model)
    if fit.problems and convert is not None:
        backbone = {name: candidate for name, candidate in candidates.items()
                    if candidate[0] not in fit.skipped}
        converted = _converted(backbone, model, convert)
        retry = None if converted is None else _Fit.of(converted, model, heads)
        if retry is not None and retry.problems < fit.problems:
            report.conversion = f"{convert.__module__}.{convert.__name__}"
            kept = {original for original, _ in converted.values()}
            dropped = [original for original, _ in backbone.values() if original not in kept]
            retry.skipped = {**fit.skipped, **retry.skipped,
                             **dict.fromkeys(dropped, f"dropped by {report.conversion}")}
            fit = retry
    report.loaded, report.skipped = fit.loaded, {**report.skipped, **fit.skipped}
    if report.format == "state dict" and "prototypes" in fit.skipped.values():
        report.format = "swav"

    arch = model.pretrained_cfg.get("architecture", type(model).__name__)
    if not any(not key.endswith(OPTIONAL_SUFFIXES) for key in report.loaded):
        raise CheckpointError(
            f"No tensor of {source} belongs to a {arch!r} backbone: its keys look like "
            f"{', '.join(list(tensors)[:4])} while the model expects {', '.join(list(own)[:4])}. "
            "Check the architecture (--arch) and that the file is a backbone checkpoint.")
    if fit.problems:
        parts = [f"{name} ({len(found)}): {', '.join(found[:6])}{' ...' if len(found) > 6 else ''}"
                 for name, found in (("missing", fit.missing), ("unexpected", fit.unexpected),
                                     ("shape mismatch", fit.mismatched)) if found]
        conversion = f", converted by {report.conversion}" if report.conversion else ""
        raise CheckpointError(
            f"{source} ({report.format}{conversion}) does not fit a {arch!r} backbone: "
            + "; ".join(parts)
            + ". Check the architecture (--arch); a partial load would leave weights random.")
    return fit.state, report


def _head_reason(name: str, heads: dict[str, str]) -> str | None:
    return next((reason for head, reason in heads.items() if name.startswith(head)), None)


@dataclass
class _Fit:
    """How tensors named as in a model's state dict fit it: the state to load, and the checkpoint
    keys loaded, skipped (with the reason), unexpected, mis-shaped and missing."""

    state: dict[str, torch.Tensor] = field(default_factory=dict)
    loaded: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    @property
    def problems(self) -> int:
        return len(self.unexpected) + len(self.mismatched) + len(self.missing)

    @classmethod
    def of(cls, candidates: dict[str, tuple[str, torch.Tensor]], model: nn.Module,
           heads: dict[str, str]) -> _Fit:
        """``candidates``: model name -> (checkpoint key, tensor)."""
        own = model.state_dict()
        recomputed = {name for name, _ in model.named_buffers()} - set(own)
        fit = cls()
        for name, (original, tensor) in candidates.items():
            if name in own and own[name].shape == tensor.shape:
                fit.state[name] = tensor
                fit.loaded.append(original)
            elif name in own:
                fit.mismatched.append(f"{original} {tuple(tensor.shape)} vs "
                                      f"{tuple(own[name].shape)}")
            elif name in TRAINING_STATE_KEYS:
                fit.skipped[original] = TRAINING_STATE_KEYS[name]
            elif name in recomputed:
                fit.skipped[original] = "buffer the model recomputes"
            elif (reason := _head_reason(name, heads)):
                fit.skipped[original] = reason
            else:
                fit.unexpected.append(original)
        for name in own:
            if name not in fit.state:
                if name.endswith(OPTIONAL_SUFFIXES):
                    fit.state[name] = own[name]
                else:
                    fit.missing.append(name)
        return fit


def timm_conversion(model: nn.Module) -> Callable | None:
    """timm's own conversion of other layouts into ``model``'s (the ``checkpoint_filter_fn`` of
    the timm module defining it, e.g. Swin's original layout), or None where timm has none."""
    convert = getattr(sys.modules.get(type(model).__module__), "checkpoint_filter_fn", None)
    return convert if callable(convert) else None


def _converted(candidates: dict[str, tuple[str, torch.Tensor]], model: nn.Module,
               convert: Callable) -> dict[str, tuple[str, torch.Tensor]] | None:
    """``candidates`` (name -> (checkpoint key, tensor)) renamed by timm's ``convert``, or None
    where it does not apply. timm's filters rename keys and pass the tensors through (one it
    resamples keeps its name), so each result is traced to its checkpoint key by identity."""
    origin = {id(tensor): original for original, tensor in candidates.values()}
    try:
        converted = convert({name: tensor for name, (_, tensor) in candidates.items()}, model)
    except (AttributeError, KeyError, RuntimeError, TypeError, ValueError):
        return None
    return {name: (origin.get(id(tensor)) or candidates.get(name, (name,))[0], tensor)
            for name, tensor in converted.items()}


def load_checkpoint_into(model: nn.Module, checkpoint, *, source: str) -> LoadReport:
    """Load the backbone in ``checkpoint`` into ``model`` strictly; return the report."""
    state, report = backbone_state_dict(checkpoint, model, source=source)
    load_state_into(model, state, source)
    return report


def read_checkpoint(path: str | os.PathLike) -> dict:
    """A checkpoint file's content (safetensors, or torch with ``weights_only=True``).

    ``argparse.Namespace`` is allowed because DINO and others store their arguments in it; it
    only holds attributes and runs no code.
    """
    with torch.serialization.safe_globals([argparse.Namespace]):
        return read_weights_file(path)


def projection_head(checkpoint, *, source: str) -> nn.Sequential:
    """The MLP projection head stored in ``checkpoint`` (MoCo v2 ``encoder_q.fc``, SwAV
    ``projection_head``, a seedzoo run's ``head``), rebuilt as ``nn.Sequential`` with its weights.

    Layers are read from indexed keys (``0.weight``, ``1.running_mean``...): 2-D weights make
    ``Linear`` layers, weights with running statistics ``BatchNorm1d``; an index without
    parameters is the ReLU between them, as in all these heads. A single linear layer is a
    classifier, not a projection head, and is refused.
    """
    tensors, *_ = _unwrap(checkpoint)
    tensors = {_strip_wrappers(k): v for k, v in tensors.items() if isinstance(v, torch.Tensor)}
    for prefix in PROJECTION_HEAD_PREFIXES:
        state = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        head = sequential_from(state) if state else None
        if head is not None and sum(isinstance(m, nn.Linear) for m in head) >= 2:
            return head
    raise CheckpointError(f"{source} holds no MLP projection head (looked for "
                          f"{', '.join(p[:-1] for p in PROJECTION_HEAD_PREFIXES)}); use the "
                          "backbone's features instead (no projection head option).")


def sequential_from(state: dict[str, torch.Tensor]) -> nn.Sequential | None:
    """Linear/BatchNorm1d/ReLU layers fitting ``{"<index>.<param>": tensor}``, or None."""
    layers: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        index, _, name = key.partition(".")
        if not index.isdigit() or "." in name:
            return None
        layers.setdefault(int(index), {})[name] = value
    modules = []
    for index in range(max(layers) + 1):
        params = layers.get(index)
        if params is None:
            modules.append(nn.ReLU())
        elif "weight" in params and params["weight"].ndim == 2:
            out_dim, in_dim = params["weight"].shape
            modules.append(nn.Linear(in_dim, out_dim, bias="bias" in params))
        elif "weight" in params and "running_mean" in params:
            modules.append(nn.BatchNorm1d(params["weight"].shape[0]))
        else:
            return None
    head = nn.Sequential(*modules)
    own = head.state_dict()
    if set(state) - set(own) or any(k not in state and not k.endswith(OPTIONAL_SUFFIXES)
                                    for k in own):
        return None
    try:
        head.load_state_dict({**own, **state})
    except RuntimeError:  # shapes that do not chain
        return None
    return head
