"""Features and labels as the evaluation protocols take them: torch tensors, NumPy arrays or
sequences."""

from __future__ import annotations

import numpy as np
import torch

from seedzoo.errors import SeedzooError


def as_tensor(values, dtype: torch.dtype, device=None) -> torch.Tensor:
    """``values`` as a detached tensor of ``dtype`` on ``device``."""
    tensor = values if isinstance(values, torch.Tensor) else torch.as_tensor(np.asarray(values))
    return tensor.detach().to(device=device, dtype=dtype)


def refuse_non_finite(broken: int, total: int, name: str) -> None:
    """The error for ``broken`` of ``total`` feature rows holding NaN or infinity (or too large
    for float32), which would corrupt every protocol's figures."""
    if broken:
        raise SeedzooError(f"{broken} of {total} {name} features are NaN or infinite (or too "
                           "large for float32), which would make every figure meaningless. The "
                           "encoder produced them: check its weights, or extract the features "
                           "in float32.")


def non_finite_rows(features: torch.Tensor) -> int:
    """How many rows of ``features`` (n, dim) hold NaN or infinity."""
    return int((~torch.isfinite(features).all(dim=1)).sum()) if features.numel() else 0


def label_array(labels) -> np.ndarray:
    """``labels`` as a NumPy array (labels may be any values NumPy can sort)."""
    return labels.cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)


def class_positions(classes: np.ndarray, labels) -> tuple[np.ndarray, np.ndarray]:
    """(index of each label in the sorted ``classes``, whether the label is among them)."""
    labels = label_array(labels)
    position = np.searchsorted(classes, labels).clip(max=len(classes) - 1)
    return position, classes[position] == labels
