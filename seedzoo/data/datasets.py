"""Downstream datasets by name, each with train/test splits and class names.

``get_dataset(name, split, root=..., transform=...)`` returns a map-style dataset of
``(image, label)`` pairs where ``image`` is a PIL image in the dataset's own mode
(grayscale stays grayscale: the encoder's transform makes it 3-channel).

Names: ``fashion-mnist``, ``mnist``, ``cifar10``, ``cifar100``, ``stl10``, ``digits``
and ``imagefolder:<path>``. Missing files end in a ``DatasetNotFoundError`` that says
how to get them. :func:`dataset_fingerprint` identifies the data a dataset reads (for the
feature cache).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from seedzoo.data.transforms import to_rgb
from seedzoo.errors import DatasetNotFoundError, SeedzooError

SPLITS = ("train", "test")
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")

FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)


def default_data_root() -> Path:
    """Where datasets are looked for when no root is given: ``$SEEDZOO_DATA_ROOT`` or ``./data``."""
    return Path(os.environ.get("SEEDZOO_DATA_ROOT", "data"))


def files_fingerprint(folder: str | os.PathLike, files, extra: str = "") -> str:
    """sha256 of ``folder``'s resolved path, ``extra`` and each file's (path relative to
    ``folder``, size, mtime_ns): cheap (one ``stat`` per file), and it changes when files are
    added, removed, moved, rewritten or read from elsewhere."""
    digest = hashlib.sha256(f"{Path(folder).resolve()}\n{extra}\n".encode())
    for file in files:
        stat = os.stat(file)
        digest.update(f"{os.path.relpath(file, folder)}|{stat.st_size}|{stat.st_mtime_ns}\n"
                      .encode())
    return digest.hexdigest()


def dataset_fingerprint(dataset) -> str | None:
    """What identifies the data ``dataset`` reads, or ``None`` when unknown.

    A dataset's own ``fingerprint`` attribute when it has one (the IDX files read, the
    scikit-learn version of ``digits``); else, for an ImageFolder, the fingerprint of its
    samples and class numbering; else, for a torchvision dataset, of every file in its folder
    (``root/base_folder``).
    """
    own = getattr(dataset, "fingerprint", None)
    if isinstance(own, str) and own:
        return own
    if hasattr(dataset, "samples") and hasattr(dataset, "class_to_idx"):
        return files_fingerprint(dataset.root, [path for path, _ in dataset.samples],
                                 extra=repr(sorted(dataset.class_to_idx.items())))
    if getattr(dataset, "root", None) is not None:
        folder = Path(dataset.root) / getattr(dataset, "base_folder", "")
        return files_fingerprint(folder, sorted(p for p in folder.rglob("*") if p.is_file()))
    return None


class ArrayImageDataset(torch.utils.data.Dataset):
    """Images held in memory as a uint8 array (N, H, W) or (N, H, W, C), with integer labels.

    ``fingerprint`` identifies where the arrays came from (see :func:`dataset_fingerprint`).
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, classes: list[str],
                 transform: Callable | None = None, *, fingerprint: str | None = None):
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images = images
        self.targets = [int(t) for t in labels]
        self.classes = list(classes)
        self.transform = transform
        self.fingerprint = fingerprint

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        image = Image.fromarray(self.images[index])
        if self.transform is not None:
            image = self.transform(image)
        return image, self.targets[index]


def _read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (the MNIST format), gzipped or not."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (EOFError, gzip.BadGzipFile, zlib.error) as error:
        raise DatasetNotFoundError(f"{path} is truncated or corrupt ({error}); delete it and "
                                   "download it again.") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DatasetNotFoundError(f"{path} is not an unsigned-byte IDX file; re-download it.")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    array = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if array.size != int(np.prod(shape)):
        raise DatasetNotFoundError(f"{path} is truncated ({array.size} of {int(np.prod(shape))} "
                                   "values); re-download it.")
    return array.reshape(shape)


def _find_idx(directories: list[Path], stem: str) -> Path | None:
    for directory in directories:
        for name in (stem, stem + ".gz"):
            if (directory / name).is_file():
                return directory / name
    return None


