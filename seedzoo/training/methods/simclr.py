"""SimCLR: contrastive learning of two views with the NT-Xent loss (Chen et al., ICML 2020)."""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch.nn import functional as F

from seedzoo.training.distributed import all_gather_cat, is_distributed, rank
from seedzoo.training.encoder_specs import build_encoder, feature_dim
from seedzoo.training.heads import mlp_head
from seedzoo.training.methods.base import Batch, Method, register_method


def nt_xent(first: torch.Tensor, second: torch.Tensor, *, temperature: float,
            negatives: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """NT-Xent over the 2N L2-normalised embeddings of two views (N, D) each.

    Each of the 2N embeddings is classified against all others (itself excluded): its other view
    is the positive, the remaining 2N-2 are negatives; the loss is the mean cross-entropy.
    ``negatives`` optionally replaces the candidate set by both views gathered from all processes
    (local rows must sit at ``local_offset`` of each, see :class:`SimCLR`).
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
        logits = local @ candidates.T / temperature
        own = torch.arange(n, device=local.device) + offset
        rows = torch.arange(2 * n, device=local.device)
        self_index = torch.cat([own, own + total])
        logits[rows, self_index] = float("-inf")
        positives = torch.cat([own + total, own])
        return F.cross_entropy(logits, positives)


@register_method("simclr")
class SimCLR(Method):
    """SimCLR (see the module docstring).

    Options (the recipe's ``method`` section):

    - ``encoder``: encoder spec ``{arch, model_args, small_stem, pretrained_cfg}`` or an arch name;
    - ``dim`` (128) and ``hidden_dim`` (2048): projection head output and hidden width;
    - ``head_batch_norm`` (True): BatchNorm after the hidden layer, as in SimCLR's head;
    - ``temperature`` (0.5; 0.1 suits very large batches);
    - ``gather_distributed`` (True): with several processes, negatives come from every process's
      batch and gradients flow back through the gather, as one process with the global batch.

    Takes two views (recipe ``simclr``).
    """

    views = "simclr"
    min_views = 2

    def __init__(self, *, encoder: dict | str, dim: int = 128, hidden_dim: int = 2048,
                 head_batch_norm: bool = True, temperature: float = 0.5,
                 gather_distributed: bool = True):
        super().__init__()
        self.encoder = build_encoder(encoder)
        self.head = mlp_head(feature_dim(self.encoder), dim, hidden_dim, batch_norm=head_batch_norm)
        self.temperature = temperature
        self.gather_distributed = gather_distributed

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        self.check_views(batch.views)
        first, second = (F.normalize(self.head(self.encoder(v)).float(), dim=1)
                         for v in batch.views[:2])
        negatives = None
        if self.gather_distributed and is_distributed():
            negatives = (_GatherWithGradient.apply(first), _GatherWithGradient.apply(second))
        return {"loss": nt_xent(first, second, temperature=self.temperature, negatives=negatives)}


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
