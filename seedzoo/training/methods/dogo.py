"""DoGo, Distill-on-the-Go: online knowledge distillation in self-supervised learning (Bhat et
al., CVPR 2021 workshops).

Two or more peers are trained together from scratch. Each peer learns with its own SimCLR
(NT-Xent) loss and projection head on its own two augmented views of each image (as the reference
implementation, NeurAI-Lab/DoGo, augments for each model separately; ``own_views: false`` shows
all peers the same two views), and is pulled towards the other peers' view of the batch:
for each peer, the N x N matrix of cosine similarities between the embeddings of its first
view (rows) and second view (columns) is softened by a row-softmax at ``kd_temperature``; peer
``i``'s distillation term is ``KL(softmax(S_j / tau) || softmax(S_i / tau))`` against every other
peer ``j``, whose matrix is detached (a target: no gradient reaches peer ``j`` through it), summed
over ``j``. The KL is averaged element-wise over the N^2 entries, hence the large weights of the
reference config: ``criterion_weight [1, 1, 100, 1]`` gives 100 to the first model's KL term and
1 to the second's (``peer_weights`` in peer order here). The loss is ``sum_i ssl_i + w_i * kd_i``.

Under ``torchrun`` each peer's NT-Xent takes its negatives from every process's batch, as
:class:`~seedzoo.training.methods.simclr.SimCLR` does. The similarity matrices of the KL term stay
per process: each process compares the peers on its own N images (N = the per-process batch), and
DDP's gradient averaging makes it the mean of the per-process terms. This is the reference
implementation's behaviour at its per-GPU batch, and the row-softmax over N (not the global
batch) keeps the term's scale independent of the number of processes.
"""

from __future__ import annotations

import re

import torch
from torch import nn
from torch.nn import functional as F

from seedzoo.errors import SeedzooError
from seedzoo.training.distributed import is_distributed
from seedzoo.training.encoder_specs import build_encoder
from seedzoo.training.heads import mlp_head
from seedzoo.training.methods.base import Batch, Method, register_method
from seedzoo.training.methods.simclr import _GatherWithGradient, nt_xent
from seedzoo.zoo.pretrained import feature_dim

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")


