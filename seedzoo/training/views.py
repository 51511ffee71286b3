"""Augmented views for self-supervised training, built from ``torchvision.transforms.v2``.

``build_views(name, image_size=..., mean=..., std=..., **options)`` returns a callable that turns
one PIL image into the list of normalised ``(3, S, S)`` float tensors a method expects:

- ``moco_v2``: two MoCo-v2 views (random resized crop, colour jitter, grayscale, blur, flip);
- ``simclr``: two SimCLR views (smaller crops, stronger colour jitter);
- ``single``: one MoCo-v2 view (SEED feeds the same view to teacher and student);
- ``multicrop``: ``global_crops`` views of ``image_size`` then ``small_crops`` views of
  ``small_size`` (SwAV-style multi-crop);
- ``seed_small_patch``: multicrop with one global view and six small patches (SEED's option);
- ``dino``: DINO's (and EsViT's) multi-crop: two global views of ``image_size`` (scale 0.4-1,
  the first always blurred, the second blurred with probability 0.1 and solarised with 0.2)
  and ``local_crops`` (8) local views of ``local_size`` (scale 0.05-0.4, blur 0.5), with
  DINO's colour jitter (0.4, 0.4, 0.2, 0.1) and bicubic crops.

Everything scales with the output size, so the same recipes serve 28-64 px data: the blur
kernel is about 10% of the crop side (as in SimCLR) and never below 3, and small crops (and
local views) default to 96/224 of ``image_size``. Grayscale, palette and RGBA images are
converted to RGB first.
Only torch's random generator is used: seeding torch before a call makes its views reproducible.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torchvision.transforms import InterpolationMode, v2

from seedzoo.data.transforms import ToRGB
from seedzoo.errors import SeedzooError


class MultiView:
    """Apply each of ``transforms`` to the same image and return the list of results."""

    def __init__(self, transforms: Sequence[Callable]):
        self.transforms = list(transforms)

    def __call__(self, image) -> list[torch.Tensor]:
        return [transform(image) for transform in self.transforms]

    def __repr__(self) -> str:
        inner = "\n".join(f"  {t!r}" for t in self.transforms)
        return f"MultiView(\n{inner}\n)"


def blur_kernel_size(image_size: int) -> int:
    """An odd Gaussian-blur kernel of about 10% of the image side, at least 3."""
    return max(3, int(0.1 * image_size) // 2 * 2 + 1)


def augmentation(image_size: int, mean: Sequence[float], std: Sequence[float], *,
                 crop_scale: Sequence[float] = (0.2, 1.0),
                 jitter: Sequence[float] = (0.4, 0.4, 0.4, 0.1),
                 jitter_probability: float = 0.8, grayscale_probability: float = 0.2,
                 blur_probability: float = 0.5, blur_sigma: Sequence[float] = (0.1, 2.0),
                 solarize_probability: float = 0.0, flip_probability: float = 0.5,
                 interpolation: str = "bilinear") -> v2.Compose:
    """One random view: the MoCo-v2 augmentation with every strength as an option."""
    steps = [ToRGB(),  # PIL kernels: about twice as fast as uint8 tensors for these sizes
             v2.RandomResizedCrop(image_size, scale=tuple(crop_scale),
                                  interpolation=InterpolationMode(interpolation), antialias=True)]
    if jitter_probability > 0:
        steps.append(v2.RandomApply([v2.ColorJitter(*jitter)], p=jitter_probability))
    if grayscale_probability > 0:
        steps.append(v2.RandomGrayscale(p=grayscale_probability))
    if blur_probability > 0:
        blur = v2.GaussianBlur(blur_kernel_size(image_size), sigma=tuple(blur_sigma))
        steps.append(v2.RandomApply([blur], p=blur_probability))
    if solarize_probability > 0:
        steps.append(v2.RandomSolarize(threshold=128, p=solarize_probability))
    if flip_probability > 0:
        steps.append(v2.RandomHorizontalFlip(p=flip_probability))
    steps += [v2.ToImage(), v2.ToDtype(torch.float32, scale=True),
              v2.Normalize(list(mean), list(std))]
    return v2.Compose(steps)


def _moco_v2(image_size, mean, std, *, num_views: int = 2, **options) -> MultiView:
    return MultiView([augmentation(image_size, mean, std, **options) for _ in range(num_views)])


def _single(image_size, mean, std, **options) -> MultiView:
    return _moco_v2(image_size, mean, std, num_views=1, **options)


def _simclr(image_size, mean, std, *, color_strength: float = 1.0,
            crop_scale: Sequence[float] = (0.08, 1.0), num_views: int = 2, **options) -> MultiView:
    s = color_strength
    options.setdefault("jitter", (0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s))
    return _moco_v2(image_size, mean, std, num_views=num_views, crop_scale=crop_scale, **options)


def _multicrop(image_size, mean, std, *, global_crops: int = 2, small_crops: int = 6,
               small_size: int | None = None, global_scale: Sequence[float] = (0.14, 1.0),
               small_scale: Sequence[float] = (0.05, 0.14), **options) -> MultiView:
    if "crop_scale" in options:
        raise SeedzooError("multicrop views take global_scale and small_scale, not crop_scale.")
    big = augmentation(image_size, mean, std, crop_scale=global_scale, **options)
    small = augmentation(small_size or _small_size(image_size), mean, std, crop_scale=small_scale,
                         **options)
    return MultiView([big] * global_crops + [small] * small_crops)


def _small_size(image_size: int) -> int:
    """The side of multi-crop's small views: 96/224 of the global side (at least 8)."""
    return max(8, round(image_size * 96 / 224))


