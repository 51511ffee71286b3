"""torch.distributed helpers that also work in a single process (no process group): process-group
set-up from torchrun's environment, a resumable distributed sampler, synchronised BatchNorm."""

from __future__ import annotations

import itertools
import os

import torch
import torch.distributed as dist
from timm.layers import convert_sync_batchnorm as timm_convert_sync_batchnorm
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.data import DistributedSampler


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    return rank() == 0


@torch.no_grad()
def all_gather_cat(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate ``tensor`` from every process along dim 0, in rank order (no gradient).

    Processes may hold different batch sizes (a short last batch); in one process this is the
    identity.
    """
    if not is_distributed():
        return tensor
    sizes = [torch.zeros(1, dtype=torch.long, device=tensor.device) for _ in range(world_size())]
    dist.all_gather(sizes, torch.tensor([tensor.shape[0]], device=tensor.device))
    largest = int(max(s.item() for s in sizes))
    padded = tensor.new_zeros((largest, *tensor.shape[1:]))
    padded[: tensor.shape[0]] = tensor
    gathered = [torch.empty_like(padded) for _ in range(world_size())]
    dist.all_gather(gathered, padded)
    return torch.cat([g[: int(s.item())] for g, s in zip(gathered, sizes, strict=True)])


def init_from_env(*, use_cuda: bool) -> torch.device:
    """Join the process group ``torchrun`` describes in the environment, if any.

    Uses nccl on GPUs (one per process, ``LOCAL_RANK``) and gloo on CPU. Returns the device this
    process trains on. Without ``torchrun`` (no ``WORLD_SIZE``) nothing is initialised.
    """
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0))) if use_cuda \
        else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    if "WORLD_SIZE" in os.environ and not is_distributed():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo",
                                **({"device_id": device} if use_cuda else {}))
    return device


def shutdown() -> None:
    if is_distributed():
        dist.destroy_process_group()


def all_reduce_mean(value: torch.Tensor) -> torch.Tensor:
    """Mean of ``value`` over processes (no gradient); the identity in one process."""
    if not is_distributed():
        return value
    value = value.detach().clone()
    dist.all_reduce(value)
    return value / world_size()


class ResumableDistributedSampler(DistributedSampler):
    """:class:`DistributedSampler` that can start an epoch after its first ``skip_batches``.

    The order of an epoch depends only on (seed, epoch), so skipping the batches a checkpoint
    has already seen continues an interrupted epoch exactly. It works in one process too
    (``num_replicas=1``), so training has a single code path.
    """

    def __init__(self, dataset, *, batch_size: int, shuffle: bool = True, seed: int = 0):
        super().__init__(dataset, num_replicas=world_size(), rank=rank(), shuffle=shuffle,
                         seed=seed, drop_last=False)
        self.batch_size = batch_size
        self.skip = 0

    def set_epoch(self, epoch: int, skip_batches: int = 0) -> None:
        super().set_epoch(epoch)
        self.skip = min(skip_batches * self.batch_size, self.num_samples)

    def __iter__(self):
        return itertools.islice(super().__iter__(), self.skip, None)

    def __len__(self) -> int:
        return self.num_samples - self.skip


# ---------------------------------------------------------------------------------------------
# Synchronised BatchNorm on every device. On GPUs, torch's SyncBatchNorm (through timm's
# conversion, which keeps the activation of timm's BatchNormAct layers). torch's synchronises
# GPU tensors only, so on CPU (gloo) each BatchNorm layer instead becomes a subclass of its own
# class that computes the batch statistics over all processes, with autograd through the sums.


class _AllReduceSum(torch.autograd.Function):
    """Sum over processes whose gradient is the sum of the processes' gradients."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        tensor = tensor.clone()
        dist.all_reduce(tensor)
        return tensor

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


def _sync_batch_norm(bn: _BatchNorm, x: torch.Tensor) -> torch.Tensor:
    """Batch norm (training mode) with the mean and variance of all processes' batches."""
    dims = [0, *range(2, x.ndim)]
    shape = [1, -1] + [1] * (x.ndim - 2)
    count = torch.tensor([x.numel() / x.shape[1]], dtype=x.dtype, device=x.device)
    dist.all_reduce(count)
    mean = _AllReduceSum.apply(x.sum(dims)) / count
    centred = x - mean.reshape(shape)
    var = _AllReduceSum.apply(centred.square().sum(dims)) / count
    out = centred * torch.rsqrt(var + bn.eps).reshape(shape)
    if bn.affine:
        out = out * bn.weight.reshape(shape) + bn.bias.reshape(shape)
    if bn.track_running_stats:
        with torch.no_grad():
            bn.num_batches_tracked.add_(1)
            momentum = 1.0 / bn.num_batches_tracked.item() if bn.momentum is None else bn.momentum
            bn.running_mean.lerp_(mean.detach(), momentum)
            bn.running_var.lerp_(var.detach() * count / (count - 1).clamp(min=1), momentum)
    return out


class _GlobalBatchStatistics:
    """Mixin over a BatchNorm class: in training under a process group, normalise with the
    statistics of all processes (then apply timm's drop/act, if the layer has them)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and is_distributed()):
            return super().forward(x)
        x = _sync_batch_norm(self, x)
        if hasattr(self, "drop"):
            x = self.drop(x)
        if hasattr(self, "act"):
            x = self.act(x)
        return x


_SYNCED_CLASSES: dict[type, type] = {}


def _synced_class(cls: type) -> type:
    if cls not in _SYNCED_CLASSES:
        _SYNCED_CLASSES[cls] = type(f"Sync{cls.__name__}", (_GlobalBatchStatistics, cls), {})
    return _SYNCED_CLASSES[cls]


def convert_sync_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """Synchronise every BatchNorm layer of ``module`` (torch's and timm's BatchNormAct) across
    processes, on ``device``'s kind; weights and running statistics are kept."""
    if device.type == "cuda":
        return timm_convert_sync_batchnorm(module)
    for layer in module.modules():
        if isinstance(layer, _BatchNorm) and not isinstance(layer, _GlobalBatchStatistics):
            layer.__class__ = _synced_class(type(layer))
    return module
