"""Frozen features of a dataset, extracted once and cached on disk.

:func:`extract_features` runs any encoder (a torch module, or any callable mapping a float
batch ``(B, C, H, W)`` to ``(B, D)`` features, such as an ONNX Runtime session wrapper) over a
dataset in batches. :func:`dataset_features` adds the dataset, the encoder's transform and a
:class:`FeatureCache`: features are stored as safetensors files keyed by (model spec, weights
fingerprint, dataset, data fingerprint, split, subset, transform), so the k-NN and the linear
probe of one encoder share one extraction, and changing the weights or the data (files added,
moved, rewritten, or read from another folder) changes the key.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from seedzoo.data.datasets import dataset_fingerprint, get_dataset
from seedzoo.data.subsets import subset_indices
from seedzoo.data.transforms import transform_for
from seedzoo.devices import resolve_device
from seedzoo.errors import SeedzooError
from seedzoo.files import atomic_write_path
from seedzoo.zoo.pretrained import weights_fingerprint

FEATURES_KEY = "features"
LABELS_KEY = "labels"


def default_cache_dir() -> Path:
    """``$SEEDZOO_CACHE/features``, else ``~/.cache/seedzoo/features``."""
    base = os.environ.get("SEEDZOO_CACHE") or Path.home() / ".cache" / "seedzoo"
    return Path(base) / "features"


def _uses_convolutions(model) -> bool:
    return isinstance(model, nn.Module) and any(isinstance(m, nn.Conv2d) for m in model.modules())


def default_device(model) -> torch.device:
    """CUDA when available for torch modules with weights; CPU for everything else (raw
    pixels, ONNX Runtime sessions and other callables)."""
    has_weights = isinstance(model, nn.Module) and any(True for _ in model.parameters())
    return torch.device("cuda" if has_weights and torch.cuda.is_available() else "cpu")


@dataclass
class _UnequalImageSizes:
    """What the loader yields instead of a batch whose images differ in size."""

    shapes: list[tuple[int, ...]]


def _collate(batch):
    """The default collation, or :class:`_UnequalImageSizes` when the images cannot be stacked
    (returned, not raised, so that it reaches the main process intact from a worker)."""
    try:
        return torch.utils.data.default_collate(batch)
    except RuntimeError:
        shapes = sorted({tuple(image.shape) for image, _ in batch if hasattr(image, "shape")})
        if len(shapes) > 1:
            return _UnequalImageSizes(shapes)
        raise


def _unequal_sizes_error(desc: str, shapes) -> SeedzooError:
    return SeedzooError(
        f"{desc}: the images differ in size ({' vs '.join(str(s) for s in shapes[:3])}), but "
        "the features of a dataset need images of one size. The raw-pixel baseline (pixels) "
        "keeps every image as it is: resize the dataset's images to one size, or evaluate an "
        "encoder, whose transform resizes them.")


def extract_features(model, dataset, *, batch_size: int = 256, num_workers: int = 0,
                     device: str | torch.device | None = None, channels_last: bool | None = None,
                     progress: bool = True, desc: str = "features"
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(features (N, D) float32, labels (N,) int64)`` of every ``(image, label)`` in ``dataset``.

    ``dataset`` must already yield tensors (give it the encoder's transform). A torch module
    is put in eval mode and moved to ``device`` (default: CUDA if available and the module
    has weights); other callables are fed CPU batches. ``channels_last=None`` turns
    channels-last memory on for convolutional torch modules (moved outside inference mode, so a
    module still being trained keeps trainable weights). A module in training mode is put back in
    it afterwards. Images of different sizes (which only an encoder without a resizing
    transform, such as raw pixels, sees) are a :class:`SeedzooError`.
    """
    from tqdm.auto import tqdm

    is_module = isinstance(model, nn.Module)
    device = resolve_device(device) if device is not None else default_device(model)
    if channels_last is None:
        channels_last = _uses_convolutions(model)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    was_training = is_module and model.training
    if is_module:
        model.eval().to(device=device, memory_format=memory_format)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
        collate_fn=_collate, pin_memory=device.type == "cuda", persistent_workers=False)
    features = torch.empty(0)
    labels = torch.empty(len(dataset), dtype=torch.int64)
    start = 0
    try:
        with torch.inference_mode():
            for batch in tqdm(loader, desc=desc, unit="batch", dynamic_ncols=True,
                              disable=not progress):
                if isinstance(batch, _UnequalImageSizes):
                    raise _unequal_sizes_error(desc, batch.shapes)
                images, targets = batch
                images = images.to(device, non_blocking=True)
                if images.ndim == 4:
                    images = images.contiguous(memory_format=memory_format)
                output = torch.as_tensor(model(images)).flatten(1).float().cpu()
                if start == 0:
                    features = torch.empty(len(dataset), output.shape[1], dtype=torch.float32)
                    first_shape = tuple(images.shape[1:])
                elif tuple(images.shape[1:]) != first_shape:  # batches of different image sizes
                    raise _unequal_sizes_error(desc, [first_shape, tuple(images.shape[1:])])
                features[start:start + len(output)] = output
                labels[start:start + len(output)] = torch.as_tensor(targets)
                start += len(output)
    finally:
        if was_training:
            model.train()
    return features, labels


