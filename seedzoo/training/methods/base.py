"""The contract between the trainer and a method.

A method is one module file in this package that defines its modules and loss, and registers a
builder with :func:`register_method`. The trainer never names a method; it serves what the
method declares:

- ``build_method(name, **options)`` returns a :class:`Method` (an ``nn.Module``); a builder whose
  signature names ``dataset_size`` or ``num_classes`` also gets them from the training data;
- ``method(batch)`` takes one step's :class:`Batch` (the view batches, each ``(B, C, H, W)``; the
  labels; the indices of the samples in the training set, ``0 <= i < dataset_size``) and
  returns a dict of scalar tensors that must contain ``"loss"`` (the rest is logged);
- ``views`` names the view recipe it expects (see ``seedzoo.training.views``) unless the recipe
  overrides it, ``view_options`` the options it needs from that recipe (e.g. ``num_views``; the
  recipe's ``data.view_options`` win over them), and ``min_views`` how many views of each image
  it needs (fewer: SeedzooError);
- ``needs_labels`` (an attribute of the builder: the class), a bool or a function of the
  recipe's method options (see :func:`method_needs_labels`): the trainer refuses a dataset
  without labels before building the method;
- ``encoders()`` names the timm networks it exports (``{"encoder": self.encoder}`` by default);
- ``classifiers()`` names the linear classifiers it exports beside them (``{}`` by default),
  keyed like ``encoders()``: the trainer writes each into its encoder's folder
  (``classifier.safetensors`` + ``classifier.json``, see :func:`seedzoo.zoo.save_classifier`);
- ``describe()`` returns what the trainer prints once at the start (e.g. what a teacher load
  took), or None;
- in eval mode (``method.eval()``) a forward pass computes the loss and changes no state: no
  enqueue, no momentum update, no buffer write; in training mode a buffer the loss reads (a
  queue) is written in ``finish_step``, after the backward that reads it (no copy needed:
  ``EmbeddingQueue.enqueue_after_backward``);
- everything a resume needs (queues, pointers, momentum encoders, frozen teachers) lives in its
  parameters and registered buffers, so ``state_dict()`` holds it;
- a method with schedules of its own, or updates that follow the optimiser, uses the step hooks
  (no-ops by default), which the trainer calls around every training step, in this order:
  ``start_step(progress)`` before the forward pass, with the :class:`TrainingProgress` of the
  step about to be taken (a function of it, e.g. a temperature warm-up, resumes exactly, since
  the trainer's checkpoint holds the position); ``frozen_parameters()`` after backward and
  gradient clipping: the parameters whose gradients are dropped this step, which the optimiser
  then leaves untouched (e.g. a head's last layer in the first epoch); ``finish_step()`` after
  the optimiser step (e.g. a momentum teacher's update from the new weights). Without a trainer
  (or before the first ``start_step``) a method behaves as at step 0;
- ``plain_parameters()``, read once when the optimiser is built: weights that, like norms and
  biases, get no weight decay and no LARS adaptation (a zero-initialised classifier would
  barely move under LARS).

A new method, in its own module (imported by ``seedzoo/training/methods/__init__.py``)::

    @register_method("byol_like")
    class ByolLike(Method):
        views, min_views = "moco_v2", 2

        def __init__(self, *, encoder: dict | str, dim: int = 128, dataset_size: int):
            super().__init__()
            self.encoder = build_encoder(encoder)
            self.head = mlp_head(feature_dim(self.encoder), dim)
            self.register_buffer("bank", torch.zeros(dataset_size, dim))  # a resume keeps it

        def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
            self.check_views(batch.views)
            first, second = (self.head(self.encoder(v)) for v in batch.views[:2])
            loss = F.mse_loss(first, second.detach())
            if self.training:  # eval mode changes no state
                self.bank[batch.indices] = first.detach()
            return {"loss": loss}
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import NamedTuple

import torch
from torch import nn

from seedzoo.errors import SeedzooError

_METHODS: dict[str, Callable[..., Method]] = {}
# Methods of the contract that a submodule attribute must not shadow.
_CONTRACT_NAMES = ("encoders", "classifiers", "describe", "check_views", "start_step",
                   "frozen_parameters", "plain_parameters", "finish_step")

#: What the trainer knows of its data, given to the builders whose signature names it.
DATA_CONTEXT = ("dataset_size", "num_classes")


class Batch(NamedTuple):
    """One step's data; a sample is a Batch too (an int label and index), which the default
    DataLoader collate stacks into this."""

    views: list[torch.Tensor]
    labels: torch.Tensor
    indices: torch.Tensor

    def to(self, device: torch.device, non_blocking: bool = False,
           memory_format: torch.memory_format = torch.preserve_format) -> Batch:
        """On ``device``, image views (4-d) in ``memory_format`` (e.g. channels-last)."""
        return Batch([v.to(device, non_blocking=non_blocking,
                           memory_format=memory_format if v.ndim == 4 else torch.preserve_format)
                      for v in self.views],
                     self.labels.to(device, non_blocking=non_blocking),
                     self.indices.to(device, non_blocking=non_blocking))


class TrainingProgress(NamedTuple):
    """Where a run stands at a training step: ``step`` is the 0-based index of the step about
    to be taken, of ``total_steps`` in all, ``steps_per_epoch`` a full epoch."""

    step: int
    total_steps: int
    steps_per_epoch: int

    @property
    def epoch(self) -> int:
        """The 0-based epoch the step belongs to."""
        return self.step // self.steps_per_epoch

    @property
    def fraction(self) -> float:
        """The part of the run done before this step, in [0, 1)."""
        return self.step / self.total_steps


class Method(nn.Module):
    """Base class of training methods (see the module docstring for the contract)."""

    encoder: nn.Module
    views: str = "moco_v2"
    min_views: int = 1
    view_options: Mapping[str, object] = MappingProxyType({})
    needs_labels: bool = False

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def encoders(self) -> dict[str, nn.Module]:
        """The timm networks this method trains for export, by name."""
        return {"encoder": self.encoder}

    def classifiers(self) -> dict[str, nn.Linear]:
        """The linear classifiers on exported networks' features, keyed like :meth:`encoders`
        (none by default)."""
        return {}

    def describe(self) -> str | None:
        """What the trainer prints once before training (None: nothing)."""
        return None

    def start_step(self, progress: TrainingProgress) -> None:
        """Called by the trainer before each training step's forward pass (nothing by default)."""

    def frozen_parameters(self) -> list[nn.Parameter]:
        """The parameters the optimiser leaves untouched this step (none by default)."""
        return []

    def plain_parameters(self) -> list[nn.Parameter]:
        """Weights that take plain steps: no weight decay and no LARS adaptation, as norms and
        biases (none by default; SimCLRv2's fine-tuning: its new classifier)."""
        return []

    def finish_step(self) -> None:
        """Called by the trainer after each optimiser step (nothing by default)."""

    def __setattr__(self, name: str, value) -> None:
        # A submodule stored under a contract method's name would be hidden by the method.
        if name in _CONTRACT_NAMES and isinstance(value, nn.Module):
            raise TypeError(f"{type(self).__name__}.{name} is a method of the Method contract; "
                            "store the module under another name.")
        super().__setattr__(name, value)

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


