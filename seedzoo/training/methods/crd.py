"""CRD: contrastive representation distillation from a frozen teacher (with KD and CE optional).

Tian, Krishnan and Isola, "Contrastive Representation Distillation", ICLR 2020 (reference code:
HobbitLong/RepDistiller, ``crd/``). One view goes to both networks. The student's and the
teacher's pooled features each pass through their own linear embedding to ``feat_dim`` (128) and
are L2-normalised. Two memory banks hold one embedding per training sample: the student bank and
the teacher bank. Each student embedding (the anchor) is scored against the teacher bank's row of
its own sample (the positive) and ``nce_k`` rows of other samples (the negatives),
``exp(<anchor, row> / nce_t) / Z``, and the NCE criterion of the reference (noise distribution
``P_n = 1/N``) turns the scores into a loss; symmetrically each teacher embedding is scored
against the student bank. The two losses add up to CRD; the method's loss is
``crd_weight * CRD``. In training mode the banks then take the batch's embeddings (momentum 0.5,
re-normalised).

The paper's full loss adds the label terms on a student classifier (a linear layer on the
student's pooled features): ``ce_weight * CE(labels) + kd_weight * KD(teacher logits) +
crd_weight * CRD``, KD as in :mod:`seedzoo.training.methods.kd` (``T^2 * KL`` at
``kd_temperature``); the paper's CRD+KD uses 1, 1 and 0.8. ``kd_weight > 0`` needs a teacher
that gives logits (a ``supervised`` or ``kd`` run folder); ``ce_weight > 0`` needs labelled data.
With both 0 (the default) it is label-free CRD from any teacher, self-supervised ones included:
the setting of SEED. A run with label terms exports the student's classifier beside its encoder.

Choices where the reference leaves room (tested in ``tests/test_crd.py``):

- **Negatives exclude the anchor.** The reference draws negatives uniformly from all N rows, its
  own sample included (probability K/N per anchor of a "negative" that is the positive). Here each
  negative is drawn uniformly from the N - 1 other rows (a draw from ``0..N-2`` shifted past the
  anchor's index: the distribution of resampling until the index differs, in one draw). Negatives
  of one anchor may repeat, as in the reference (with replacement). They are drawn from an RNG
  seeded by buffers (a seed, the training steps so far) and the process rank, so a resume draws
  what the uninterrupted run drew and an eval forward draws without touching any RNG state.
- **Duplicate indices in one update** (a distributed sampler pads the last shard by repeating
  samples): the last occurrence wins, in the order of the gathered batch (rank order, then batch
  order); the others are ignored. Deterministic on every device, so every process writes the same
  rows.
- **Distributed training**: the banks are updated with the embeddings and indices gathered from
  every process (in rank order), so all processes keep identical banks; each process draws its own
  negatives. The normalising constants are estimated on the first training batch as in the
  reference (``mean(exp(out / nce_t)) * N``), averaged over processes, and then kept fixed.
- **Eval mode** changes nothing: before the constants are set, an eval forward estimates them on
  its own batch without storing them.

Memory: the banks are registered buffers (a checkpoint carries them): 2 x N x ``feat_dim`` x 4
bytes, 10 MB for 10,000 images and about 1.3 GB at ImageNet's 1.28 M (on every GPU, and in every
checkpoint). Each step also gathers ``B x (nce_k + 1)`` rows of each bank (``B`` the per-process
batch), kept for the backward pass: 2 x B x (K + 1) x ``feat_dim`` x 4 bytes, about 4.3 GB for
B = 256, K = 16384.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from seedzoo.errors import SeedzooError
from seedzoo.training.distributed import all_gather_cat, all_reduce_mean, rank
from seedzoo.training.encoder_specs import build_encoder
from seedzoo.training.methods.base import Batch, Method, register_method
from seedzoo.training.methods.kd import kd_loss
from seedzoo.training.methods.supervised import top1
from seedzoo.training.teachers import load_backbone, load_classifier_teacher, teacher_spec
from seedzoo.zoo.pretrained import feature_dim

#: The reference's epsilon in the NCE criterion.
NCE_EPS = 1e-7


def contrast_scores(anchors: torch.Tensor, rows: torch.Tensor, *,
                    temperature: float) -> torch.Tensor:
    """``exp(<anchor_i, rows_ij> / temperature)``: ``anchors`` (B, D), ``rows`` (B, K+1, D) ->
    (B, K+1), unnormalised (the reference's ``out`` before dividing by Z)."""
    return torch.exp(torch.bmm(rows, anchors.unsqueeze(2)).squeeze(2) / temperature)


def estimate_normaliser(scores: torch.Tensor, dataset_size: int) -> torch.Tensor:
    """The reference's normalising constant ``Z = mean(scores) * N`` (a 0-d tensor)."""
    return scores.detach().mean() * dataset_size


def nce_criterion(probs: torch.Tensor, dataset_size: int, eps: float = NCE_EPS) -> torch.Tensor:
    """The reference's ``ContrastLoss`` on ``probs`` (B, K+1), column 0 the positive.

    With ``m = K`` and ``P_n = 1 / N``:
    ``loss = -(sum_i log(p_i0 / (p_i0 + m P_n + eps))
    + sum_{i, j>0} log(m P_n / (p_ij + m P_n + eps))) / B``.
    """
    batch, m = probs.shape[0], probs.shape[1] - 1
    noise = m / dataset_size
    positive, negatives = probs[:, 0], probs[:, 1:]
    log_d1 = torch.log(positive / (positive + noise + eps))
    log_d0 = torch.log(noise / (negatives + noise + eps))
    return -(log_d1.sum() + log_d0.sum()) / batch


def crd_nce_loss(anchors: torch.Tensor, rows: torch.Tensor, *, temperature: float,
                 normaliser: float | torch.Tensor, dataset_size: int,
                 eps: float = NCE_EPS) -> torch.Tensor:
    """One direction of CRD: L2-normalised ``anchors`` (B, D) against bank ``rows`` (B, K+1, D)
    (row 0: the positive, the other modality's bank row of the anchor's sample), scores
    ``exp(<a, r> / temperature) / normaliser``, then :func:`nce_criterion`."""
    scores = contrast_scores(anchors, rows, temperature=temperature)
    return nce_criterion(scores / normaliser, dataset_size, eps)


def sample_negatives(indices: torch.Tensor, dataset_size: int, count: int,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """``count`` sample indices per anchor (B, count), uniform over ``0..N-1`` without the
    anchor's own index (with replacement); ``generator`` on ``indices``' device, or the global
    RNG."""
    draws = torch.randint(dataset_size - 1, (indices.shape[0], count), device=indices.device,
                          generator=generator)
    return draws + (draws >= indices.unsqueeze(1)).long()


def last_occurrences(indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The distinct values of ``indices`` and, for each, the position of its last occurrence."""
    unique, inverse = torch.unique(indices, return_inverse=True)
    positions = torch.arange(indices.shape[0], device=indices.device)
    last = torch.full_like(unique, -1).scatter_reduce_(0, inverse, positions, "amax")
    return unique, last


@torch.no_grad()
def momentum_update(bank: torch.Tensor, indices: torch.Tensor, embeddings: torch.Tensor,
                    momentum: float) -> None:
    """In place: ``bank[i] = normalize(momentum * bank[i] + (1 - momentum) * e)`` for each index
    ``i`` and its embedding ``e``; of duplicate indices the last one wins."""
    rows, last = last_occurrences(indices)
    updated = bank[rows] * momentum + embeddings[last].to(bank.dtype) * (1 - momentum)
    bank[rows] = F.normalize(updated, dim=1)


def initial_bank(size: int, dim: int) -> torch.Tensor:
    """The reference's initialisation: uniform in ``[-stdv, stdv]``, ``stdv = 1/sqrt(dim/3)``."""
    stdv = 1.0 / math.sqrt(dim / 3)
    return torch.rand(size, dim) * (2 * stdv) - stdv


class Embed(nn.Module):
    """The reference's embedding: a linear map, then L2 normalisation (in float32)."""

    def __init__(self, dim_in: int, dim_out: int):
        super().__init__()
        self.linear = nn.Linear(dim_in, dim_out)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.linear(features.flatten(1)).float(), dim=1)


@register_method("crd")
class CRD(Method):
    """CRD, label-free or with the paper's KD and CE terms (see the module docstring).

    Options (the recipe's ``method`` section):

    - ``student``: encoder spec ``{arch, model_args, small_stem, pretrained_cfg}`` or an arch name;
    - ``teacher``: ``{source, arch, network, model_args}`` or a source: a model folder, run
      folder, hub id or checkpoint file (``arch`` needed for files, ``model_args`` where its
      weights need other ``timm.create_model`` arguments), or ``timm:<arch>`` (random: tests
      only); see
      :func:`seedzoo.training.teachers.load_backbone`. Its pooled backbone features are
      embedded; with ``kd_weight > 0`` it must give logits too
      (:func:`seedzoo.training.teachers.load_classifier_teacher`);
    - ``feat_dim`` (128): width of both embeddings and bank rows;
    - ``nce_k`` (16384): negatives per anchor, fewer than the training images;
    - ``nce_t`` (0.07): temperature;
    - ``nce_momentum`` (0.5): weight of a bank row's old value in its update;
    - ``crd_weight`` (0.8), ``kd_weight`` (0), ``ce_weight`` (0): the loss's weights;
    - ``kd_temperature`` (4.0): KD's temperature.

    Logged: ``loss``, both CRD directions, and with label terms ``loss_kd`` / ``loss_ce`` and
    ``train_top1`` (%, with labels). The teacher sees the views unchanged: normalise them with its
    mean/std.
    """

    views, min_views = "single", 1

    @staticmethod
    def needs_labels(options: dict) -> bool:
        """Labels are read for the cross-entropy term only."""
        return bool(options.get("ce_weight"))

    def __init__(self, *, student: dict | str, teacher: dict | str, dataset_size: int | None = None,
                 num_classes: int | None = None, feat_dim: int = 128, nce_k: int = 16384,
                 nce_t: float = 0.07, nce_momentum: float = 0.5, crd_weight: float = 0.8,
                 kd_weight: float = 0.0, ce_weight: float = 0.0, kd_temperature: float = 4.0):
        super().__init__()
        if dataset_size is None:
            raise SeedzooError("crd keeps a memory bank row per training image: build it with "
                               "dataset_size (the trainer gives it).")
        if dataset_size <= nce_k:
            raise SeedzooError(
                f"crd draws method.nce_k={nce_k} negatives from a memory bank of the "
                f"{dataset_size} training images, other than the anchor's own: lower "
                f"method.nce_k below {dataset_size}.")
        if nce_k < 1 or feat_dim < 1 or not 0 <= nce_momentum < 1:
            raise SeedzooError(f"crd needs nce_k >= 1, feat_dim >= 1 and 0 <= nce_momentum < 1, "
                               f"got {nce_k}, {feat_dim}, {nce_momentum}.")
        if min(crd_weight, kd_weight, ce_weight) < 0 or crd_weight + kd_weight + ce_weight == 0 \
                or kd_temperature <= 0:
            raise SeedzooError(
                f"crd's weights must be non-negative and not all 0 and its kd_temperature "
                f"positive, got crd_weight {crd_weight}, kd_weight {kd_weight}, ce_weight "
                f"{ce_weight}, kd_temperature {kd_temperature}.")
        teacher = teacher_spec(teacher, "CRD")
        self.encoder = build_encoder(student)
        self.teacher_classifier = self.classifier = None
        if kd_weight:
            self.teacher, self.teacher_classifier, self.teacher_report = load_classifier_teacher(
                teacher["source"], teacher.get("arch"), teacher.get("network"), num_classes,
                teacher.get("model_args"))
            self.teacher_classifier.requires_grad_(False)
            num_classes = self.teacher_classifier.out_features
        else:
            self.teacher, self.teacher_report = load_backbone(
                teacher["source"], teacher.get("arch"), teacher.get("network"),
                teacher.get("model_args"))
        self.teacher.requires_grad_(False)
        self.teacher.eval()
        if kd_weight or ce_weight:
            self.classifier = nn.Linear(feature_dim(self.encoder), num_classes)
        self.embed_student = Embed(feature_dim(self.encoder), feat_dim)
        self.embed_teacher = Embed(feature_dim(self.teacher), feat_dim)
        self.register_buffer("student_bank", initial_bank(dataset_size, feat_dim))
        self.register_buffer("teacher_bank", initial_bank(dataset_size, feat_dim))
        # Z of the student anchors (vs the teacher bank) and of the teacher anchors; < 0: unset.
        self.register_buffer("normalisers", torch.full((2,), -1.0))
        # The negatives' draws: a seed (the same in every process) and the training steps so far.
        self.register_buffer("draw_seed", torch.randint(2**31, ()))
        self.register_buffer("draws", torch.zeros((), dtype=torch.long))
        self.nce_k, self.nce_t, self.nce_momentum = nce_k, nce_t, nce_momentum
        self.crd_weight, self.kd_weight, self.ce_weight = crd_weight, kd_weight, ce_weight
        self.kd_temperature = kd_temperature

    @property
    def dataset_size(self) -> int:
        return self.student_bank.shape[0]

    def train(self, mode: bool = True) -> CRD:
        """Switch the student; the teacher stays in eval mode (frozen BatchNorm statistics)."""
        super().train(mode)
        self.teacher.eval()
        if self.teacher_classifier is not None:
            self.teacher_classifier.eval()
        return self

    def _generator(self, device: torch.device) -> torch.Generator:
        """The RNG of this step's negatives: a function of the state (``draw_seed``, ``draws``)
        and the process rank, so a resumed run, or an eval forward, draws what the uninterrupted
        run draws, whatever else used the global RNG."""
        generator = torch.Generator(device)
        generator.manual_seed(hash((int(self.draw_seed), int(self.draws), rank())) % 2**63)
        return generator

    def _normalisers(self, student_scores: torch.Tensor,
                     teacher_scores: torch.Tensor) -> torch.Tensor:
        """The fixed Z pair, set from this batch (averaged over processes) if not set yet;
        stored only in training mode."""
        if bool((self.normalisers > 0).all()):
            return self.normalisers
        estimate = torch.stack([estimate_normaliser(student_scores, self.dataset_size),
                                estimate_normaliser(teacher_scores, self.dataset_size)])
        estimate = all_reduce_mean(estimate.float())
        if self.training:
            self.normalisers.copy_(estimate)
        return estimate

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        self.check_views(batch.views)
        images = batch.views[0]
        indices = batch.indices.to(self.student_bank.device)
        with torch.no_grad():  # first: its activations are freed before the student's are made
            teacher_features = self.teacher(images)
        student_features = self.encoder(images)
        student = self.embed_student(student_features)
        teacher = self.embed_teacher(teacher_features)
        candidates = torch.cat([indices.unsqueeze(1),
                                sample_negatives(indices, self.dataset_size, self.nce_k,
                                                 self._generator(indices.device))], 1)
        # Autocast off: exp(1 / 0.07) ~ 1.6e6 overflows float16. Indexing copies the rows, so the
        # bank update below does not touch what backward needs.
        with torch.autocast(images.device.type, enabled=False):
            student_scores = contrast_scores(student, self.teacher_bank[candidates],
                                             temperature=self.nce_t)
            teacher_scores = contrast_scores(teacher, self.student_bank[candidates],
                                             temperature=self.nce_t)
            z_student, z_teacher = self._normalisers(student_scores, teacher_scores)
            student_loss = nce_criterion(student_scores / z_student, self.dataset_size)
            teacher_loss = nce_criterion(teacher_scores / z_teacher, self.dataset_size)
        crd = student_loss + teacher_loss
        if self.training:  # after the loss, as in the reference
            self._update_banks(indices, student, teacher)
            self.draws += 1
        logged = {"crd_student_anchor": student_loss.detach(),
                  "crd_teacher_anchor": teacher_loss.detach()}
        loss = self.crd_weight * crd
        if self.classifier is not None:
            logits = self.classifier(student_features).float()
            if self.kd_weight:
                with torch.no_grad():
                    teacher_logits = self.teacher_classifier(teacher_features).float()
                logged["loss_kd"] = kd_loss(logits, teacher_logits, self.kd_temperature)
                loss = loss + self.kd_weight * logged["loss_kd"]
            if self.ce_weight:
                logged["loss_ce"] = F.cross_entropy(logits, batch.labels)
                loss = loss + self.ce_weight * logged["loss_ce"]
                logged["train_top1"] = top1(logits, batch.labels)
        return {"loss": loss, **{name: value.detach() for name, value in logged.items()}}

    @torch.no_grad()
    def _update_banks(self, indices: torch.Tensor, student: torch.Tensor,
                      teacher: torch.Tensor) -> None:
        """Momentum update of both banks with every process's embeddings (see the docstring)."""
        indices = all_gather_cat(indices)
        momentum_update(self.student_bank, indices, all_gather_cat(student.detach()),
                        self.nce_momentum)
        momentum_update(self.teacher_bank, indices, all_gather_cat(teacher.detach()),
                        self.nce_momentum)

    def classifiers(self) -> dict[str, nn.Linear]:
        return {} if self.classifier is None else {"encoder": self.classifier}

    def describe(self) -> str:
        """What the teacher load took and skipped, and what the memory banks cost."""
        size, dim = self.student_bank.shape
        return (f"{self.teacher_report.summary()}\nCRD memory banks: 2 x {size} x {dim} floats "
                f"({2 * size * dim * 4 / 2**20:.1f} MiB), {self.nce_k} negatives per anchor")
