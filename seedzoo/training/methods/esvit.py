"""EsViT: efficient self-supervised vision transformers (Li et al., ICLR 2022).

Self-distillation without labels (DINO) for multi-stage backbones such as Swin, at two levels. A
student and a momentum teacher (an exponential moving average of the student, never trained by
gradients) share an architecture: a timm backbone whose last feature map is a grid of region
tokens, a DINO head on its pooled feature (view level) and another on each region token (region
level). The teacher sees the two global views, the student every view (multi-crop). For each
teacher view and each *other* student view:

- view level: the cross-entropy between the teacher's centred, sharpened distribution
  ``softmax((t - c) / tau_t)`` and the student's ``log_softmax(s / tau_s)``;
- region level: each student region token is paired with the teacher region token of the
  teacher view whose *backbone* features are the most similar (argmax cosine), and the same
  cross-entropy is taken between their region-head outputs, averaged over the student's tokens.

The loss is ``0.5 * view + 0.5 * region``, averaged over the pairs (either level can be switched
off: the other then has weight 1, as DINO). Each level has its own centre ``c``, a moving
average (momentum 0.9) of the teacher's outputs over the batch (all processes under torchrun).

Schedules follow the reference code (microsoft/esvit, ``main_esvit.py``): the teacher momentum
rises from 0.996 to 1 along a cosine over all steps; the teacher temperature warms up linearly
from 0.04 to its final value over the first epochs (one value per epoch); the student heads'
last layers stay frozen during the first epoch. AdamW, the learning-rate warm-up, gradient
clipping and the weight-decay schedule (0.04 -> 0.4) are the trainer's (``train.optimizer``,
``train.warmup_epochs``, ``train.grad_clip``, ``train.weight_decay_end``).

The exported encoder is the teacher's backbone, as DINO and EsViT evaluate.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from seedzoo.errors import SeedzooError
from seedzoo.training.distributed import all_reduce_mean
from seedzoo.training.encoder_specs import build_encoder
from seedzoo.training.heads import DinoHead
from seedzoo.training.methods.base import Batch, Method, TrainingProgress, register_method
from seedzoo.training.optim import cosine_interpolation
from seedzoo.zoo.pretrained import feature_dim


def pooled_and_region_features(backbone: nn.Module, images: torch.Tensor
                               ) -> tuple[torch.Tensor, torch.Tensor]:
    """A timm backbone's pooled feature ``(B, D)`` and its last feature map as region tokens
    ``(B, T, C)``, from one ``forward_features`` pass.

    The map is NCHW (CNNs), NHWC (timm's Swin, ``output_fmt``) or tokens ``(B, N, C)`` (ViTs,
    whose prefix tokens such as the class token are left out).
    """
    features = backbone.forward_features(images)
    pooled = backbone.forward_head(features, pre_logits=True)
    if features.ndim == 4:
        if getattr(backbone, "output_fmt", "NCHW") == "NCHW":
            features = features.permute(0, 2, 3, 1)
        return pooled, features.flatten(1, 2)
    if features.ndim == 3:
        return pooled, features[:, getattr(backbone, "num_prefix_tokens", 0):]
    raise SeedzooError(f"{type(backbone).__name__}.forward_features returns "
                       f"{tuple(features.shape)}, not a feature map or tokens; EsViT needs a "
                       "backbone whose last features are a grid of region tokens.")


@torch.no_grad()
def match_regions(student_tokens: torch.Tensor, teacher_tokens: torch.Tensor,
                  teacher_tokens_per_view: Sequence[int]) -> torch.Tensor:
    """For each student token ``(B, Ns, C)`` and each teacher view, the index (into the teacher
    tokens ``(B, Nt, C)`` of all views, view after view) of that view's token of the same image
    with the highest cosine similarity: ``(B, Ns, teacher views)``, from one batched product."""
    similarity = F.normalize(student_tokens.float(), dim=-1) \
        @ F.normalize(teacher_tokens.float(), dim=-1).transpose(1, 2)
    starts = [0, *itertools.accumulate(teacher_tokens_per_view)][:-1]
    return torch.stack([block.argmax(dim=2) + start for block, start in zip(
        similarity.split(list(teacher_tokens_per_view), dim=2), starts, strict=True)], dim=2)


def cross_entropy_matrix(teacher_probabilities: torch.Tensor,
                         student_logits: torch.Tensor) -> torch.Tensor:
    """``-sum_k p_t log p_s`` between every student row ``(B, Ns, K)`` (logits already divided by
    the student temperature) and every teacher row ``(B, Nt, K)`` of the same image:
    ``(B, Ns, Nt)``, one batched product."""
    return -(F.log_softmax(student_logits, dim=-1) @ teacher_probabilities.transpose(1, 2))


def view_pairs(teacher_views: int, student_views: int) -> list[tuple[int, int]]:
    """(teacher view, student view) of every pair the loss averages over: all but a view with
    itself."""
    return [(t, s) for t in range(teacher_views) for s in range(student_views) if s != t]


def mean_over_view_pairs(cross_entropy: torch.Tensor,
                         tokens_per_view: Sequence[int]) -> torch.Tensor:
    """The mean over :func:`view_pairs` of the cross-entropies ``(B, Ns, teacher views)`` of a
    student view's tokens (``tokens_per_view``, view after view) with a teacher view, each pair
    averaged over the batch and the student view's tokens."""
    batch, _, teacher_views = cross_entropy.shape
    counts = torch.tensor(tokens_per_view, device=cross_entropy.device)
    view_of_token = torch.repeat_interleave(torch.arange(len(counts), device=counts.device),
                                            counts)
    other_view = view_of_token[:, None] != torch.arange(teacher_views, device=counts.device)
    weights = other_view / counts[view_of_token, None]
    pairs = len(view_pairs(teacher_views, len(counts)))
    return (cross_entropy * weights).sum() / (batch * pairs)


