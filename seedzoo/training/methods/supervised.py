"""Supervised training: an encoder and a linear classifier, cross-entropy on the labels.

The baseline every distillation is compared with, and the teacher :mod:`kd` distils: the run
exports the encoder (``encoder/``) with its classifier beside it (``classifier.safetensors`` +
``classifier.json``), so the run folder is a teacher that gives logits
(:func:`seedzoo.training.teachers.load_classifier_teacher`).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from seedzoo.errors import SeedzooError
from seedzoo.training.encoder_specs import build_encoder
from seedzoo.training.methods.base import Batch, Method, register_method
from seedzoo.zoo.pretrained import feature_dim


def top1(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Training-batch top-1 accuracy in %, detached (logged beside the loss)."""
    return (logits.detach().argmax(1) == labels).float().mean() * 100


def check_classifier_options(method: str, num_classes: int | None,
                             label_smoothing: float) -> None:
    """Clear errors for a classifier method's data (2 or more classes) and label smoothing."""
    if not num_classes or num_classes < 2:
        raise SeedzooError(f"The {method} method needs labelled data of 2 or more classes, "
                           f"got num_classes={num_classes}.")
    if not 0.0 <= label_smoothing < 1.0:
        raise SeedzooError(f"method.label_smoothing must be in [0, 1), got {label_smoothing}.")


class EncoderClassifier(Method):
    """A method training ``classifier(encoder(view))`` with cross-entropy on one view: subclasses
    build ``encoder``, ``classifier`` and set ``label_smoothing``. The classifier is exported beside
    the encoder. Logged: ``loss`` and ``train_top1`` (%)."""

    views = "single"
    needs_labels = True
    classifier: nn.Module
    label_smoothing: float = 0.0

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        self.check_views(batch.views)
        logits = self.classifier(self.encoder(batch.views[0])).float()
        return {"loss": F.cross_entropy(logits, batch.labels,
                                        label_smoothing=self.label_smoothing),
                "train_top1": top1(logits, batch.labels)}

    def classifiers(self) -> dict[str, nn.Module]:
        return {"encoder": self.classifier}


@register_method("supervised")
class Supervised(EncoderClassifier):
    """Encoder + linear classifier trained with cross-entropy (one augmented view per image).

    Options (the recipe's ``method`` section):

    - ``encoder``: encoder spec ``{arch, model_args, small_stem, pretrained_cfg}`` or an arch name;
    - ``label_smoothing`` (0.0): of the cross-entropy.

    The class count is the training data's. Logged: ``loss`` and ``train_top1`` (%).
    """

    def __init__(self, *, encoder: dict | str, num_classes: int, label_smoothing: float = 0.0):
        super().__init__()
        check_classifier_options("supervised", num_classes, label_smoothing)
        self.encoder = build_encoder(encoder)
        self.classifier = nn.Linear(feature_dim(self.encoder), num_classes)
        self.label_smoothing = label_smoothing