def _mnist_like(folder: str, classes, how_to_get: str, system_dirs: Callable[[], list[Path]]):
    def load(split: str, root: Path, transform):
        # Not the bare root: MNIST and Fashion-MNIST files have the same names.
        directories = [root / folder / "raw", root / folder] + system_dirs()
        prefix = "train" if split == "train" else "t10k"
        images = _find_idx(directories, f"{prefix}-images-idx3-ubyte")
        labels = _find_idx(directories, f"{prefix}-labels-idx1-ubyte")
        if images is None or labels is None:
            searched = ", ".join(str(d) for d in directories)
            raise DatasetNotFoundError(
                f"{folder} {split} files ({prefix}-images-idx3-ubyte[.gz], "
                f"{prefix}-labels-idx1-ubyte[.gz]) not found in: {searched}. {how_to_get}")
        image_array, label_array = _read_idx(images), _read_idx(labels)
        if len(image_array) != len(label_array):
            raise DatasetNotFoundError(
                f"{images} holds {len(image_array)} images but {labels} holds "
                f"{len(label_array)} labels: the two files do not belong together. Replace "
                "them with a matching pair.")
        return ArrayImageDataset(image_array, label_array, classes, transform,
                                 fingerprint=files_fingerprint(images.parent, [images, labels]))
    return load


def _torchvision(cls_name: str, how_to_get: str):
    def load(split: str, root: Path, transform):
        import torchvision.datasets as tvd

        cls = getattr(tvd, cls_name)
        kwargs = {"split": split} if cls_name == "STL10" else {"train": split == "train"}
        try:
            return cls(str(root), download=False, transform=transform, **kwargs)
        except RuntimeError:  # torchvision: "Dataset not found or corrupted ..."
            raise DatasetNotFoundError(
                f"{cls_name} ({split}) not found (or corrupted) under {root}. {how_to_get}") \
                from None
    return load


def _digits(split: str, root: Path, transform):
    import sklearn
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    images = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)
    train_idx, test_idx = train_test_split(
        np.arange(len(images)), test_size=0.25, random_state=0, stratify=bunch.target)
    index = train_idx if split == "train" else test_idx
    return ArrayImageDataset(images[index], bunch.target[index],
                             [str(c) for c in bunch.target_names], transform,
                             fingerprint=f"scikit-learn {sklearn.__version__} load_digits")


def read_image(path: str) -> Image.Image:
    """The image file ``path`` as 8-bit RGB (:func:`~seedzoo.data.transforms.to_rgb`); an
    unreadable file is a :class:`DatasetNotFoundError` naming it (the ImageFolder loader)."""
    try:
        with Image.open(path) as image:
            image.load()
            return to_rgb(image)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise DatasetNotFoundError(f"{path} is not a readable image ({type(error).__name__}: "
                                   f"{error}). Remove or replace it.") from None


class ImageFiles(torch.utils.data.Dataset):
    """Every image file under ``folder`` (recursively, sorted; class folders or not), yielding
    ``(transform(image), -1)``; ``paths`` holds the files relative to ``folder``.

    No image file is a :class:`DatasetNotFoundError`; an unreadable one names itself when read.
    """

    def __init__(self, folder: str | os.PathLike, transform=None):
        from torchvision.datasets.folder import IMG_EXTENSIONS

        self.folder = Path(folder).expanduser()
        if not self.folder.is_dir():
            raise DatasetNotFoundError(f"{folder} is not a folder; give a folder of images (class "
                                       "subfolders allowed).")
        self.paths = sorted(str(path.relative_to(self.folder)) for path in self.folder.rglob("*")
                            if path.is_file() and path.suffix.lower() in IMG_EXTENSIONS)
        if not self.paths:
            raise DatasetNotFoundError(f"{folder} holds no image files ({', '.join(IMG_EXTENSIONS)}"
                                       ", searched in subfolders too).")
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        image = read_image(str(self.folder / self.paths[index]))
        return (image if self.transform is None else self.transform(image)), -1