def cross_view_similarity(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """The N x N cosine similarities between the rows of ``first`` and ``second`` (N, D) each:
    entry (a, b) compares image a's first view with image b's second view."""
    with torch.autocast(first.device.type, enabled=False):
        return F.normalize(first.float(), dim=1) @ F.normalize(second.float(), dim=1).T


def similarity_kl(own: torch.Tensor, target: torch.Tensor, *, temperature: float) -> torch.Tensor:
    """``KL(softmax(target / t) || softmax(own / t))`` of row-softmaxes of two N x N similarity
    matrices, averaged element-wise over the N^2 entries.

    ``target`` is used as given: detach it for a one-way pull (DoGo does).
    """
    with torch.autocast(own.device.type, enabled=False):
        log_own = F.log_softmax(own.float() / temperature, dim=1)
        log_target = F.log_softmax(target.float() / temperature, dim=1)
        # reduction "none" then mean: kl_div's own "mean" warns that it will become "batchmean"
        return F.kl_div(log_own, log_target, reduction="none", log_target=True).mean()


def dogo_distillation(similarities: list[torch.Tensor], *, temperature: float
                      ) -> list[torch.Tensor]:
    """Each peer's distillation term: the sum over the other peers ``j`` of
    :func:`similarity_kl` of its matrix against peer ``j``'s, detached."""
    return [sum(similarity_kl(own, other.detach(), temperature=temperature)
                for j, other in enumerate(similarities) if j != i)
            for i, own in enumerate(similarities)]


@register_method("dogo")
class DoGo(Method):
    """DoGo (see the module docstring).

    Options (the recipe's ``method`` section):

    - ``peers``: two or more encoder specs (``{arch, model_args, small_stem, pretrained_cfg}`` or
      arch names), all trained from scratch;
    - ``peer_weights`` (1 each): the weight of each peer's distillation term; the reference
      config gives ``[100, 1]``, the terms being element-wise means over N^2 entries;
    - ``names`` (``peer0``, ``peer1``, ...): each peer's name, its export folder
      ``run_dir/<name>`` and the suffix of its logged terms ``ssl_<name>``, ``kd_<name>``;
    - ``student`` (none): the name of the peer a catalog lists as this run's model (recorded in
      :meth:`describe` and :attr:`student`; every peer is exported either way);
    - ``dim`` (128), ``hidden_dim`` (2048), ``head_batch_norm`` (True): each peer's projection
      head, Linear (no bias)-BatchNorm-ReLU-Linear as SimCLR's;
    - ``temperature`` (0.5): NT-Xent's; ``kd_temperature`` (0.1): the similarity row-softmax's;
    - ``gather_distributed`` (True): NT-Xent negatives from every process (see the module
      docstring; the distillation term stays per process);
    - ``own_views`` (True): each peer its own two views (2 per peer, recipe ``simclr``), as the
      reference; False: every peer the same two.
    """

    views = "simclr"

    def __init__(self, *, peers: list[dict | str], peer_weights: list[float] | None = None,
                 names: list[str] | None = None, student: str | None = None, dim: int = 128,
                 hidden_dim: int = 2048, head_batch_norm: bool = True, temperature: float = 0.5,
                 kd_temperature: float = 0.1, gather_distributed: bool = True,
                 own_views: bool = True):
        super().__init__()
        if not isinstance(peers, list | tuple) or len(peers) < 2:
            raise SeedzooError(f"method.peers needs two or more encoder specs, got {peers!r}.")
        count = len(peers)
        names = [f"peer{i}" for i in range(count)] if names is None else list(names)
        if len(names) != count or len(set(names)) != count:
            raise SeedzooError(f"method.names needs {count} different names (one per peer), got "
                               f"{names}.")
        bad = [n for n in names if not isinstance(n, str) or not _NAME.fullmatch(n)]
        if bad:
            raise SeedzooError(f"method.names {bad} are not folder names: a letter, then letters, "
                               "digits, '_' or '-'.")
        weights = [1.0] * count if peer_weights is None else [float(w) for w in peer_weights]
        if len(weights) != count or any(not w >= 0 for w in weights):
            raise SeedzooError(f"method.peer_weights needs {count} non-negative numbers (one per "
                               f"peer), got {peer_weights}.")
        if student is not None and student not in names:
            raise SeedzooError(f"method.student {student!r} is not a peer; the peers are {names}.")
        for option, value in (("temperature", temperature), ("kd_temperature", kd_temperature)):
            if not value > 0:
                raise SeedzooError(f"method.{option} must be positive, got {value}.")
        self.names, self.peer_weights, self.student = names, weights, student
        self.peers = nn.ModuleList(build_encoder(spec) for spec in peers)
        self.heads = nn.ModuleList(mlp_head(feature_dim(peer), dim, hidden_dim,
                                            batch_norm=head_batch_norm) for peer in self.peers)
        self.temperature, self.kd_temperature = temperature, kd_temperature
        self.gather_distributed, self.own_views = gather_distributed, own_views
        self.min_views = 2 * count if own_views else 2
        self.view_options = {"num_views": self.min_views}

    def encoders(self) -> dict[str, nn.Module]:
        return dict(zip(self.names, self.peers, strict=True))

    def describe(self) -> str:
        peers = ", ".join(f"{name} ({peer.pretrained_cfg.get('architecture', type(peer).__name__)}"
                          f", kd weight {weight:g})"
                          for name, peer, weight in zip(self.names, self.peers, self.peer_weights,
                                                        strict=True))
        student = f"; student: {self.student}" if self.student else ""
        return f"dogo: {len(self.peers)} peers trained together: {peers}{student}"

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        self.check_views(batch.views)
        gather = self.gather_distributed and is_distributed()
        ssl, similarities = [], []
        for i, (peer, head) in enumerate(zip(self.peers, self.heads, strict=True)):
            pair = batch.views[2 * i:2 * i + 2] if self.own_views else batch.views[:2]
            first, second = (F.normalize(head(peer(v)).float(), dim=1) for v in pair)
            negatives = ((_GatherWithGradient.apply(first), _GatherWithGradient.apply(second))
                         if gather else None)
            ssl.append(nt_xent(first, second, temperature=self.temperature, negatives=negatives))
            similarities.append(cross_view_similarity(first, second))
        kd = dogo_distillation(similarities, temperature=self.kd_temperature)
        loss = sum(s + w * k for s, w, k in zip(ssl, self.peer_weights, kd, strict=True))
        outputs = {"loss": loss}
        for name, s, k in zip(self.names, ssl, kd, strict=True):
            outputs[f"ssl_{name}"], outputs[f"kd_{name}"] = s.detach(), k.detach()
        return outputs
