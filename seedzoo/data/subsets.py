"""Seeded subsets of a dataset: one definition for training and evaluation.

:func:`subset_indices` is the random subset behind ``data.limit`` (training) and
``--limit-train``/``--limit-test`` (evaluation): with the same size, limit and seed both read the
same images. :func:`class_balanced_indices` is the per-class fraction behind the few-shot probes
(1% and 10% of the labels), and :func:`holdout_split` the class-balanced validation split the
probes choose their weight decay on.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import numpy as np

from seedzoo.errors import SeedzooError


def subset_indices(size: int, limit: int | None, seed: int = 0) -> np.ndarray | None:
    """Sorted seeded random ``limit`` of ``range(size)``, or ``None`` for everything."""
    if limit is None or limit >= size:
        return None
    if limit < 1:
        raise SeedzooError(f"A sample limit must be positive, got {limit}.")
    return np.sort(np.random.default_rng(seed).permutation(size)[:limit])


def _draw_per_class(labels, count: Callable[[int], int], seed: int) -> np.ndarray:
    """Sorted indices: ``count(class size)`` members of each class, drawn without replacement
    with one seeded generator, class by class in sorted order (a class drawing 0 is skipped)."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    chosen = []
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        wanted = count(len(members))
        if wanted > 0:
            chosen.append(rng.choice(members, size=wanted, replace=False))
    return np.sort(np.concatenate(chosen)) if chosen else np.empty(0, dtype=np.int64)


def class_balanced_indices(labels, fraction: float, seed: int = 0) -> np.ndarray:
    """Class-balanced, seeded subset of indices: ``fraction`` of each class (at least one each)."""
    if not 0 < fraction <= 1:
        raise SeedzooError(f"A label fraction must be in (0, 1], got {fraction}.")
    return _draw_per_class(labels, lambda n: max(1, int(round(fraction * n))), seed)


def fraction_label(fraction: float) -> str:
    """How a label fraction is named in metric names: 0.01 -> ``1pct``, 1.0 -> ``100pct``."""
    return f"{100 * fraction:g}pct"


def indices_digest(indices) -> str:
    """sha256 of a subset's indices (as sorted int64), to tell in a results file which samples
    were used without listing them."""
    values = np.sort(np.asarray(indices, dtype=np.int64))
    return hashlib.sha256(values.tobytes()).hexdigest()


def holdout_split(labels, fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Class-balanced seeded split ``(fit_indices, heldout_indices)`` of ``labels``.

    Each class with at least two samples gives ``round(fraction * count)`` (at least one, at
    most all but one) of them to the held-out part; classes with a single sample stay whole in
    the fit part.
    """
    heldout = _draw_per_class(
        labels, lambda n: min(n - 1, max(1, int(round(fraction * n)))) if n >= 2 else 0, seed)
    return np.setdiff1d(np.arange(len(np.asarray(labels))), heldout), heldout
