"""SEED: self-supervised distillation of a small student from a frozen SSL teacher.

Fang et al., "SEED: Self-supervised Distillation for Visual Representation", ICLR 2021.
One augmented view goes to both networks. The teacher (frozen, eval mode, no gradient) embeds it;
the student's backbone and projection head (Linear-ReLU-Linear to the teacher's width) embed it
too; both are L2-normalised. Each is scored against ``[the teacher's own embedding; a FIFO queue
of past teacher embeddings]``; the teacher's scores at a sharp temperature give the target
distribution of a soft cross-entropy on the student's scores. In training mode the batch's teacher
embeddings then enter the queue (gathered from every process), after the step's backward, which
reads the queue.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from seedzoo.training.encoder_specs import build_encoder
from seedzoo.training.heads import mlp_head
from seedzoo.training.methods.base import Batch, Method, register_method
from seedzoo.training.queue import EmbeddingQueue
from seedzoo.training.teachers import load_backbone, load_projection_head, teacher_spec
from seedzoo.zoo.pretrained import feature_dim


def seed_loss(student: torch.Tensor, teacher: torch.Tensor, queue: torch.Tensor, *,
              student_temperature: float, teacher_temperature: float) -> torch.Tensor:
    """SEED's soft cross-entropy of L2-normalised ``student``, ``teacher`` (N, D), ``queue`` (K, D).

    Both are scored against ``[teacher_i; queue]``: ``p_T = softmax([t_i.t_i, t_i Q^T] / tau_t)``,
    ``loss = -mean_i sum_j p_T[i, j] log softmax([s_i.t_i, s_i Q^T] / tau_s)[j]``.
    """
    # Autocast off: tau_t 1e-4 magnifies any rounding of the teacher scores.
    with torch.autocast(student.device.type, enabled=False):
        student, teacher, queue = student.float(), teacher.float(), queue.float()
        student_logits = torch.cat([(student * teacher).sum(1, keepdim=True), student @ queue.T], 1)
        teacher_logits = torch.cat([(teacher * teacher).sum(1, keepdim=True), teacher @ queue.T], 1)
        targets = F.softmax(teacher_logits / teacher_temperature, dim=1)
        log_probs = F.log_softmax(student_logits / student_temperature, dim=1)
        return -(targets * log_probs).sum(1).mean()


@register_method("seed")
class SEED(Method):
    """SEED distillation (see the module docstring).

    Options (the recipe's ``method`` section):

    - ``student``: encoder spec ``{arch, model_args, small_stem, pretrained_cfg}`` or an arch name;
    - ``teacher``: ``{source, arch, model_args, projection_head}``: a model folder, hub id,
      checkpoint file (MoCo, SimCLR, SwAV, DINO, EsViT, SEED, seedzoo run, torchvision, timm;
      ``arch`` needed for files, ``model_args`` where its weights need other
      ``timm.create_model`` arguments, e.g. a small Swin's) or ``timm:<arch>`` (random: tests
      only); see :func:`seedzoo.training.load_backbone`. The
      embedding is the backbone's pooled features, or with ``projection_head: true`` the output
      of the MLP head stored in the checkpoint file (as SEED's reference code distils MoCo-v2's
      128-d projection; see :func:`seedzoo.training.teachers.load_projection_head`);
    - ``queue_size`` (65536): teacher embeddings kept in the queue;
    - ``student_temperature`` (0.2) and ``teacher_temperature`` (1e-4);
    - ``hidden_dim`` (2048): hidden width of the student head Linear-ReLU-Linear;
    - ``small_patch_queue_size`` (None): an integer turns on SEED's small-patch views: views[0] is
      the global view, views[1:] small patches (view recipe ``seed_small_patch``), scored against
      a second queue that receives the first small patch of each image; the loss adds both terms.

    The teacher sees the views unchanged: normalise them with its mean/std
    (``method.teacher.pretrained_cfg``).
    """

    def __init__(self, *, student: dict | str, teacher: dict | str, queue_size: int = 65536,
                 student_temperature: float = 0.2, teacher_temperature: float = 1e-4,
                 hidden_dim: int = 2048, small_patch_queue_size: int | None = None):
        super().__init__()
        teacher = teacher_spec(teacher, "SEED", ("source", "arch", "model_args",
                                                 "projection_head"))
        self.encoder = build_encoder(student)
        self.teacher, self.teacher_report = load_backbone(
            teacher["source"], teacher.get("arch"), model_args=teacher.get("model_args"))
        if teacher.get("projection_head"):
            self.teacher = ProjectedTeacher(self.teacher, load_projection_head(teacher["source"]))
        self.teacher.requires_grad_(False)
        dim = feature_dim(self.teacher)
        self.head = mlp_head(feature_dim(self.encoder), dim, hidden_dim)
        self.queue = EmbeddingQueue(queue_size, dim)
        self.small_patch_queue = (EmbeddingQueue(small_patch_queue_size, dim)
                                  if small_patch_queue_size else None)
        self.views = "seed_small_patch" if self.small_patch_queue is not None else "single"
        self.min_views = 1 if self.small_patch_queue is None else 2
        self.student_temperature = student_temperature
        self.teacher_temperature = teacher_temperature
        self.teacher.eval()

    def train(self, mode: bool = True) -> SEED:
        """Switch the student; the teacher stays in eval mode (frozen BatchNorm statistics)."""
        super().train(mode)
        self.teacher.eval()
        return self

    def _distill(self, images: torch.Tensor, queue: EmbeddingQueue
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """The loss of one batch of views against ``queue``, and the teacher embeddings."""
        with torch.no_grad():  # first: its activations are freed before the student's are made
            teacher = F.normalize(self.teacher(images).float(), dim=1)
        student = F.normalize(self.head(self.encoder(images)).float(), dim=1)
        # No copy of the queue: it is written after backward (finish_step).
        loss = seed_loss(student, teacher, queue.embeddings,
                         student_temperature=self.student_temperature,
                         teacher_temperature=self.teacher_temperature)
        return loss, teacher

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        views = batch.views
        self.check_views(views)
        loss, teacher = self._distill(views[0], self.queue)
        metrics = {"loss": loss}
        if self.small_patch_queue is not None:
            small_loss, small_teacher = self._distill(torch.cat(views[1:]), self.small_patch_queue)
            if self.training:
                self.small_patch_queue.enqueue_after_backward(small_teacher[: views[1].shape[0]])
            metrics = {"loss": loss + small_loss, "loss_global": loss,
                       "loss_small_patch": small_loss}
        if self.training:
            self.queue.enqueue_after_backward(teacher)
        return metrics

    def finish_step(self) -> None:
        """The step's teacher embeddings into the queues."""
        for queue in (self.queue, self.small_patch_queue):
            if queue is not None:
                queue.write_pending()

    def describe(self) -> str:
        """What the teacher load took and skipped."""
        return self.teacher_report.summary()


class ProjectedTeacher(nn.Sequential):
    """A teacher backbone followed by its own projection head; keeps the backbone's config."""

    def __init__(self, backbone: nn.Module, head: nn.Module):
        super().__init__(backbone, head)
        self.pretrained_cfg = backbone.pretrained_cfg
