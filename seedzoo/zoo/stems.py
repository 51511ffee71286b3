"""Architecture changes timm's ``create_model`` cannot express, recorded so loading can redo them.

A model changed here carries ``model.seedzoo_options`` (e.g. ``{"small_stem": True}``);
``save_pretrained`` writes it to ``config.json`` under ``"seedzoo"`` and
``load_pretrained_folder`` re-applies it. Plain timm does not know this entry, so such folders
must be loaded with seedzoo. To make plain timm refuse them rather than build its own stem
around the weights (for EfficientNet/MobileNet only the stride differs, so the shapes would fit
and the features silently differ), the stem's weight is saved under a key timm does not know
(:func:`hide_small_stem`).
"""

from __future__ import annotations

from torch import nn

from seedzoo.errors import SeedzooError

SMALL_STEM_PREFIX = "seedzoo_small_stem."


def _stem_conv(model: nn.Module) -> str:
    """The attribute path of ``model``'s first convolution: ``conv1`` (ResNet), ``conv1.0``
    (ResNet with a deep stem) or ``conv_stem`` (EfficientNet, MobileNet)."""
    conv1, conv_stem = getattr(model, "conv1", None), getattr(model, "conv_stem", None)
    if isinstance(conv1, nn.Conv2d) and hasattr(model, "maxpool"):
        return "conv1"
    if isinstance(conv1, nn.Sequential) and isinstance(conv1[0], nn.Conv2d):
        return "conv1.0"
    if isinstance(conv_stem, nn.Conv2d):
        return "conv_stem"
    raise SeedzooError(f"small_stem supports ResNet, EfficientNet and MobileNet models, not "
                       f"{type(model).__name__}; upsample small images instead.")


def small_stem(model: nn.Module) -> nn.Module:
    """Give ``model`` a 3x3 stride-1 stem without max-pool, for 28-64 px images (in place).

    ResNets get a new 3x3 stride-1 ``conv1`` (or, with a deep stem, a stride-1 first conv) and no
    max-pool; EfficientNet/MobileNet stems (already 3x3) get stride 1.
    """
    stem = _stem_conv(model)
    if stem == "conv1":
        conv1 = model.conv1
        model.conv1 = nn.Conv2d(conv1.in_channels, conv1.out_channels, 3, stride=1, padding=1,
                                bias=False)
    else:
        model.get_submodule(stem).stride = (1, 1)
    if stem.startswith("conv1"):
        model.maxpool = nn.Identity()
    model.seedzoo_options = {**getattr(model, "seedzoo_options", {}), "small_stem": True}
    return model


def hide_small_stem(state: dict, model: nn.Module) -> dict:
    """``state`` with a small stem's weight renamed ``seedzoo_small_stem.<key>`` (for saving)."""
    if not getattr(model, "seedzoo_options", {}).get("small_stem"):
        return state
    key = f"{_stem_conv(model)}.weight"
    return {(SMALL_STEM_PREFIX + name if name == key else name): value
            for name, value in state.items()}


def unhide_small_stem(state: dict) -> dict:
    """The inverse of :func:`hide_small_stem` (for loading)."""
    return {name.removeprefix(SMALL_STEM_PREFIX): value for name, value in state.items()}


_OPTIONS = {"small_stem": small_stem}


def apply_seedzoo_options(model: nn.Module, options: dict | None) -> nn.Module:
    """Re-apply the changes recorded in ``config.json``'s ``"seedzoo"`` entry."""
    for name, enabled in (options or {}).items():
        if name not in _OPTIONS:
            raise SeedzooError(f"Unknown seedzoo architecture option {name!r} in config.json; "
                               "upgrade seedzoo to load this model.")
        if enabled:
            _OPTIONS[name](model)
    return model