def view_level_loss(student_logits: torch.Tensor,
                    teacher_probabilities: torch.Tensor) -> torch.Tensor:
    """DINO's loss: the mean over :func:`view_pairs` of the batch-mean cross-entropy between
    the teacher's distribution of one view (``(B, teacher views, K)``) and the student's logits
    (``(B, student views, K)``, divided by its temperature) of another."""
    return mean_over_view_pairs(cross_entropy_matrix(teacher_probabilities, student_logits),
                                [1] * student_logits.shape[1])


def region_level_loss(student_logits: torch.Tensor, student_tokens: torch.Tensor,
                      tokens_per_view: Sequence[int], teacher_probabilities: torch.Tensor,
                      teacher_tokens: torch.Tensor,
                      teacher_tokens_per_view: Sequence[int]) -> torch.Tensor:
    """EsViT's region loss: for each of :func:`view_pairs`, each student region token
    (logits ``(B, Ns, K)``, backbone features ``(B, Ns, C)``, ``tokens_per_view`` view after
    view) is matched to a teacher token (``(B, Nt, K)``, ``(B, Nt, C)``) by
    :func:`match_regions`, and the cross-entropy with the matched distribution is averaged over
    the tokens and the batch, then over the pairs."""
    match = match_regions(student_tokens, teacher_tokens, teacher_tokens_per_view)
    matched = cross_entropy_matrix(teacher_probabilities, student_logits).gather(2, match)
    return mean_over_view_pairs(matched, tokens_per_view)


def teacher_temperature_schedule(epoch: int, *, start: float, end: float,
                                 warmup_epochs: int) -> float:
    """The teacher temperature in ``epoch`` (0-based): ``linspace(start, end, warmup_epochs)``
    over the warm-up epochs, then ``end`` (the reference's per-epoch schedule)."""
    if epoch >= warmup_epochs:
        return end
    if warmup_epochs == 1:
        return start
    return start + (end - start) * epoch / (warmup_epochs - 1)


def teacher_momentum_schedule(progress: TrainingProgress, *, start: float) -> float:
    """The EMA momentum of the teacher update after a step: cosine from ``start`` to 1 over all
    steps."""
    return cosine_interpolation(start, 1.0, progress.fraction)


class Outputs(NamedTuple):
    """One network's outputs for a list of views, image-major: row ``b`` of each tensor holds
    image ``b``'s rows of every view, view after view."""

    view_logits: torch.Tensor | None    # (B, views, K); None without the view level
    region_logits: torch.Tensor | None  # (B, tokens of all views, K); None without the region level
    region_features: torch.Tensor       # (B, tokens of all views, C): the backbone's tokens
    tokens_per_view: list[int]          # region tokens of each view


