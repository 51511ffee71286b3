"""Resolve a model spec to an encoder: ``seedzoo.load(spec)``.

Specs:
- ``timm:<arch>`` - the architecture with random weights;
- a folder in the timm/Hub layout (``config.json`` + ``model.safetensors``);
- a weights file (``.safetensors``, or ``.pt``/``.pth`` read with ``weights_only=True``)
  together with ``arch=``.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from seedzoo.errors import CheckpointError, ModelNotFoundError
from seedzoo.zoo.pretrained import create_encoder, load_pretrained_folder, read_safetensors

TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".tar")


def read_weights_file(path: str | os.PathLike) -> dict:
    """The raw content of a weights file: safetensors, or a torch file loaded with weights_only."""
    path = Path(path)
    if path.suffix == ".safetensors":
        return read_safetensors(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises UnpicklingError, RuntimeError, EOFError, ...
        raise CheckpointError(
            f"Could not read {path} as a weights-only torch file ({type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else ''}). Files that need arbitrary "
            "pickled objects are refused; convert it to safetensors or a plain state dict.") \
            from None


def load_weights_file(path: str | os.PathLike, arch: str) -> nn.Module:
    """Encoder ``arch`` with the backbone weights of a checkpoint file.

    Plain state dicts and the published SSL layouts (MoCo, SimCLR, SwAV, DINO, SEED,
    torchvision) are read; see :mod:`seedzoo.zoo.checkpoints`. The load report is kept as
    ``model.load_report``.
    """
    from seedzoo.zoo.checkpoints import load_checkpoint_into, read_checkpoint

    model = create_encoder(arch)
    model.load_report = load_checkpoint_into(model, read_checkpoint(path), source=str(path))
    return model


def load(spec: str, *, arch: str | None = None, pretrained: bool = True) -> nn.Module:
    """The encoder named by ``spec``, in eval mode, with ``pretrained_cfg`` attached.

    With ``pretrained=False`` the architecture is built but weights are left random.
    """
    if spec.startswith("timm:"):
        return create_encoder(spec[len("timm:"):]).eval()
    path = Path(spec).expanduser()
    if path.is_dir():
        if not pretrained:
            from seedzoo.zoo.pretrained import read_config

            config = read_config(path)
            return create_encoder(config["architecture"],
                                  pretrained_cfg_overlay=config.get("pretrained_cfg"),
                                  **config.get("model_args", {})).eval()
        return load_pretrained_folder(path)
    if path.is_file():
        if arch is None:
            raise ModelNotFoundError(
                f"{spec} is a weights file; say which architecture it holds with arch= "
                "(CLI: --arch), e.g. --arch resnet18.")
        if not pretrained:
            return create_encoder(arch).eval()
        return load_weights_file(path, arch).eval()
    raise ModelNotFoundError(
        f"Cannot resolve model {spec!r}: use timm:<arch>, a folder with config.json and "
        "model.safetensors, or a weights file with --arch.")
