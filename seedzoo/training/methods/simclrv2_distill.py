"""SimCLRv2's third step: distil a fine-tuned teacher's class distribution into a student on
unlabelled images (Chen et al., NeurIPS 2020, Sec. 2, Eq. 2).

The frozen teacher (a ``finetune`` run, or any run exporting a classifier) and the student (an
encoder and a linear classifier) see the same augmented view; the student learns the teacher's
softened class distribution, with no label::

    L_distill = - mean_x sum_y p_T(y | x; tau) log p_S(y | x; tau),  p = softmax(logits / tau)

tau 1.0 distils a big teacher into a small student, 0.1 suits self-distillation. As in the
paper's equation there is no tau^2 factor (Hinton's KD, :mod:`.kd`, has one: with tau 1 the two
agree up to the teacher's entropy, a constant). With ``label_weight`` alpha > 0 the loss mixes
in the cross-entropy of the images that have a label (those of ``data.label_fraction`` with
``data.keep_unlabelled``, or all of a labelled set): ``alpha * CE + (1 - alpha) * L_distill``.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from seedzoo.errors import SeedzooError
from seedzoo.training.methods.base import Batch, register_method
from seedzoo.training.methods.kd import KD


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                      temperature: float) -> torch.Tensor:
    """The cross-entropy ``-sum_y p_T log p_S`` of the softened distributions
    ``softmax(logits / temperature)``, averaged over the batch; computed in float32."""
    with torch.autocast(student_logits.device.type, enabled=False):
        student = F.log_softmax(student_logits.float() / temperature, dim=1)
        teacher = F.softmax(teacher_logits.float() / temperature, dim=1)
        return -(teacher * student).sum(1).mean()


def labelled_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy averaged over the rows that have a label (``>= 0``); 0 for a batch of none."""
    labelled = (labels >= 0).sum().clamp(min=1)
    return F.cross_entropy(logits.float(), labels, ignore_index=-1, reduction="sum") / labelled


@register_method("simclrv2_distill")
class SimCLRv2Distill(KD):
    """A student classifier from a fine-tuned teacher's class distribution (module docstring).

    Options (the recipe's ``method`` section):

    - ``student``: encoder spec ``{arch, model_args, small_stem, pretrained_cfg}`` or an arch name;
    - ``teacher``: ``{source, arch, network, model_args}`` or a source: the run (or encoder)
      folder of a ``finetune`` run, or of any run that exports a classifier (see
      :func:`seedzoo.training.teachers.load_classifier_teacher`);
    - ``temperature`` (1.0; 0.1 for self-distillation);
    - ``label_weight`` (0.0, the paper's headline runs): alpha of the label loss mixed in.

    Labels are not needed (the student's classes are the teacher's); with ``label_weight`` the
    images with a label add their cross-entropy. The student exports its encoder and classifier,
    so its run folder teaches in turn. Logged: ``loss``, ``loss_distill``, ``teacher_agreement``
    (% of images where student and teacher pick the same class) and, with labels, ``loss_label``.
    """

    needs_labels = False

    def __init__(self, *, student: dict | str, teacher: dict | str, num_classes: int | None = None,
                 temperature: float = 1.0, label_weight: float = 0.0):
        if not 0 <= label_weight < 1:
            raise SeedzooError(f"method.label_weight must be in [0, 1), got {label_weight}.")
        if label_weight and not num_classes:
            raise SeedzooError("method.label_weight mixes in the label loss, but the training "
                               "data has no labels; set it to 0 or train on a labelled dataset.")
        super().__init__(student=student, teacher=teacher, num_classes=num_classes,
                         temperature=temperature, kd_weight=1 - label_weight,
                         ce_weight=label_weight)

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        self.check_views(batch.views)
        student, teacher = self.logits(batch.views[0])
        distill = distillation_loss(student, teacher, self.temperature)
        agreement = (student.detach().argmax(1) == teacher.argmax(1)).float().mean() * 100
        outputs = {"loss_distill": distill.detach(), "teacher_agreement": agreement}
        loss = self.kd_weight * distill  # 1 - label_weight
        if self.ce_weight:  # label_weight
            label = labelled_cross_entropy(student, batch.labels)
            loss = loss + self.ce_weight * label
            outputs["loss_label"] = label.detach()
        return {"loss": loss, **outputs}
