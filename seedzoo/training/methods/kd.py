"""KD: knowledge distillation from a teacher's logits (Hinton, Vinyals and Dean, 2015).

A frozen teacher that gives logits (the encoder and classifier a ``supervised`` or ``kd`` run
exports) and the student (an encoder and a linear classifier) see the same augmented view. The
loss is ``kd_weight * T^2 * KL(softmax(t / T) || softmax(s / T)) + ce_weight * CE(s, labels)``:
the KL term is averaged over the batch and scaled by ``T^2`` so that its gradients keep their
size as the temperature changes (the paper's remark). The student exports its encoder and
classifier, so its run folder can teach in turn.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from seedzoo.errors import SeedzooError
from seedzoo.training.encoder_specs import build_encoder
from seedzoo.training.methods.base import Batch, Method, register_method
from seedzoo.training.methods.supervised import top1
from seedzoo.training.teachers import load_classifier_teacher, teacher_spec
from seedzoo.zoo.pretrained import feature_dim


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
            temperature: float) -> torch.Tensor:
    """Hinton's distillation loss: ``T^2 * KL(p_T || p_S)`` with ``p = softmax(logits / T)``,
    summed over classes and averaged over the batch (``batchmean``). Computed in float32."""
    with torch.autocast(student_logits.device.type, enabled=False):
        student = F.log_softmax(student_logits.float() / temperature, dim=1)
        teacher = F.log_softmax(teacher_logits.float() / temperature, dim=1)
        kl = F.kl_div(student, teacher, reduction="batchmean", log_target=True)
        return kl * temperature ** 2


@register_method("kd")
class KD(Method):
    """Knowledge distillation of a student classifier from a teacher's logits (module docstring).

    Options (the recipe's ``method`` section):

    - ``student``: encoder spec ``{arch, model_args, small_stem, pretrained_cfg}`` or an arch name;
    - ``teacher``: ``{source, arch, network, model_args}`` or a source: an encoder folder or
      run folder written by a ``supervised`` (or ``kd``) run, which keeps the classifier beside
      the encoder (``network`` picks one network of a run folder that holds several; a folder
      records its own ``model_args``, so giving them is an error); see
      :func:`seedzoo.training.teachers.load_classifier_teacher`. Its class count must be the
      data's;
    - ``temperature`` (4.0), ``kd_weight`` (0.9) and ``ce_weight`` (0.1).

    Logged: ``loss``, ``loss_kd``, ``loss_ce``, ``train_top1`` and ``teacher_top1`` (%). The
    teacher sees the views unchanged: normalise them with its mean/std
    (``method.teacher.pretrained_cfg``).
    """

    views = "single"
    needs_labels = True

    def __init__(self, *, student: dict | str, teacher: dict | str, num_classes: int,
                 temperature: float = 4.0, kd_weight: float = 0.9, ce_weight: float = 0.1):
        super().__init__()
        teacher = teacher_spec(teacher, "KD")
        if temperature <= 0:
            raise SeedzooError(f"method.temperature must be positive, got {temperature}.")
        if kd_weight < 0 or ce_weight < 0 or kd_weight + ce_weight == 0:
            raise SeedzooError(f"method.kd_weight and method.ce_weight must be non-negative and "
                               f"not both 0, got {kd_weight} and {ce_weight}.")
        self.teacher, self.teacher_classifier, self.teacher_report = load_classifier_teacher(
            teacher["source"], teacher.get("arch"), teacher.get("network"), num_classes,
            teacher.get("model_args"))
        for module in (self.teacher, self.teacher_classifier):
            module.requires_grad_(False)
        self.encoder = build_encoder(student)
        self.classifier = nn.Linear(feature_dim(self.encoder),
                                    num_classes or self.teacher_classifier.out_features)
        self.temperature, self.kd_weight, self.ce_weight = temperature, kd_weight, ce_weight
        self.teacher.eval()
        self.teacher_classifier.eval()

    def train(self, mode: bool = True) -> KD:
        """Switch the student; the teacher stays in eval mode (frozen BatchNorm statistics)."""
        super().train(mode)
        self.teacher.eval()
        self.teacher_classifier.eval()
        return self

    def logits(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(student, teacher)`` logits (float32) of ``images``; the frozen teacher runs first,
        so its activations are freed before the student's are made."""
        with torch.no_grad():
            teacher = self.teacher_classifier(self.teacher(images)).float()
        return self.classifier(self.encoder(images)).float(), teacher

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        self.check_views(batch.views)
        student, teacher = self.logits(batch.views[0])
        distill = kd_loss(student, teacher, self.temperature)
        ce = F.cross_entropy(student, batch.labels)
        return {"loss": self.kd_weight * distill + self.ce_weight * ce, "loss_kd": distill.detach(),
                "loss_ce": ce.detach(), "train_top1": top1(student, batch.labels),
                "teacher_top1": top1(teacher, batch.labels)}

    def classifiers(self) -> dict[str, nn.Linear]:
        return {"encoder": self.classifier}

    def describe(self) -> str:
        """What the teacher load took."""
        return self.teacher_report.summary()
