"""Features of a user's own images: one row per image file, with its path.

``embed_folder(model, folder)`` runs an encoder (a torch model from :func:`seedzoo.load`, or an
:class:`~seedzoo.deploy.OrtEncoder`) over every image under ``folder`` with the encoder's own
preprocessing; ``write_embeddings`` stores the rows as ``.npz`` (``np.load``: ``features``
(N, D) float32 and ``paths`` (N,) str) or ``.csv`` (``pandas.read_csv``: a ``path`` column, then
``f0`` ... ``f{D-1}``); ``read_embeddings`` reads either back.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np

from seedzoo.data.datasets import ImageFiles
from seedzoo.data.transforms import transform_for
from seedzoo.errors import SeedzooError
from seedzoo.evaluation.features import extract_features
from seedzoo.files import atomic_write_path

#: The formats :func:`write_embeddings` writes, by file extension.
FORMATS = (".npz", ".csv")


def embed_folder(model, folder: str | os.PathLike, *, batch_size: int = 64,
                 num_workers: int = 0, device=None, progress: bool = True
                 ) -> tuple[list[str], np.ndarray]:
    """``(paths, features)``: the image files under ``folder`` (relative, sorted) and their
    features (N, D) float32, computed in batches with ``model``'s preprocessing."""
    images = ImageFiles(folder, transform=transform_for(model))
    features, _ = extract_features(model, images, batch_size=batch_size, num_workers=num_workers,
                                   device=device, progress=progress, desc="embedding")
    return images.paths, features.numpy()


def check_format(path: str | os.PathLike) -> str:
    """The format of ``path`` (its extension, one of :data:`FORMATS`), or a clear error."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise SeedzooError(f"{path}: write embeddings to a {' or '.join(FORMATS)} file (numpy "
                           "reads .npz, pandas and numpy read .csv).")
    return suffix


def write_embeddings(path: str | os.PathLike, paths: list[str], features: np.ndarray) -> Path:
    """Write one row per image (atomically) in the format of ``path``'s extension."""
    if len(paths) != len(features):
        raise ValueError(f"{len(paths)} paths for {len(features)} feature rows.")
    suffix = check_format(path)
    with atomic_write_path(path) as tmp, open(tmp, "wb" if suffix == ".npz" else "w",
                                               newline=None if suffix == ".npz" else "") as out:
        if suffix == ".npz":
            np.savez(out, features=features.astype(np.float32), paths=np.asarray(paths, dtype=str))
        else:
            writer = csv.writer(out, lineterminator="\n")
            writer.writerow(["path", *(f"f{i}" for i in range(features.shape[1]))])
            writer.writerows([name, *map(repr, map(float, row))]
                             for name, row in zip(paths, features, strict=True))
    return Path(path)


def read_embeddings(path: str | os.PathLike) -> tuple[list[str], np.ndarray]:
    """``(paths, features)`` from a file :func:`write_embeddings` wrote."""
    if check_format(path) == ".npz":
        with np.load(path, allow_pickle=False) as data:
            return data["paths"].tolist(), data["features"]
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))[1:]
    return [row[0] for row in rows], np.array([row[1:] for row in rows], dtype=np.float32)
