"""Torch devices named by users, checked before any work starts."""

from __future__ import annotations

import torch

from seedzoo.errors import SeedzooError


def resolve_device(name: str | torch.device) -> torch.device:
    """``name`` as a torch device that exists here; a clear error for a malformed name (``gpu0``)
    or a CUDA device this machine does not have."""
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise SeedzooError(f"{name!r} is not a torch device; use cpu, cuda or cuda:<index>.") \
            from None
    if device.type == "cuda":
        count = torch.cuda.device_count()
        if count == 0:
            raise SeedzooError(f"Device {name} asked for, but no CUDA GPU is visible here; use "
                               "cpu (or leave the device out).")
        if device.index is not None and device.index >= count:
            raise SeedzooError(f"Device {name} asked for, but only {count} CUDA GPU(s) are "
                               "visible (cuda:0 ...); pick one of them.")
    elif device.type not in ("cpu", "mps"):
        raise SeedzooError(f"Device {name} is not supported; use cpu or cuda.")
    return device
