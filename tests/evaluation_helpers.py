"""Shared pieces of the evaluation tests: clustered toy features."""

import numpy as np


def clustered(train=1500, test=300, dim=24, classes=6, spread=1.0, seed=0, labels=None):
    """Gaussian class clusters; ``labels`` renames the classes (e.g. non-contiguous ids)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((classes, dim)).astype(np.float32)
    y = rng.integers(0, classes, train + test)
    x = centres[y] + spread * rng.standard_normal((train + test, dim)).astype(np.float32)
    if labels is not None:
        y = np.asarray(labels)[y]
    return x[:train], y[:train], x[train:], y[train:]
