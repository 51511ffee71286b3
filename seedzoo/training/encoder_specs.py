"""Encoders from recipe specs: ``{arch, model_args, small_stem, pretrained_cfg}``."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from seedzoo.errors import SeedzooError
from seedzoo.zoo.pretrained import create_encoder
from seedzoo.zoo.stems import small_stem

_SPEC_KEYS = {"arch", "model_args", "small_stem", "pretrained_cfg"}


def build_encoder(spec: dict | str) -> nn.Module:
    """A timm encoder (``num_classes=0``, random weights) from a spec or a bare architecture name.

    Spec keys: ``arch`` (any timm name), ``model_args`` (extra ``timm.create_model`` arguments),
    ``small_stem`` (3x3 stride-1 stem without max-pool, see :func:`seedzoo.zoo.stems.small_stem`),
    ``pretrained_cfg`` (overlay of the model's preprocessing config, e.g. ``input_size``).
    """
    if isinstance(spec, str):
        spec = {"arch": spec}
    unknown = set(spec) - _SPEC_KEYS
    if unknown or "arch" not in spec:
        raise SeedzooError(f"An encoder spec needs 'arch' and may have {sorted(_SPEC_KEYS)}; got "
                           f"{sorted(spec)}.")
    model = create_encoder(spec["arch"], pretrained_cfg_overlay=spec.get("pretrained_cfg"),
                           **spec.get("model_args", {}))
    if spec.get("small_stem"):
        small_stem(model)
    return model


@torch.no_grad()
def probe(model: nn.Module, forward: Callable[[nn.Module, torch.Tensor], object] | None = None):
    """What ``forward(model, images)`` (default ``model(images)``) returns for one blank image at
    the model's own input size, run in eval mode (the model's mode is restored)."""
    input_size = tuple(model.pretrained_cfg.get("input_size", (3, 224, 224)))
    was_training = model.training
    model.eval()
    try:
        parameter = next(model.parameters())
        images = torch.zeros(1, *input_size, device=parameter.device, dtype=parameter.dtype)
        return forward(model, images) if forward is not None else model(images)
    finally:
        model.train(was_training)


def feature_dim(model: nn.Module) -> int:
    """Width of ``model``'s pooled output, measured by a forward pass at its own input size.

    (``num_features`` is not always the output width: timm's MobileNet-v3 returns its
    ``head_hidden_size`` features.)
    """
    output = probe(model)
    if output.ndim != 2:
        raise SeedzooError(f"{type(model).__name__} returns {tuple(output.shape)} features, not a "
                           "pooled vector; use an encoder with global pooling.")
    return output.shape[1]