class DinoNetwork(nn.Module):
    """A backbone with the DINO heads of the enabled levels (the student; the teacher is a copy)."""

    def __init__(self, backbone: nn.Module, view_head: nn.Module | None,
                 region_head: nn.Module | None):
        super().__init__()
        self.backbone, self.view_head, self.region_head = backbone, view_head, region_head

    def forward(self, views: Sequence[torch.Tensor]) -> Outputs:
        """The outputs of all views: one backbone pass per run of same-size views, one pass of
        each head over all views."""
        pooled, tokens = [], []
        start = 0
        while start < len(views):
            end = start + 1
            while end < len(views) and views[end].shape == views[start].shape:
                end += 1
            group_pooled, group_tokens = pooled_and_region_features(
                self.backbone, torch.cat(list(views[start:end])))
            pooled += group_pooled.chunk(end - start)
            tokens += group_tokens.chunk(end - start)
            start = end
        tokens_per_view = [t.shape[1] for t in tokens]
        region_features = torch.cat(tokens, dim=1)
        view_logits = region_logits = None
        if self.view_head is not None:
            view_logits = self.view_head(torch.stack(pooled, dim=1))
        if self.region_head is not None:
            region_logits = self.region_head(region_features)
        return Outputs(view_logits, region_logits, region_features, tokens_per_view)


def _without_stochastic_layers(network: nn.Module) -> nn.Module:
    """``network`` with dropout and stochastic depth off (the reference builds its teacher
    without them)."""
    for module in network.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
        if hasattr(module, "drop_prob"):  # timm's DropPath and DropBlock
            module.drop_prob = 0.0
    return network