def _dino(image_size, mean, std, *, local_crops: int = 8, local_size: int | None = None,
          global_scale: Sequence[float] = (0.4, 1.0), local_scale: Sequence[float] = (0.05, 0.4),
          **options) -> MultiView:
    fixed = sorted({"crop_scale", "blur_probability", "solarize_probability"} & set(options))
    if fixed:
        raise SeedzooError(f"dino views set {', '.join(fixed)} per view; give global_scale, "
                           "local_scale and the other augmentation options instead.")
    options = {"jitter": (0.4, 0.4, 0.2, 0.1), "interpolation": "bicubic", **options}
    first = augmentation(image_size, mean, std, crop_scale=global_scale, blur_probability=1.0,
                         **options)
    second = augmentation(image_size, mean, std, crop_scale=global_scale, blur_probability=0.1,
                          solarize_probability=0.2, **options)
    local = augmentation(local_size or _small_size(image_size), mean, std,
                         crop_scale=local_scale, blur_probability=0.5, **options)
    return MultiView([first, second] + [local] * local_crops)


def _seed_small_patch(image_size, mean, std, *, small_crops: int = 6, **options) -> MultiView:
    return _multicrop(image_size, mean, std, global_crops=1, small_crops=small_crops, **options)


VIEWS: dict[str, Callable[..., MultiView]] = {
    "moco_v2": _moco_v2,
    "simclr": _simclr,
    "single": _single,
    "multicrop": _multicrop,
    "seed_small_patch": _seed_small_patch,
    "dino": _dino,
}


def list_views() -> list[str]:
    return sorted(VIEWS)


def build_views(name: str, *, image_size: int, mean: Sequence[float], std: Sequence[float],
                **options) -> MultiView:
    """The view recipe ``name`` producing normalised ``image_size`` crops (see module docstring)."""
    if name not in VIEWS:
        raise SeedzooError(f"Unknown view recipe {name!r}; known: {', '.join(list_views())}.")
    try:
        return VIEWS[name](int(image_size), tuple(mean), tuple(std), **options)
    except TypeError as error:
        raise SeedzooError(f"Bad options for view recipe {name!r}: {error}.") from None
