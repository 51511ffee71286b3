"""Fine-tuning a self-supervised run on labels from its encoder and the first layers of its
projection head: SimCLRv2's second step (Chen et al., NeurIPS 2020, Sec. 2).

SimCLR threw the projection head away; SimCLRv2 keeps the first layer of its 3-layer head and
fine-tunes the encoder, that layer and a new linear classifier together on the few labels there
are (1% or 10%: ``data.label_fraction``). A timm encoder cannot hold the extra layer, so the run
exports the encoder alone (``encoder/``, plain timm) and, beside it, the kept head layers with
the classifier as one :class:`~seedzoo.zoo.pretrained.MLPClassifier`: the folder is a teacher
that gives logits (:func:`seedzoo.training.teachers.load_classifier_teacher`), which the
distillation step (:mod:`.simclrv2_distill`) reads.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from seedzoo.errors import CheckpointError, ModelNotFoundError, SeedzooError
from seedzoo.training.methods.base import register_method
from seedzoo.training.methods.supervised import EncoderClassifier, check_classifier_options
from seedzoo.training.teachers import load_backbone, load_projection_head
from seedzoo.zoo.layout import CHECKPOINT_NAME, ENCODER_DIR
from seedzoo.zoo.pretrained import MLPClassifier, feature_dim


def head_blocks(head: nn.Sequential) -> list[list[nn.Module]]:
    """The layers of a projection head grouped per linear layer (Linear [BatchNorm] [ReLU])."""
    blocks: list[list[nn.Module]] = []
    for layer in head:
        if isinstance(layer, nn.Linear) or not blocks:
            blocks.append([])
        blocks[-1].append(layer)
    return blocks


def load_pretrained_run(run_dir: str, head_layers: int):
    """The encoder a self-supervised run exported, the first ``head_layers`` blocks of the
    projection head its checkpoint keeps (a list of layers), the head's block count and the
    encoder's load report."""
    path = Path(run_dir).expanduser()
    if not path.is_dir():
        raise ModelNotFoundError(f"finetune's method.pretrained is the run folder of a "
                                 f"self-supervised run (simclr, moco); {run_dir} is not a folder.")
    if not (path / ENCODER_DIR).is_dir():
        raise ModelNotFoundError(f"The pretrained run {run_dir} has no exported {ENCODER_DIR}/: "
                                 f"finish it first (seedzoo train --out {run_dir} --resume).")
    encoder, report = load_backbone(str(path))
    if head_layers == 0:
        return encoder, [], 0, report
    checkpoint = path / CHECKPOINT_NAME
    if not checkpoint.is_file():
        raise ModelNotFoundError(f"The pretrained run {run_dir} has no {CHECKPOINT_NAME}, which "
                                 "keeps the projection head; give the run folder itself, or set "
                                 "method.head_layers: 0 to fine-tune the encoder alone.")
    try:
        blocks = head_blocks(load_projection_head(str(checkpoint)))
    except CheckpointError:
        raise CheckpointError(
            f"The pretrained run {run_dir} keeps no projection head in {CHECKPOINT_NAME} (its "
            "method trains none); fine-tune from a simclr or moco run, or set "
            "method.head_layers: 0 to fine-tune the encoder alone.") from None
    width = feature_dim(encoder)
    if blocks[0][0].in_features != width:
        raise CheckpointError(f"The projection head in {checkpoint} takes "
                              f"{blocks[0][0].in_features} features, but the run's encoder gives "
                              f"{width}: they do not belong together.")
    if head_layers > len(blocks):
        raise SeedzooError(f"method.head_layers is {head_layers}, but the projection head of "
                           f"{run_dir} has {len(blocks)} layers.")
    return encoder, blocks[:head_layers], len(blocks), report


@register_method("finetune")
class Finetune(EncoderClassifier):
    """Fine-tune a self-supervised run's encoder and first head layers with a new classifier.

    Options (the recipe's ``method`` section):

    - ``pretrained``: the run folder of a ``simclr`` (or ``moco``) run: its exported encoder and
      the projection head its ``checkpoint.pt`` keeps;
    - ``head_layers`` (1, SimCLRv2's): how many of the head's layers to keep under the
      classifier (0: a linear classifier on the encoder, the paper's choice with all labels);
    - ``label_smoothing`` (0.0): of the cross-entropy.

    Everything trains (encoder, head layers, classifier) with cross-entropy on one view; train
    on the labelled subset with ``data.label_fraction``. Exports the encoder with an
    :class:`~seedzoo.zoo.pretrained.MLPClassifier` (head layers + classifier) beside it, or a
    linear classifier with ``head_layers: 0``. Logged: ``loss`` and ``train_top1`` (%).
    """

    def __init__(self, *, pretrained: str, num_classes: int, head_layers: int = 1,
                 label_smoothing: float = 0.0):
        super().__init__()
        check_classifier_options("finetune", num_classes, label_smoothing)
        if head_layers < 0:
            raise SeedzooError(f"method.head_layers must be 0 or more, got {head_layers}.")
        self.encoder, blocks, total, self.report = load_pretrained_run(pretrained, head_layers)
        layers = [layer for block in blocks for layer in block]
        linears = [layer for layer in layers if isinstance(layer, nn.Linear)]
        width = linears[-1].out_features if linears else feature_dim(self.encoder)
        output = nn.Linear(width, num_classes)
        nn.init.zeros_(output.weight)  # as the reference code's zero_init_logits_layer
        nn.init.zeros_(output.bias)
        self.classifier = MLPClassifier(*layers, output) if layers else output
        self.head_source = f"{head_layers} of the {total} projection head layers of {pretrained}"
        self.label_smoothing = label_smoothing

    def plain_parameters(self) -> list[nn.Parameter]:
        """The new classifier, left out of weight decay and LARS adaptation as the reference's
        ``head_supervised``."""
        classifier = self.classifier
        output = classifier[-1] if isinstance(classifier, MLPClassifier) else classifier
        return list(output.parameters())

    def describe(self) -> str:
        """What was loaded: the encoder, and which head layers."""
        return f"{self.report.summary()}\nfine-tuning from {self.head_source}"