@register_method("esvit")
class EsViT(Method):
    """EsViT (see the module docstring).

    Options (the recipe's ``method`` section):

    - ``encoder``: encoder spec ``{arch, model_args, small_stem, pretrained_cfg}`` or an arch
      name: a Swin (``swin_tiny_patch4_window7_224``; ``model_args`` for small images, with
      ``strict_img_size: false`` so that local views of another size pass) or any timm backbone
      whose last feature map can serve as region tokens (CNNs too);
    - ``out_dim`` (65536), ``hidden_dim`` (2048), ``bottleneck_dim`` (256): both DINO heads;
    - ``norm_last_layer`` (True): weight-normalised last layers of fixed magnitude (the paper's
      Swin recipe sets false);
    - ``view_loss``, ``region_loss`` (True): the two levels; one may be switched off;
    - ``student_temperature`` (0.1); ``teacher_temperature`` (0.07), reached after a linear
      warm-up from ``warmup_teacher_temperature`` (0.04) over
      ``warmup_teacher_temperature_epochs`` (30);
    - ``teacher_momentum`` (0.996): the EMA momentum at the first step, rising to 1;
    - ``center_momentum`` (0.9);
    - ``freeze_last_layer_epochs`` (1): epochs during which the heads' last layers are not
      updated.

    Takes the ``dino`` views: two global views first, then any local views.
    """

    views = "dino"
    min_views = 2

    def __init__(self, *, encoder: dict | str, out_dim: int = 65536, hidden_dim: int = 2048,
                 bottleneck_dim: int = 256, norm_last_layer: bool = True, view_loss: bool = True,
                 region_loss: bool = True, student_temperature: float = 0.1,
                 teacher_temperature: float = 0.07, warmup_teacher_temperature: float = 0.04,
                 warmup_teacher_temperature_epochs: int = 30, teacher_momentum: float = 0.996,
                 center_momentum: float = 0.9, freeze_last_layer_epochs: int = 1):
        super().__init__()
        if not (view_loss or region_loss):
            raise SeedzooError("EsViT needs method.view_loss or method.region_loss (or both).")
        backbone = build_encoder(encoder)

        def head(input_dim: int) -> DinoHead:
            return DinoHead(input_dim, out_dim, hidden_dim=hidden_dim,
                            bottleneck_dim=bottleneck_dim, norm_last_layer=norm_last_layer)

        # timm's num_features is the width of forward_features (the region tokens); the pooled
        # feature can differ (MobileNet-v3's head_hidden_size)
        self.student = DinoNetwork(backbone, head(feature_dim(backbone)) if view_loss else None,
                                   head(backbone.num_features) if region_loss else None)
        self.teacher = _without_stochastic_layers(copy.deepcopy(self.student))
        self.teacher.requires_grad_(False)
        if view_loss:
            self.register_buffer("view_center", torch.zeros(1, out_dim))
        if region_loss:
            self.register_buffer("region_center", torch.zeros(1, out_dim))
        self.level_weight = 0.5 if view_loss and region_loss else 1.0
        self.student_temperature = student_temperature
        self.teacher_temperatures = dict(start=warmup_teacher_temperature,
                                         end=teacher_temperature,
                                         warmup_epochs=warmup_teacher_temperature_epochs)
        self.teacher_momentum = teacher_momentum
        self.center_momentum = center_momentum
        self.freeze_last_layer_epochs = freeze_last_layer_epochs
        self.progress = TrainingProgress(0, 1, 1)  # set by the trainer before each step

    def encoders(self) -> dict[str, nn.Module]:
        return {"encoder": self.teacher.backbone}

    def describe(self) -> str:
        heads = {level: head for level, head in (("view", self.student.view_head),
                                                 ("region", self.student.region_head))
                 if head is not None}
        out_dim = next(iter(heads.values())).last_layer.out_features
        return (f"EsViT: {' + '.join(heads)} level, DINO heads of {out_dim} outputs; the "
                "momentum teacher's backbone is exported.")

    # -- the trainer's step hooks --------------------------------------------------------------

    def start_step(self, progress: TrainingProgress) -> None:
        self.progress = progress

    def frozen_parameters(self) -> list[nn.Parameter]:
        """The student heads' last layers during the first ``freeze_last_layer_epochs``."""
        if self.progress.epoch >= self.freeze_last_layer_epochs:
            return []
        return [p for head in (self.student.view_head, self.student.region_head)
                if head is not None for p in head.last_layer.parameters() if p.requires_grad]

    @torch.no_grad()
    def finish_step(self) -> None:
        """The teacher's EMA update from the student's new weights."""
        momentum = teacher_momentum_schedule(self.progress, start=self.teacher_momentum)
        torch._foreach_lerp_(list(self.teacher.parameters()), list(self.student.parameters()),
                             1.0 - momentum)

    # -- the loss ------------------------------------------------------------------------------

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        views = batch.views
        self.check_views(views)
        student = self.student(views)
        with torch.no_grad():
            teacher = self.teacher(views[:2])
        temperature = teacher_temperature_schedule(self.progress.epoch,
                                                   **self.teacher_temperatures)

        def sharpened(logits: torch.Tensor, center: torch.Tensor) -> torch.Tensor:
            return F.softmax((logits.float() - center) / temperature, dim=-1)

        def scaled(logits: torch.Tensor) -> torch.Tensor:
            return logits.float() / self.student_temperature

        with torch.autocast(views[0].device.type, enabled=False):
            terms = {}
            if student.view_logits is not None:
                terms["view_loss"] = view_level_loss(
                    scaled(student.view_logits), sharpened(teacher.view_logits, self.view_center))
            if student.region_logits is not None:
                terms["region_loss"] = region_level_loss(
                    scaled(student.region_logits), student.region_features,
                    student.tokens_per_view, sharpened(teacher.region_logits, self.region_center),
                    teacher.region_features, teacher.tokens_per_view)
        if self.training:
            self._update_centers(teacher)
        loss = self.level_weight * sum(terms.values())
        return {"loss": loss, **terms,
                "teacher_temperature": torch.tensor(temperature, device=loss.device)}

    @torch.no_grad()
    def _update_centers(self, teacher: Outputs) -> None:
        """Each centre moves towards the mean teacher output of the batch (over processes)."""
        for center, logits in ((getattr(self, "view_center", None), teacher.view_logits),
                               (getattr(self, "region_center", None), teacher.region_logits)):
            if logits is None:
                continue
            mean = logits.float().flatten(0, -2).mean(0, keepdim=True)
            center.lerp_(all_reduce_mean(mean),
                         1.0 - self.center_momentum)
