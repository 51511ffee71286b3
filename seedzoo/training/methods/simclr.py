"""SimCLR: contrastive learning of two views with the NT-Xent loss (Chen et al., ICML 2020), and
SimCLRv2's changes to it (Chen et al., NeurIPS 2020): a deeper projection head with BatchNorm on
every layer, whose first layer the fine-tuning keeps (:mod:`.finetune`), and a memory of past
embeddings from a momentum copy of the network as extra negatives.

SimCLRv2's pretraining is this method with ``head_layers: 3``, ``hidden_dim: null`` (the
encoder's width), ``head_output_batch_norm: true`` and ``memory_size: 65536``.
"""

from __future__ import annotations

import copy

import torch
import torch.distributed as dist
from torch.nn import functional as F

from seedzoo.errors import SeedzooError
from seedzoo.training.distributed import all_gather_cat, is_distributed, rank
from seedzoo.training.encoder_specs import build_encoder
from seedzoo.training.heads import mlp_head
from seedzoo.training.methods.base import Batch, Method, register_method
from seedzoo.training.methods.moco import update_momentum_copies
from seedzoo.training.queue import EmbeddingQueue
from seedzoo.zoo.pretrained import feature_dim


def nt_xent(first: torch.Tensor, second: torch.Tensor, *, temperature: float,
            negatives: tuple[torch.Tensor, torch.Tensor] | None = None,
            memory: torch.Tensor | None = None) -> torch.Tensor:
    """NT-Xent over the 2N L2-normalised embeddings of two views (N, D) each.

    Each of the 2N embeddings is classified against all others (itself excluded): its other view
    is the positive, the remaining 2N-2 are negatives; the loss is the mean cross-entropy.
    ``negatives`` optionally replaces the candidate set by both views gathered from all processes
    (local rows must sit at ``local_offset`` of each, see :class:`SimCLR`). ``memory`` (K, D)
    adds K more negatives, never positives (SimCLRv2's memory of past embeddings).
    """
    with torch.autocast(first.device.type, enabled=False):
        local = torch.cat([first, second]).float()
        n = len(first)
        if negatives is None:
            candidates, offset, total = local, 0, n
        else:
            all_first, all_second = negatives
            candidates, total = torch.cat([all_first, all_second]).float(), len(all_first)
            offset = _local_offset(n, local.device)
        if memory is not None:
            candidates = torch.cat([candidates, memory.float()])
        logits = local @ candidates.T / temperature
        own = torch.arange(n, device=local.device) + offset
        rows = torch.arange(2 * n, device=local.device)
        self_index = torch.cat([own, own + total])
        logits[rows, self_index] = float("-inf")
        positives = torch.cat([own + total, own])
        return F.cross_entropy(logits, positives)


@register_method("simclr")
class SimCLR(Method):
    """SimCLR and SimCLRv2 (see the module docstring).

    Options (the recipe's ``method`` section):

    - ``encoder``: encoder spec ``{arch, model_args, small_stem, pretrained_cfg}`` or an arch name;
    - ``dim`` (128) and ``hidden_dim`` (2048; null: the encoder's feature width, as SimCLRv2):
      projection head output and hidden width;
    - ``head_layers`` (2; SimCLRv2: 3): linear layers of the projection head;
    - ``head_batch_norm`` (True): BatchNorm after each hidden layer, as in SimCLR's head;
    - ``head_output_batch_norm`` (False; SimCLRv2: True): BatchNorm after the last layer too;
    - ``temperature`` (0.5; 0.1 suits very large batches);
    - ``memory_size`` (0: none; SimCLRv2: 65536): a FIFO memory of both views' embeddings by a
      momentum copy of encoder and head, used as extra negatives (MoCo's queue);
    - ``memory_momentum`` (0.999): EMA factor of that copy;
    - ``gather_distributed`` (True): with several processes, negatives come from every process's
      batch and gradients flow back through the gather, as one process with the global batch.

    Takes two views (recipe ``simclr``). The checkpoint keeps the projection head (``head.*``):
    a ``finetune`` run starts from its first layers.
    """

    views = "simclr"
    min_views = 2

    def __init__(self, *, encoder: dict | str, dim: int = 128, hidden_dim: int | None = 2048,
                 head_layers: int = 2, head_batch_norm: bool = True,
                 head_output_batch_norm: bool = False, temperature: float = 0.5,
                 memory_size: int = 0, memory_momentum: float = 0.999,
                 gather_distributed: bool = True):
        super().__init__()
        if head_layers < 1 or memory_size < 0 or not 0 <= memory_momentum < 1:
            raise SeedzooError(f"simclr needs head_layers >= 1, memory_size >= 0 and 0 <= "
                               f"memory_momentum < 1, got {head_layers}, {memory_size} and "
                               f"{memory_momentum}.")
        self.encoder = build_encoder(encoder)
        width = feature_dim(self.encoder)
        self.head = mlp_head(width, dim, hidden_dim or width, num_layers=head_layers,
                             batch_norm=head_batch_norm, output_batch_norm=head_output_batch_norm)
        self.memory = None
        if memory_size:
            self.memory_encoder = copy.deepcopy(self.encoder).requires_grad_(False)
            self.memory_head = copy.deepcopy(self.head).requires_grad_(False)
            self.memory = EmbeddingQueue(memory_size, dim)
        self.temperature = temperature
        self.memory_momentum = memory_momentum
        self.gather_distributed = gather_distributed

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        self.check_views(batch.views)
        views = batch.views[:2]
        first, second = (F.normalize(self.head(self.encoder(v)).float(), dim=1) for v in views)
        negatives = memory = None
        if self.gather_distributed and is_distributed():
            negatives = (_GatherWithGradient.apply(first), _GatherWithGradient.apply(second))
        if self.memory is not None:
            memory = self.memory.embeddings  # written after backward (finish_step)
        loss = nt_xent(first, second, temperature=self.temperature, negatives=negatives,
                       memory=memory)
        if self.memory is not None and self.training:
            self._remember(views)
        return {"loss": loss}

    @torch.no_grad()
    def _remember(self, views: list[torch.Tensor]) -> None:
        """Update the momentum copy, then keep its embeddings of both views for the memory."""
        update_momentum_copies([(self.encoder, self.memory_encoder),
                                (self.head, self.memory_head)], self.memory_momentum)
        self.memory.enqueue_after_backward(torch.cat([
            F.normalize(self.memory_head(self.memory_encoder(v)).float(), dim=1) for v in views]))

    def finish_step(self) -> None:
        """The step's momentum embeddings into the memory."""
        if self.memory is not None:
            self.memory.write_pending()


def _local_offset(size: int, device: torch.device) -> int:
    """Index of this process's first row in a rank-ordered gather of ``size``-row batches."""
    sizes = all_gather_cat(torch.tensor([size], device=device))
    return int(sizes[: rank()].sum())


class _GatherWithGradient(torch.autograd.Function):
    """``all_gather_cat`` whose backward returns this process's share of the summed gradient.

    With DDP averaging parameter gradients, this yields the gradient of the global-batch loss.
    """

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        ctx.start = _local_offset(len(tensor), tensor.device)
        ctx.size = len(tensor)
        return all_gather_cat(tensor)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad)
        return grad[ctx.start: ctx.start + ctx.size]