def method_builder(name: str) -> Callable[..., Method]:
    """The builder registered as ``name``."""
    if name not in _METHODS:
        raise SeedzooError(f"Unknown method {name!r}; known: {', '.join(list_methods())}.")
    return _METHODS[name]


def method_options(name: str) -> list[str] | None:
    """The options a recipe may give method ``name`` (None: any, its builder takes ``**``)."""
    parameters = inspect.signature(method_builder(name)).parameters
    if any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
        return None
    return [p for p in parameters if p not in DATA_CONTEXT]


def required_options(name: str) -> list[str]:
    """The options a recipe must give method ``name`` (its builder's parameters without a
    default)."""
    parameters = inspect.signature(method_builder(name)).parameters.values()
    return [p.name for p in parameters if p.default is p.empty and p.name not in DATA_CONTEXT
            and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]


def method_needs_labels(name: str, options: dict) -> bool:
    """Whether method ``name`` trains on labels with these recipe ``options``: its builder's
    ``needs_labels``, a bool or a function of the options (default False)."""
    declared = getattr(method_builder(name), "needs_labels", False)
    return bool(declared(options) if callable(declared) else declared)


def build_method(name: str, *, dataset_size: int | None = None, num_classes: int | None = None,
                 **options) -> Method:
    """Build the method registered as ``name`` with its ``options`` (the recipe's method section)
    and, where its builder's signature names them, ``dataset_size`` and ``num_classes``."""
    builder = method_builder(name)
    parameters = inspect.signature(builder).parameters
    context = {"dataset_size": dataset_size, "num_classes": num_classes}
    return builder(**{k: v for k, v in context.items() if k in parameters}, **options)