def _image_folder(folder: Path, class_to_idx: dict[str, int], transform, *,
                  allow_missing_classes: bool):
    """A torchvision ImageFolder of ``folder`` whose labels follow ``class_to_idx`` (the train
    split's), so that label i means the same class in every split.

    A class folder that ``class_to_idx`` lacks is an error; a class of ``class_to_idx`` with no
    images in ``folder`` is one only without ``allow_missing_classes`` (a test split need not
    have every training class). The result is a plain ImageFolder, so it pickles (data-loading
    workers started with spawn need that).
    """
    from torchvision.datasets import ImageFolder

    try:
        dataset = ImageFolder(str(folder), transform=transform, loader=read_image,
                              allow_empty=allow_missing_classes)
    except (FileNotFoundError, RuntimeError) as error:
        raise DatasetNotFoundError(f"{folder}: {error}") from None
    unknown = sorted(set(dataset.classes) - set(class_to_idx))
    if unknown:
        raise SeedzooError(
            f"{folder} has class folder(s) {', '.join(unknown)} that the training split "
            f"({folder.parent / 'train'}) lacks, so they have no label. Add training images for "
            f"them under train/<class>/, or remove them from {folder.name}/.")
    if not dataset.samples:
        raise DatasetNotFoundError(f"{folder}: found no images in its class folders.")
    own_classes = dataset.classes
    dataset.samples = dataset.imgs = [(path, class_to_idx[own_classes[target]])
                                      for path, target in dataset.samples]
    dataset.targets = [target for _, target in dataset.samples]
    dataset.classes = sorted(class_to_idx, key=class_to_idx.get)
    dataset.class_to_idx = dict(class_to_idx)
    return dataset


def _imagefolder(path: str):
    def load(split: str, root: Path, transform):
        from torchvision.datasets.folder import find_classes

        base = Path(path).expanduser()
        names = ["train"] if split == "train" else ["test", "val"]
        folder = next((base / name for name in names if (base / name).is_dir()), None)
        if folder is None:
            raise DatasetNotFoundError(
                f"imagefolder:{path} has no {' or '.join(n + '/' for n in names)} folder. "
                f"Expected {base}/train/<class>/<image> and {base}/val/<class>/<image> "
                "(or test/).")
        numbering = base / "train" if (base / "train").is_dir() else folder
        try:
            _, class_to_idx = find_classes(str(numbering))
        except FileNotFoundError as error:
            raise DatasetNotFoundError(f"{numbering}: {error}") from None
        return _image_folder(folder, class_to_idx, transform,
                             allow_missing_classes=split != "train")
    return load


_TORCHVISION_HELP = ("Download it once on a machine with internet, e.g. `python -c \"import "
                     "torchvision; torchvision.datasets.{cls}('data', download=True)\"`, then "
                     "point --data-root at that folder.")

_LOADERS: dict[str, Callable] = {
    "fashion-mnist": _mnist_like(
        "FashionMNIST", FASHION_MNIST_CLASSES,
        "Install the Debian package (`apt-get install dataset-fashion-mnist`) or place the files "
        "under <data-root>/FashionMNIST/raw/.",
        system_dirs=lambda: [DEBIAN_FASHION_MNIST]),
    "mnist": _mnist_like(
        "MNIST", [str(i) for i in range(10)],
        "Place the MNIST IDX files under <data-root>/MNIST/raw/ "
        "(torchvision.datasets.MNIST(root, download=True) writes them there).",
        system_dirs=list),
    "cifar10": _torchvision("CIFAR10", _TORCHVISION_HELP.format(cls="CIFAR10")),
    "cifar100": _torchvision("CIFAR100", _TORCHVISION_HELP.format(cls="CIFAR100")),
    "stl10": _torchvision("STL10", _TORCHVISION_HELP.format(cls="STL10")),
    "digits": _digits,
}


def list_datasets() -> list[str]:
    """Names accepted by :func:`get_dataset` (plus ``imagefolder:<path>``)."""
    return sorted(_LOADERS) + ["imagefolder:<path>"]


def get_dataset(name: str, split: str = "train", *, root: str | os.PathLike | None = None,
                transform: Callable | None = None) -> torch.utils.data.Dataset:
    """The ``split`` (``train`` or ``test``) of dataset ``name``, yielding ``(image, label)``."""
    if split not in SPLITS:
        raise SeedzooError(f"Unknown split {split!r}; use one of {', '.join(SPLITS)}.")
    if name.startswith("imagefolder:"):
        loader = _imagefolder(name.split(":", 1)[1])
    elif name in _LOADERS:
        loader = _LOADERS[name]
    else:
        raise SeedzooError(f"Unknown dataset {name!r}; known: {', '.join(list_datasets())}.")
    return loader(split, Path(root) if root is not None else default_data_root(), transform)


def dataset_labels(dataset) -> np.ndarray:
    """Integer labels of a dataset without decoding its images."""
    for attribute in ("targets", "labels"):
        if hasattr(dataset, attribute):
            return np.asarray(getattr(dataset, attribute), dtype=np.int64)
    return np.asarray([label for _, label in dataset], dtype=np.int64)


def dataset_classes(dataset) -> list[str]:
    """Class names of a dataset (index = label)."""
    return list(getattr(dataset, "classes", []))
