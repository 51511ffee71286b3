"""Resolve a model spec to an encoder: ``seedzoo.load(spec)``.

Specs:
- a catalog name or entry (``seedzoo.list_models()``) - from its hub, or the local cache;
- ``hf-hub:org/name[@revision]`` - a model published on a Hugging Face Hub (safetensors only);
- a folder in the timm/Hub layout (``config.json`` + ``model.safetensors``), also written
  ``local-dir:<folder>`` as timm does, or a run folder holding one (a ``str`` or a path);
- a weights file (``.safetensors``, or ``.pt``/``.pth`` read with ``weights_only=True``)
  together with ``arch=`` (and ``model_args=`` where the weights need other
  ``timm.create_model`` arguments than the architecture's defaults, e.g. Swin's window size);
- ``timm:<arch>`` - the architecture with random weights.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch
from torch import nn

from seedzoo.errors import ModelNotFoundError, SeedzooError
from seedzoo.zoo.catalog import ModelEntry, closest_names, download_entry, find_entry
from seedzoo.zoo.checkpoint_formats import (
    load_checkpoint_into,
    read_checkpoint,
)
from seedzoo.zoo.hub import HUB_PREFIX, Publication, download, parse_hub_id
from seedzoo.zoo.layout import (
    CHECKPOINT_METHOD_KEY,
    CLASSIFIER_WEIGHTS_NAME,
    CONFIG_NAME,
    HUB_FILES,
    encoder_folder,
)
from seedzoo.zoo.pretrained import (
    create_encoder,
    encoder_from_config,
    load_classifier,
    load_pretrained_folder,
    read_config,
    training_preprocessing,
)


def load_weights_file(path: str | os.PathLike, arch: str,
                      model_args: dict | None = None) -> nn.Module:
    """Encoder ``arch`` (built with the extra ``timm.create_model`` arguments ``model_args``)
    with the backbone weights of a checkpoint file.

    Plain state dicts and the published SSL layouts (MoCo, SimCLR, SwAV, DINO, EsViT, SEED,
    torchvision, Swin's original layout) are read; see :mod:`seedzoo.zoo.checkpoint_formats`.
    A seedzoo training checkpoint also gives the encoder its run's preprocessing (input size,
    mean, std), as the run's ``encoder/`` folder would. The load report is kept as
    ``model.load_report``.
    """
    checkpoint = read_checkpoint(path)
    recipe = checkpoint.get("config") if CHECKPOINT_METHOD_KEY in checkpoint else None
    overlay = training_preprocessing(recipe["data"]) if isinstance(recipe, dict) else None
    model = create_encoder(arch, pretrained_cfg_overlay=overlay, **(model_args or {}))
    model.load_report = load_checkpoint_into(model, checkpoint, source=str(path))
    return model


def load(spec: str | os.PathLike | ModelEntry, *, arch: str | None = None,
         model_args: dict | None = None, pretrained: bool = True, revision: str | None = None,
         endpoint: str | None = None, token: str | None = None,
         cache_dir: str | os.PathLike | None = None, offline: bool | None = None) -> nn.Module:
    """The encoder named by ``spec`` (a spec string, a path or a catalog entry), in eval mode,
    with ``pretrained_cfg`` attached.

    ``arch`` names the architecture of a weights file; ``model_args`` are extra
    ``timm.create_model`` arguments for a weights file or a ``timm:`` spec (a folder, hub or
    catalog model records its own in ``config.json``).

    ``revision`` pins a hub model to a branch, tag or commit sha (same as ``@rev`` in the spec);
    ``endpoint``, ``token`` and ``cache_dir`` go to the hub client; ``offline=None`` follows
    ``HF_HUB_OFFLINE``. With ``pretrained=False`` the architecture is built with random weights.
    """
    hub = dict(endpoint=endpoint, token=token, cache_dir=cache_dir, offline=offline)
    if isinstance(spec, ModelEntry):
        _refuse_model_args(model_args, spec.name)
        return load_catalog_entry(spec, revision=revision, pretrained=pretrained, **hub)
    spec = os.fspath(spec) if isinstance(spec, os.PathLike) else spec
    if not isinstance(spec, str):
        raise TypeError(f"seedzoo.load takes a model spec (str), a path or a catalog ModelEntry "
                        f"from seedzoo.list_models(), not {type(spec).__name__}: {spec!r}.")
    if not spec.strip():
        raise ModelNotFoundError("The model spec is empty; give a catalog name (`seedzoo list`), "
                                 "hf-hub:org/name, a folder, a weights file or timm:<arch>.")
    if spec.startswith("timm:"):
        return create_encoder(spec[len("timm:"):], **(model_args or {})).eval()
    path = Path(spec.removeprefix("local-dir:")).expanduser()
    if not path.is_file():
        _refuse_model_args(model_args, spec)
    if spec.startswith(HUB_PREFIX):
        repo_id, spec_revision = parse_hub_id(spec)
        if revision and spec_revision and revision != spec_revision:
            raise ModelNotFoundError(f"{spec} pins revision {spec_revision!r} but revision="
                                     f"{revision!r} was also given; keep one.")
        return load_from_hub(repo_id, revision=revision or spec_revision, pretrained=pretrained,
                             **hub)
    if path.is_dir():
        return _load_folder(encoder_folder(path), pretrained)
    if path.is_file():
        if arch is None:
            raise ModelNotFoundError(
                f"{spec} is a weights file; say which architecture it holds with arch= "
                "(CLI: --arch), e.g. --arch resnet18.")
        if not pretrained:
            return create_encoder(arch, **(model_args or {})).eval()
        return load_weights_file(path, arch, model_args).eval()
    entry = find_entry(spec)
    if entry is not None:
        return load_catalog_entry(entry, revision=revision, pretrained=pretrained, **hub)
    raise ModelNotFoundError(_unknown_spec_message(spec))


def _refuse_model_args(model_args: dict | None, spec: str) -> None:
    if model_args:
        raise ModelNotFoundError(f"model_args ({model_args}) apply to a weights file or "
                                 f"timm:<arch>; {spec} records its own in its config.json.")


def classifier_for(spec: str | os.PathLike) -> nn.Linear:
    """The linear classifier kept beside the encoder that ``spec`` names (see
    :func:`~seedzoo.zoo.pretrained.load_classifier`). Only an encoder folder or a run folder
    holds one, written by a run that trains a classifier (supervised, kd); hub models, catalog
    names and ``timm:<arch>`` are encoders alone (classifiers are not published).
    """
    path = Path(os.fspath(spec).removeprefix("local-dir:")).expanduser()
    if not path.is_dir():
        raise ModelNotFoundError(
            f"{spec} keeps no classifier: only an encoder folder or run folder written by a run "
            f"that trains one (supervised, kd) holds it ({CLASSIFIER_WEIGHTS_NAME} beside the "
            "encoder); hub models, catalog names, weights files and timm:<arch> are encoders "
            "alone. Give such a folder.")
    return load_classifier(encoder_folder(path))


def _load_folder(folder: Path, pretrained: bool) -> nn.Module:
    if pretrained:
        return load_pretrained_folder(folder)
    return encoder_from_config(read_config(folder)).eval()


def load_from_hub(repo_id: str, *, revision: str | None = None, pretrained: bool = True,
                  endpoint: str | None = None, token: str | None = None,
                  cache_dir: str | os.PathLike | None = None,
                  offline: bool | None = None) -> nn.Module:
    """The encoder published as ``repo_id`` (config.json + model.safetensors) at ``revision``."""
    snapshot = download(repo_id, revision=revision, endpoint=endpoint, token=token,
                        cache_dir=cache_dir, offline=offline, files=_files(pretrained))
    return _load_snapshot(repo_id, snapshot, pretrained)


def load_catalog_entry(entry: ModelEntry, *, revision: str | None = None,
                       pretrained: bool = True, **hub) -> nn.Module:
    """The catalog model ``entry``, from its hub or (when it is not public) the local cache;
    ``hub`` as in :func:`seedzoo.zoo.catalog.download_entry`."""
    snapshot = download_entry(entry, revision=revision, files=_files(pretrained), **hub)
    return _load_snapshot(entry.hub["repo_id"], snapshot, pretrained)


def _files(pretrained: bool) -> tuple[str, ...]:
    return HUB_FILES if pretrained else (CONFIG_NAME,)


def _load_snapshot(repo_id: str, snapshot: Path, pretrained: bool) -> nn.Module:
    """The encoder in a downloaded snapshot; its ``pretrained_cfg`` records ``hf_hub_id`` as
    ``org/name@<commit sha>``: the exact weights, whatever branch was asked for."""
    model = _load_folder(snapshot, pretrained)
    model.pretrained_cfg = {**model.pretrained_cfg, "hf_hub_id": f"{repo_id}@{snapshot.name}",
                            "source": "hf-hub"}
    return model


def _unknown_spec_message(spec: str) -> str:
    import timm

    hints = []
    close = closest_names(spec)
    if close:
        hints.append(f"Closest catalog names: {', '.join(close)}.")
    if timm.is_model(spec):
        hints.append(f"For timm's architecture with random weights use timm:{spec}.")
    if re.fullmatch(r"[\w.-]+/[\w.-]+(@[\w.-]+)?", spec):
        hints.append(f"For a hub model use hf-hub:{spec}.")
    return (f"Unknown model {spec!r}: it is not a catalog name (`seedzoo list`), a hub id "
            "(hf-hub:org/name[@revision]), an existing folder or weights file, or timm:<arch>."
            + "".join(f" {h}" for h in hints))


def check_published(publication: Publication, folder_or_run: str | os.PathLike, *,
                    endpoint: str | None = None, token: str | None = None,
                    cache_dir: str | os.PathLike | None = None) -> None:
    """Load ``publication`` back by its pinned hub id and check that its features are equal to
    those of the folder's encoder on a seeded random batch; a ``SeedzooError`` says otherwise."""
    original = load_pretrained_folder(encoder_folder(folder_or_run))
    loaded = load(publication.spec, endpoint=endpoint, token=token, cache_dir=cache_dir,
                  offline=publication.location == "local cache")
    batch = torch.randn(4, *original.pretrained_cfg["input_size"],
                        generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        expected, got = original(batch), loaded(batch)
    if expected.shape != got.shape or not torch.equal(expected, got):
        difference = ((expected - got).abs().max().item() if expected.shape == got.shape
                      else float("inf"))
        raise SeedzooError(f"{publication.spec} does not reproduce {folder_or_run}: features "
                           f"differ by up to {difference:g}.")
