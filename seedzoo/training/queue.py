"""A FIFO queue of L2-normalised embeddings (the negatives/anchors of MoCo and SEED)."""

from __future__ import annotations

import torch
from torch import nn

from seedzoo.training.distributed import all_gather_cat


class EmbeddingQueue(nn.Module):
    """``size`` embeddings of width ``dim``, oldest first out.

    The rows and the write pointer are registered buffers, so ``state_dict()`` carries them across
    a resume. The queue starts as random unit vectors, as in the MoCo and SEED reference code.
    :meth:`enqueue` gathers the batch from every process (in rank order) before writing, so all
    processes keep the same queue. Unlike the reference code, ``size`` need not be a multiple of
    the global batch and batches may be short: writes wrap around the end, and a batch larger than
    the queue keeps only its newest ``size`` rows.

    A loss scored against :attr:`embeddings` itself (no copy) needs them unchanged until its
    backward: :meth:`enqueue_after_backward` keeps the batch, :meth:`write_pending` (the method's
    ``finish_step``) writes it.
    """

    def __init__(self, size: int, dim: int):
        super().__init__()
        if size < 1 or dim < 1:
            raise ValueError(f"queue size and dim must be positive, got size={size}, dim={dim}")
        self.register_buffer("embeddings", nn.functional.normalize(torch.randn(size, dim), dim=1))
        self.register_buffer("pointer", torch.zeros(1, dtype=torch.long))
        self.pending: list[torch.Tensor] = []  # batches for write_pending

    @property
    def size(self) -> int:
        return self.embeddings.shape[0]

    @torch.no_grad()
    def enqueue(self, batch: torch.Tensor) -> None:
        """Write ``batch`` (N, dim) of this process, and those of all others, at the pointer."""
        batch = all_gather_cat(batch.detach()).to(self.embeddings.dtype)
        count = batch.shape[0]
        start = int(self.pointer)
        if count > self.size:
            start = (start + count - self.size) % self.size
            batch = batch[-self.size:]
        rows = (start + torch.arange(batch.shape[0], device=batch.device)) % self.size
        self.embeddings[rows] = batch
        self.pointer[0] = (start + batch.shape[0]) % self.size

    def enqueue_after_backward(self, batch: torch.Tensor) -> None:
        """Keep ``batch`` for :meth:`write_pending`."""
        self.pending.append(batch.detach())

    def write_pending(self) -> None:
        """:meth:`enqueue` the kept batches, oldest first."""
        for batch in self.pending:
            self.enqueue(batch)
        self.pending.clear()

    def extra_repr(self) -> str:
        return f"size={self.size}, dim={self.embeddings.shape[1]}"
