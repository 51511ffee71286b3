"""Training checkpoints: everything needed to continue a run exactly, in a file that
``torch.load(weights_only=True)`` reads (tensors, numbers, strings, lists and dicts only).

A checkpoint is a dict::

    format, version        "seedzoo-train-checkpoint", 1
    method                 method.state_dict() (encoder, heads, queues, momentum encoders, teacher)
    optimizer, scheduler   their state_dicts
    scaler                 the GradScaler's state_dict ({} when disabled)
    rng                    {"torch", "numpy", "python", "cuda"}: per-process RNG states as tensors,
                           one row per process
    progress               {"epoch", "step_in_epoch", "global_step"}: where the run continues
    config                 the resolved recipe (nested dicts)
"""

from __future__ import annotations

import os
import random

import numpy as np
import torch

from seedzoo.errors import CheckpointError
from seedzoo.files import atomic_write_path
from seedzoo.training import distributed

FORMAT = "seedzoo-train-checkpoint"
VERSION = 1


def save_checkpoint(state: dict, path: str | os.PathLike,
                    previous: str | os.PathLike | None = None) -> None:
    """Write ``state`` to ``path`` atomically (temp file, fsync, rename); the file it replaces
    becomes ``previous`` when given."""
    with atomic_write_path(path) as tmp:
        with open(tmp, "wb") as f:
            torch.save({"format": FORMAT, "version": VERSION, **state}, f)
            f.flush()
            os.fsync(f.fileno())
        if previous is not None and os.path.exists(path):
            os.replace(path, previous)


def first_non_finite(state, prefix: str = "") -> str | None:
    """The name of the first tensor in the nested dict/list ``state`` holding NaN or infinity."""
    if isinstance(state, torch.Tensor):
        return prefix if state.is_floating_point() and not torch.isfinite(state).all() else None
    items = state.items() if isinstance(state, dict) else \
        enumerate(state) if isinstance(state, (list, tuple)) else ()
    for key, value in items:
        found = first_non_finite(value, f"{prefix}.{key}" if prefix else str(key))
        if found is not None:
            return found
    return None


def largest_magnitude(state: dict[str, torch.Tensor]) -> float:
    """The largest absolute value among the floating-point tensors of a state dict."""
    return max((float(t.abs().max()) for t in state.values()
                if isinstance(t, torch.Tensor) and t.is_floating_point() and t.numel()),
               default=0.0)


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Read a checkpoint written by :func:`save_checkpoint`, without unpickling code."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated file, foreign pickle, not a torch file, ...
        raise CheckpointError(f"Cannot read training checkpoint {path}: {error}. Continue "
                              "from the checkpoint before it (seedzoo train --out <run> "
                              "--resume-from <run>/checkpoint.prev.pt) if the run folder has "
                              "one, or start the run afresh.") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a seedzoo training checkpoint.")
    if state.get("version") != VERSION:
        raise CheckpointError(f"{path} has checkpoint version {state.get('version')}; this "
                              f"seedzoo reads version {VERSION}.")
    return state


# ---------------------------------------------------------------------------------------------
# RNG states as tensors (numpy's and Python's states are tuples of ints)


def _local_rng_state(device: torch.device) -> dict[str, torch.Tensor]:
    _, keys, position, has_gauss, cached_gauss = np.random.get_state()
    version, python_state, gauss_next = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": torch.from_numpy(np.concatenate([keys.astype(np.int64),
                                                  [position, has_gauss]])),
        "numpy_gauss": torch.tensor([cached_gauss], dtype=torch.float64),
        "python": torch.tensor([version, *python_state], dtype=torch.int64),
        "python_gauss": torch.tensor([float("nan") if gauss_next is None else gauss_next],
                                     dtype=torch.float64),
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def gather_rng_states(device: torch.device) -> dict[str, torch.Tensor]:
    """RNG states of every process, stacked along dim 0 in rank order (collective call)."""
    local = _local_rng_state(device)
    return {name: distributed.all_gather_cat(value.to(device).unsqueeze(0)).cpu()
            for name, value in local.items()}


def restore_rng_states(states: dict[str, torch.Tensor], device: torch.device) -> bool:
    """Set this process's RNGs from its row of :func:`gather_rng_states` output; False (and
    nothing set) when the states come from a different number of processes."""
    row = distributed.rank()
    if states["torch"].shape[0] != distributed.world_size():
        return False
    torch.set_rng_state(states["torch"][row].clone())
    numpy_state = states["numpy"][row].numpy()
    np.random.set_state(("MT19937", numpy_state[:-2].astype(np.uint32), int(numpy_state[-2]),
                         int(numpy_state[-1]), float(states["numpy_gauss"][row, 0])))
    python_state = [int(v) for v in states["python"][row]]
    gauss = float(states["python_gauss"][row, 0])
    random.setstate((python_state[0], tuple(python_state[1:]), None if gauss != gauss else gauss))
    if "cuda" in states and device.type == "cuda":
        torch.cuda.set_rng_state(states["cuda"][row].clone(), device)
    return True
