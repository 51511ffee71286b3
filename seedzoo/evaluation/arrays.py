"""Features and labels as the evaluation protocols take them: torch tensors, NumPy arrays or
sequences."""

from __future__ import annotations

import numpy as np
import torch


def as_tensor(values, dtype: torch.dtype, device=None) -> torch.Tensor:
    """``values`` as a detached tensor of ``dtype`` on ``device``."""
    tensor = values if isinstance(values, torch.Tensor) else torch.as_tensor(np.asarray(values))
    return tensor.detach().to(device=device, dtype=dtype)


def label_array(labels) -> np.ndarray:
    """``labels`` as a NumPy array (labels may be any values NumPy can sort)."""
    return labels.cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)


def class_positions(classes: np.ndarray, labels) -> tuple[np.ndarray, np.ndarray]:
    """(index of each label in the sorted ``classes``, whether the label is among them)."""
    labels = label_array(labels)
    position = np.searchsorted(classes, labels).clip(max=len(classes) - 1)
    return position, classes[position] == labels
