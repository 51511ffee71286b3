"""Preprocessing that matches an encoder's own ``pretrained_cfg``."""

from __future__ import annotations

import numpy as np
from PIL import Image
from torch import nn

from seedzoo.errors import SeedzooError

# Full scale of the integer modes PIL's own convert("RGB") would clip instead of scale.
_WIDE_INTEGER_MODES = {"I;16": 65535, "I;16L": 65535, "I;16B": 65535, "I;16N": 65535,
                       "I": 65535}


def to_rgb(image: Image.Image) -> Image.Image:
    """``image`` as 8-bit RGB, its values scaled, never clipped.

    8-bit modes (grayscale, palette, RGBA, CMYK, ...) convert as PIL does. 16-bit grayscale
    (``I;16*``, and ``I`` holding values in 0-65535) is scaled by 255/65535; float images
    (``F``) holding values in [0, 1] by 255. Anything else (negative or larger values, whose
    range cannot be guessed) is a :class:`SeedzooError` naming the file and its mode.
    """
    if image.mode == "RGB":
        return image
    if image.mode not in _WIDE_INTEGER_MODES and image.mode != "F":
        return image.convert("RGB")
    values = np.asarray(image, dtype=np.float64)
    full_scale = _WIDE_INTEGER_MODES.get(image.mode, 1.0)
    if values.size and not (np.isfinite(values).all() and values.min() >= 0
                            and values.max() <= full_scale):
        where = getattr(image, "filename", "") or "an image"
        raise SeedzooError(
            f"{where} has PIL mode {image.mode} with values from {values.min():g} to "
            f"{values.max():g}, outside 0-{full_scale:g}, so its brightness scale is unknown. "
            "Convert it to 8-bit (or 16-bit, or float in [0, 1]) images first.")
    scaled = np.rint(values * (255.0 / full_scale)).astype(np.uint8)
    return Image.fromarray(scaled, mode="L").convert("RGB")


class ToRGB:
    """Convert any PIL image to 3-channel 8-bit RGB (see :func:`to_rgb`)."""

    def __call__(self, image: Image.Image) -> Image.Image:
        return to_rgb(image)

    def __repr__(self) -> str:
        return "ToRGB()"


def data_config_for(model: nn.Module) -> dict:
    """Input size, mean, std, interpolation and crop of ``model`` (timm's resolved data config)."""
    from timm.data import resolve_model_data_config

    return resolve_model_data_config(model)


def transform_for(model: nn.Module, *, augment: bool = False):
    """The evaluation transform of ``model``: PIL image -> normalised tensor of its input size.

    Models may carry their own ``preprocess`` callable (e.g. the raw-pixels baseline);
    otherwise timm's eval transform is built from the model's ``pretrained_cfg``. With
    ``augment=True`` it is the fine-tuning augmentation of SimCLR and SimCLRv2 instead: a random
    resized crop (8-100% of the area, aspect ratio 3/4-4/3) and a horizontal flip, no colour
    distortion, at the same size and normalisation (random draws from Python's ``random``
    and torch's generator).
    """
    own = getattr(model, "preprocess", None)
    if own is not None:
        if augment:
            raise SeedzooError(f"{type(model).__name__} brings its own preprocessing, which has no "
                               "augmented form; only timm encoders (with a pretrained_cfg) have "
                               "one.")
        return own
    if not isinstance(getattr(model, "pretrained_cfg", None), dict):
        raise TypeError(f"transform_for expects a model that carries its pretrained_cfg (what "
                        f"seedzoo.load returns, or an OrtEncoder), got {type(model).__name__} "
                        f"{model!r:.60}; load it first: seedzoo.transform_for(seedzoo.load(spec)).")
    from timm.data import create_transform
    from torchvision import transforms as T

    augmentation = {"is_training": True, "scale": (0.08, 1.0), "hflip": 0.5,
                    "color_jitter": None} if augment else {"is_training": False}
    timm_transform = create_transform(**data_config_for(model), **augmentation)
    return T.Compose([ToRGB(), *timm_transform.transforms])
