"""Dataset registry: loading, class names, and the error each dataset gives when missing."""

import gzip

import numpy as np
import pytest
from PIL import Image

from seedzoo.errors import DatasetNotFoundError, SeedzooError
from seedzoo.evaluation import datasets as datasets_module
from seedzoo.evaluation import get_dataset, list_datasets
from seedzoo.evaluation.datasets import dataset_classes, dataset_labels


def write_idx(path, array: np.ndarray) -> None:
    """An unsigned-byte IDX file (the MNIST format), gzipped."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(n).to_bytes(4, "big") for n in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def write_mnist_like(folder, count=12):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix in ("train", "t10k"):
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz",
                  rng.integers(0, 256, (count, 28, 28)))
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", np.arange(count) % 10)


@pytest.fixture
def no_debian_files(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets_module, "DEBIAN_FASHION_MNIST", tmp_path / "no-debian")


def test_registry_names():
    names = list_datasets()
    for name in ("fashion-mnist", "mnist", "cifar10", "cifar100", "stl10", "digits",
                 "imagefolder:<path>"):
        assert name in names


@pytest.mark.skipif(not datasets_module.DEBIAN_FASHION_MNIST.is_dir(),
                    reason="Debian package dataset-fashion-mnist not installed")
def test_fashion_mnist_from_the_debian_package(tmp_path):
    train = get_dataset("fashion-mnist", "train", root=tmp_path)
    test = get_dataset("fashion-mnist", "test", root=tmp_path)
    assert (len(train), len(test)) == (60000, 10000)
    image, label = test[0]
    assert image.mode == "L" and image.size == (28, 28) and label == 9
    assert dataset_classes(test)[9] == "Ankle boot"
    assert np.bincount(dataset_labels(train)).tolist() == [6000] * 10


def test_fashion_mnist_missing_says_how_to_install(tmp_path, no_debian_files):
    with pytest.raises(DatasetNotFoundError, match="apt-get install dataset-fashion-mnist"):
        get_dataset("fashion-mnist", "train", root=tmp_path)


def test_fashion_mnist_from_a_torchvision_root(tmp_path, no_debian_files):
    write_mnist_like(tmp_path / "FashionMNIST" / "raw")
    data = get_dataset("fashion-mnist", "test", root=tmp_path)
    assert len(data) == 12 and data[3][1] == 3
    assert dataset_classes(data)[0] == "T-shirt/top"


def test_mnist_missing_and_present(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="MNIST/raw"):
        get_dataset("mnist", "test", root=tmp_path)
    write_mnist_like(tmp_path / "MNIST" / "raw")
    assert len(get_dataset("mnist", "train", root=tmp_path)) == 12


def test_truncated_idx_file_is_a_clear_error(tmp_path):
    write_mnist_like(tmp_path / "MNIST" / "raw")
    images = tmp_path / "MNIST" / "raw" / "t10k-images-idx3-ubyte.gz"
    with gzip.open(images, "rb") as f:
        content = f.read()
    with gzip.open(images, "wb") as f:
        f.write(content[:-100])
    with pytest.raises(DatasetNotFoundError, match="truncated"):
        get_dataset("mnist", "test", root=tmp_path)


@pytest.mark.parametrize("name", ["cifar10", "cifar100", "stl10"])
def test_torchvision_datasets_missing_say_how_to_get_them(tmp_path, name):
    with pytest.raises(DatasetNotFoundError, match="download=True"):
        get_dataset(name, "train", root=tmp_path)


def test_digits_ships_with_scikit_learn():
    train, test = get_dataset("digits", "train"), get_dataset("digits", "test")
    assert len(train) + len(test) == 1797
    image, label = test[0]
    assert image.mode == "L" and image.size == (8, 8) and 0 <= label <= 9
    assert dataset_classes(train) == [str(i) for i in range(10)]
    counts = np.bincount(dataset_labels(test))
    assert counts.min() >= 40  # stratified split


def test_imagefolder(tmp_path):
    for split, count in (("train", 3), ("val", 2)):
        for cls in ("cat", "dog"):
            folder = tmp_path / split / cls
            folder.mkdir(parents=True)
            for i in range(count):
                Image.new("RGB", (10, 12), (i * 40, 0, 0)).save(folder / f"{i}.png")
    train = get_dataset(f"imagefolder:{tmp_path}", "train")
    test = get_dataset(f"imagefolder:{tmp_path}", "test")  # val/ serves as the test split
    assert (len(train), len(test)) == (6, 4)
    assert dataset_classes(test) == ["cat", "dog"]
    assert dataset_labels(train).tolist() == [0, 0, 0, 1, 1, 1]


def test_imagefolder_missing_split_explains_the_layout(tmp_path):
    (tmp_path / "train" / "a").mkdir(parents=True)
    with pytest.raises(DatasetNotFoundError, match="val/ folder"):
        get_dataset(f"imagefolder:{tmp_path}", "test")
    with pytest.raises(DatasetNotFoundError):
        get_dataset(f"imagefolder:{tmp_path}", "train")  # a class folder without images
    with pytest.raises(DatasetNotFoundError, match="train/"):
        get_dataset(f"imagefolder:{tmp_path / 'nowhere'}", "train")


def test_unknown_dataset_and_split():
    with pytest.raises(SeedzooError, match="Unknown dataset 'imagenet-9k'"):
        get_dataset("imagenet-9k", "train")
    with pytest.raises(SeedzooError, match="Unknown split"):
        get_dataset("digits", "validation")
