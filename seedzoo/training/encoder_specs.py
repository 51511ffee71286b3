"""Encoders from recipe specs: ``{arch, model_args, small_stem, pretrained_cfg}``."""

from __future__ import annotations

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
