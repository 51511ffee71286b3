"""Preprocessing that matches an encoder's own ``pretrained_cfg``."""

from __future__ import annotations

from PIL import Image
from torch import nn


class ToRGB:
    """Convert any PIL image (grayscale, palette, RGBA) to 3-channel RGB."""

    def __call__(self, image: Image.Image) -> Image.Image:
        return image if image.mode == "RGB" else image.convert("RGB")

    def __repr__(self) -> str:
        return "ToRGB()"


def data_config_for(model: nn.Module) -> dict:
    """Input size, mean, std, interpolation and crop of ``model`` (timm's resolved data config)."""
    from timm.data import resolve_model_data_config

    return resolve_model_data_config(model)


def transform_for(model: nn.Module):
    """The evaluation transform of ``model``: PIL image -> normalised tensor of its input size.

    Models may carry their own ``preprocess`` callable (e.g. the raw-pixels baseline);
    otherwise timm's eval transform is built from the model's ``pretrained_cfg``.
    """
    own = getattr(model, "preprocess", None)
    if own is not None:
        return own
    from timm.data import create_transform
    from torchvision import transforms as T

    timm_transform = create_transform(**data_config_for(model), is_training=False)
    return T.Compose([ToRGB(), *timm_transform.transforms])
