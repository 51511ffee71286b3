"""Tiny encoders exported once per test session, shared by the ONNX / ORT / INT8 tests.

``exported(arch, tmp_path_factory)`` returns ``(torch model, ExportReport)``; tests must not
modify the model or the file (copy the file first).
"""

from __future__ import annotations

import numpy as np
import torch

_EXPORTS: dict[str, tuple] = {}


def exported(arch: str, tmp_path_factory):
    if arch not in _EXPORTS:
        import seedzoo
        from seedzoo.deploy.onnx_export import export_onnx

        torch.manual_seed(0)
        model = seedzoo.load(f"timm:{arch}")
        path = tmp_path_factory.mktemp(arch) / f"{arch}.onnx"
        report = export_onnx(model, path, validate_dataset="digits", model_id=f"timm:{arch}")
        _EXPORTS[arch] = (model, report)
    return _EXPORTS[arch]


def digits_batch(transform, count: int = 8) -> torch.Tensor:
    """``count`` real test images of the digits dataset, through ``transform``."""
    from seedzoo.data.datasets import get_dataset

    images = get_dataset("digits", "test", transform=transform)
    return torch.stack([images[i][0] for i in np.linspace(0, len(images) - 1, count).astype(int)])


def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cosine_similarity(a.float(), b.float(), dim=1)