class FeatureCache:
    """Features stored as ``<dataset>-<split>-<key hash>.safetensors`` files in one folder.

    The key is a JSON-able dict; the file also records it in its metadata. Files are written
    atomically; an unreadable file counts as missing.
    """

    def __init__(self, folder: str | os.PathLike | None = None):
        self.folder = Path(folder) if folder is not None else default_cache_dir()

    @staticmethod
    def digest(key: dict) -> str:
        return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()

    def path(self, key: dict) -> Path:
        label = "-".join(str(key.get(part, "")) for part in ("dataset", "split"))
        label = "".join(c if c.isalnum() or c in "-_." else "_" for c in label)[-60:]
        return self.folder / f"{label}-{self.digest(key)[:24]}.safetensors"

    def load(self, key: dict) -> tuple[torch.Tensor, torch.Tensor] | None:
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        path = self.path(key)
        if not path.is_file():
            return None
        try:
            tensors = load_file(str(path))
            features, labels = tensors[FEATURES_KEY], tensors[LABELS_KEY]
        except (SafetensorError, OSError, KeyError, ValueError):
            return None
        if not torch.isfinite(features).all():  # never saved so: the file was altered
            warnings.warn(f"The cached features {path} hold NaN or infinite values, which "
                          "seedzoo never caches: the file was altered. Extracting them again.",
                          stacklevel=2)
            return None
        return features, labels

    def save(self, key: dict, features: torch.Tensor, labels: torch.Tensor) -> Path | None:
        """Store ``features`` under ``key``; non-finite features are not stored (the protocols
        refuse them, naming the encoder)."""
        from safetensors.torch import save_file

        if not torch.isfinite(features).all():
            return None
        path = self.path(key)
        metadata = {"key": json.dumps(key, sort_keys=True, default=str)}
        with atomic_write_path(path) as tmp:
            save_file({FEATURES_KEY: features.contiguous(), LABELS_KEY: labels.contiguous()},
                      str(tmp), metadata=metadata)
        return path


class MemoryFeatureCache:
    """:class:`FeatureCache`'s ``load`` / ``save`` in memory: one evaluation that must not touch
    the disk still extracts each split once for all its protocols. It keeps non-finite features
    too: every protocol refuses them, and extracting them again would give the same."""

    def __init__(self):
        self._entries: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def load(self, key: dict) -> tuple[torch.Tensor, torch.Tensor] | None:
        return self._entries.get(FeatureCache.digest(key))

    def save(self, key: dict, features: torch.Tensor, labels: torch.Tensor) -> None:
        self._entries[FeatureCache.digest(key)] = (features, labels)


def dataset_features(model, dataset: str, split: str, *, spec: str, root=None,
                     transform=None, limit: int | None = None, seed: int = 0,
                     cache: FeatureCache | MemoryFeatureCache | None = None,
                     fingerprint: str | None = None, **extract_options
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Features and labels of ``split`` of dataset ``dataset`` under ``model``, through ``cache``.

    ``spec`` names the model in the cache key next to its weights ``fingerprint`` (computed
    when not given) and the data's fingerprint
    (:func:`~seedzoo.data.datasets.dataset_fingerprint`). ``transform`` defaults to the
    model's own (:func:`transform_for`); ``limit`` keeps a seeded random subset of that many
    samples. ``cache=None`` disables caching. Other options go to :func:`extract_features`.
    """
    transform = transform if transform is not None else transform_for(model)
    data = get_dataset(dataset, split, root=root, transform=transform)
    indices = subset_indices(len(data), limit, seed)
    if cache is not None:  # the key hashes the weights and stats the data files: only for it
        key = {"model": spec, "weights": fingerprint or weights_fingerprint(model),
               "dataset": dataset, "data": dataset_fingerprint(data), "split": split,
               "size": len(data),
               "subset": None if indices is None else {"limit": int(limit), "seed": seed},
               "transform": repr(transform)}
        found = cache.load(key)
        if found is not None:
            return found
    if indices is not None:
        data = torch.utils.data.Subset(data, indices.tolist())
    extract_options.setdefault("desc", f"{dataset} {split}")
    features, labels = extract_features(model, data, **extract_options)
    if cache is not None:
        cache.save(key, features, labels)
    return features, labels
