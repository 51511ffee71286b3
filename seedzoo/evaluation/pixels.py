"""Encoders to evaluate by spec: `pixels` (the raw-pixel baseline) or any `seedzoo.load` spec."""

from __future__ import annotations

from torch import nn

from seedzoo.zoo import load

PIXELS = "pixels"


class PixelEncoder(nn.Module):
    """Raw pixels as features: the baseline every self-supervised encoder has to beat.

    Images keep their native size and channels (``preprocess`` is ``ToTensor`` only, values
    in [0, 1]); the feature of an image is its flattened pixel vector. All images of a
    dataset must therefore share one size.
    """

    def __init__(self):
        super().__init__()
        from torchvision import transforms

        self.preprocess = transforms.ToTensor()

    def forward(self, images):
        return images.flatten(1)


def load_encoder(spec: str, *, arch: str | None = None,
                 model_args: dict | None = None) -> nn.Module:
    """The encoder named by ``spec`` in eval mode: ``pixels`` or any spec ``seedzoo.load`` takes
    (``arch`` and ``model_args`` as there)."""
    if spec == PIXELS:
        return PixelEncoder().eval()
    return load(spec, arch=arch, model_args=model_args)
