"""Shared pieces of the tests: a torch thread-count context, clustered toy features."""

import contextlib

import numpy as np
import torch


@contextlib.contextmanager
def torch_threads(count):
    """``torch.set_num_threads(count)`` inside the block, the previous count restored after."""
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def clustered(train=1500, test=300, dim=24, classes=6, spread=1.0, seed=0, labels=None):
    """Gaussian class clusters; ``labels`` renames the classes (e.g. non-contiguous ids)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((classes, dim)).astype(np.float32)
    y = rng.integers(0, classes, train + test)
    x = centres[y] + spread * rng.standard_normal((train + test, dim)).astype(np.float32)
    if labels is not None:
        y = np.asarray(labels)[y]
    return x[:train], y[:train], x[train:], y[train:]
