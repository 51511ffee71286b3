"""Architecture changes timm's ``create_model`` cannot express, recorded so loading can redo them.

A model changed here carries ``model.seedzoo_options`` (e.g. ``{"small_stem": True}``);
``save_pretrained`` writes it to ``config.json`` under ``"seedzoo"`` and
``load_pretrained_folder`` re-applies it. Plain timm does not know this entry, so such folders
must be loaded with seedzoo.
"""

from __future__ import annotations

from torch import nn

from seedzoo.errors import SeedzooError


def small_stem(model: nn.Module) -> nn.Module:
    """Give ``model`` a 3x3 stride-1 stem without max-pool, for 28-64 px images (in place).

    ResNets get a new 3x3 stride-1 ``conv1`` (or, with a deep stem, a stride-1 first conv) and no
    max-pool; EfficientNet/MobileNet stems (already 3x3) get stride 1.
    """
    conv1, conv_stem = getattr(model, "conv1", None), getattr(model, "conv_stem", None)
    if isinstance(conv1, nn.Conv2d) and hasattr(model, "maxpool"):
        model.conv1 = nn.Conv2d(conv1.in_channels, conv1.out_channels, 3, stride=1, padding=1,
                                bias=False)
        model.maxpool = nn.Identity()
    elif isinstance(conv1, nn.Sequential) and isinstance(conv1[0], nn.Conv2d):
        conv1[0].stride = (1, 1)
        model.maxpool = nn.Identity()
    elif isinstance(conv_stem, nn.Conv2d):
        conv_stem.stride = (1, 1)
    else:
        raise SeedzooError(f"small_stem supports ResNet, EfficientNet and MobileNet models, not "
                           f"{type(model).__name__}; upsample small images instead.")
    model.seedzoo_options = {**getattr(model, "seedzoo_options", {}), "small_stem": True}
    return model


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
