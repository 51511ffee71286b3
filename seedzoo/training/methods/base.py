"""The contract between the trainer and a method.

A method is one module file in this package that defines its modules and loss, and registers a
builder with :func:`register_method`. The trainer knows nothing else about methods:

- ``build_method(name, **options)`` returns a :class:`Method` (an ``nn.Module``);
- ``method(views)`` takes the list of augmented view batches of one step (each ``(B, C, H, W)``)
  and returns a dict of scalar tensors that must contain ``"loss"`` (the rest is logged);
- ``method.encoder`` is the timm encoder being trained (exported at the end of a run);
- everything a method must carry across a resume (queues, pointers, momentum encoders,
  frozen teachers) lives in its parameters and registered buffers, so ``state_dict()`` holds it;
- ``method.views`` names the view recipe it expects (see ``seedzoo.training.views``) unless
  the recipe overrides it, and ``method.min_views`` how many views of each image it needs.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from seedzoo.errors import SeedzooError

_METHODS: dict[str, Callable[..., "Method"]] = {}


class Method(nn.Module):
    """Base class of training methods (see the module docstring for the contract)."""

    encoder: nn.Module
    views: str = "moco_v2"
    min_views: int = 1

    def forward(self, views: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def check_views(self, views) -> None:
        """A clear error when ``views`` (view batches, or a view recipe's transforms) are fewer
        than :attr:`min_views`."""
        if len(views) < self.min_views:
            raise SeedzooError(
                f"{type(self).__name__} needs at least {self.min_views} views of each image, got "
                f"{len(views)}: use the view recipe {self.views!r} (data.views, or null for the "
                "method's default).")


def register_method(name: str):
    """Class or function decorator adding a method builder under ``name``."""
    def decorate(builder):
        _METHODS[name] = builder
        return builder
    return decorate


def list_methods() -> list[str]:
    return sorted(_METHODS)


def build_method(name: str, **options) -> Method:
    """Build the method registered as ``name`` with its ``options`` (the recipe's method section)."""
    if name not in _METHODS:
        raise SeedzooError(f"Unknown method {name!r}; known: {', '.join(list_methods())}.")
    return _METHODS[name](**options)
