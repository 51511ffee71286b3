"""MoCo v2: momentum contrast with an MLP head (Chen et al., 2020; He et al., CVPR 2020).

A query encoder (backbone + MLP head) embeds view 1; a momentum copy of it, updated as an
exponential moving average and never by gradients, embeds view 2 into keys. InfoNCE scores each
query against its own key (the positive) and a FIFO queue of past keys (negatives).
"""

from __future__ import annotations

import copy

import torch
import torch.distributed as dist
from torch.nn import functional as F

from seedzoo.training.distributed import all_gather_cat, is_distributed, rank
from seedzoo.training.encoder_specs import build_encoder
from seedzoo.training.heads import mlp_head
from seedzoo.training.methods.base import Batch, Method, register_method
from seedzoo.training.queue import EmbeddingQueue
from seedzoo.zoo.pretrained import feature_dim


def info_nce(queries: torch.Tensor, keys: torch.Tensor, queue: torch.Tensor, *,
             temperature: float) -> torch.Tensor:
    """InfoNCE for L2-normalised ``queries``/``keys`` (N, D) against negatives ``queue`` (K, D).

    ``loss = mean_i CE([q_i.k_i, q_i Q^T] / tau, target 0)``.
    """
    with torch.autocast(queries.device.type, enabled=False):
        queries, keys, queue = queries.float(), keys.float(), queue.float()
        logits = torch.cat([(queries * keys).sum(1, keepdim=True), queries @ queue.T], 1)
        targets = torch.zeros(len(queries), dtype=torch.long, device=queries.device)
        return F.cross_entropy(logits / temperature, targets)


@torch.no_grad()
def update_momentum_copies(pairs, momentum: float) -> None:
    """Move each momentum copy's parameters towards its online module's:
    ``key = momentum * key + (1 - momentum) * online``, for every ``(online, key)`` of ``pairs``."""
    for online, key in pairs:
        torch._foreach_lerp_(list(key.parameters()), list(online.parameters()), 1.0 - momentum)


@register_method("moco")
class MoCo(Method):
    """MoCo v2 (see the module docstring).

    Options (the recipe's ``method`` section):

    - ``encoder``: encoder spec ``{arch, model_args, small_stem, pretrained_cfg}`` or an arch name;
    - ``dim`` (128) and ``hidden_dim`` (2048): MLP head Linear-ReLU-Linear output and hidden width;
    - ``queue_size`` (65536): negatives kept in the queue (any size, not only batch multiples);
    - ``momentum`` (0.999): EMA factor of the key encoder;
    - ``temperature`` (0.2);
    - ``shuffle_bn`` (True): with several processes, keys are computed on a batch shuffled across
      processes so BatchNorm statistics cannot leak the positive (MoCo's shuffling BN).

    Takes two views (recipe ``moco_v2``): queries from views[0], keys from views[1].
    """

    views = "moco_v2"
    min_views = 2

    def __init__(self, *, encoder: dict | str, dim: int = 128, hidden_dim: int = 2048,
                 queue_size: int = 65536, momentum: float = 0.999, temperature: float = 0.2,
                 shuffle_bn: bool = True):
        super().__init__()
        self.encoder = build_encoder(encoder)
        self.head = mlp_head(feature_dim(self.encoder), dim, hidden_dim)
        self.key_encoder = copy.deepcopy(self.encoder).requires_grad_(False)
        self.key_head = copy.deepcopy(self.head).requires_grad_(False)
        self.queue = EmbeddingQueue(queue_size, dim)
        self.momentum = momentum
        self.temperature = temperature
        self.shuffle_bn = shuffle_bn


    @torch.no_grad()
    def _keys(self, images: torch.Tensor) -> torch.Tensor:
        shuffle = self.shuffle_bn and is_distributed()
        if shuffle:
            images, restore = _shuffle_across_processes(images)
        keys = F.normalize(self.key_head(self.key_encoder(images)).float(), dim=1)
        return restore(keys) if shuffle else keys

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        views = batch.views
        self.check_views(views)
        queries = F.normalize(self.head(self.encoder(views[0])).float(), dim=1)
        if self.training:
            update_momentum_copies([(self.encoder, self.key_encoder), (self.head, self.key_head)],
                                   self.momentum)
        keys = self._keys(views[1])
        # No copy of the queue: it is written after backward (finish_step).
        loss = info_nce(queries, keys, self.queue.embeddings, temperature=self.temperature)
        if self.training:
            self.queue.enqueue_after_backward(keys)
        return {"loss": loss}

    def finish_step(self) -> None:
        """The step's keys into the queue."""
        self.queue.write_pending()


def _shuffle_across_processes(images: torch.Tensor):
    """This process's share of the globally shuffled batch, and the function that undoes it."""
    everything = all_gather_cat(images)
    sizes = all_gather_cat(torch.tensor([len(images)], device=images.device))
    permutation = torch.randperm(len(everything), device=images.device)
    dist.broadcast(permutation, src=0)
    bounds = torch.cat([sizes.new_zeros(1), sizes.cumsum(0)])
    start, end = int(bounds[rank()]), int(bounds[rank() + 1])

    def restore(keys: torch.Tensor) -> torch.Tensor:
        all_keys = all_gather_cat(keys)
        unshuffled = torch.empty_like(all_keys)
        unshuffled[permutation] = all_keys
        return unshuffled[start:end]

    return everything[permutation[start:end]], restore
