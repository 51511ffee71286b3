"""Dataset registry: loading, class names, and the error each dataset gives when missing."""

import gzip
import pickle

import numpy as np
import pytest
from PIL import Image

from seedzoo.data import datasets as datasets_module
from seedzoo.data import get_dataset, list_datasets
from seedzoo.data.datasets import dataset_classes, dataset_fingerprint, dataset_labels
from seedzoo.errors import DatasetNotFoundError, SeedzooError


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


def write_image_folder(base, layout: dict[str, str], count: int = 2) -> None:
    """``layout`` maps a split folder to its classes (one letter each), ``count`` images each."""
    for split, classes in layout.items():
        for cls in classes:
            folder = base / split / cls
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                Image.new("L", (6, 6), 40 * i).save(folder / f"{cls}{i}.png")


def test_imagefolder_test_split_numbers_classes_like_the_train_split(tmp_path):
    write_image_folder(tmp_path, {"train": "abc", "val": "ac"})
    train = get_dataset(f"imagefolder:{tmp_path}", "train")
    test = get_dataset(f"imagefolder:{tmp_path}", "test")  # val/ lacks b: that is fine
    assert test.class_to_idx == train.class_to_idx == {"a": 0, "b": 1, "c": 2}
    assert dataset_classes(test) == ["a", "b", "c"]
    assert dataset_labels(test).tolist() == [0, 0, 2, 2] and test[2][1] == 2
    copy = pickle.loads(pickle.dumps(test))  # what spawned data-loading workers receive
    assert copy[2][1] == 2 and copy.class_to_idx == train.class_to_idx


def test_imagefolder_test_class_missing_from_train_is_a_clear_error(tmp_path):
    write_image_folder(tmp_path, {"train": "ab", "val": "abz"})
    with pytest.raises(SeedzooError, match=r"val has class folder\(s\) z that the training"):
        get_dataset(f"imagefolder:{tmp_path}", "test")


def test_imagefolder_without_a_train_split_numbers_its_own_classes(tmp_path):
    write_image_folder(tmp_path, {"test": "xy"})
    assert dataset_labels(get_dataset(f"imagefolder:{tmp_path}", "test")).tolist() == [0, 0, 1, 1]


def test_imagefolder_fingerprint_follows_files_labels_and_location(tmp_path, monkeypatch):
    write_image_folder(tmp_path / "data", {"train": "ab", "val": "ab"})
    name = f"imagefolder:{tmp_path / 'data'}"
    first = dataset_fingerprint(get_dataset(name, "train"))
    assert first == dataset_fingerprint(get_dataset(name, "train"))
    assert first != dataset_fingerprint(get_dataset(name, "test"))
    # Relabelling: the same files under other class folders.
    (tmp_path / "data/train/a/a0.png").rename(tmp_path / "data/train/b/a0.png")
    (tmp_path / "data/train/b/b0.png").rename(tmp_path / "data/train/a/b0.png")
    relabelled = dataset_fingerprint(get_dataset(name, "train"))
    assert relabelled != first
    Image.new("L", (7, 6), 255).save(tmp_path / "data/train/a/b0.png")  # rewritten in place
    assert dataset_fingerprint(get_dataset(name, "train")) != relabelled
    # The same relative path read from another directory is other data.
    for where in ("one", "two"):
        write_image_folder(tmp_path / where / "data", {"train": "ab"})
    fingerprints = set()
    for where in ("one", "two"):
        monkeypatch.chdir(tmp_path / where)
        fingerprints.add(dataset_fingerprint(get_dataset("imagefolder:data", "train")))
    assert len(fingerprints) == 2


def test_idx_and_digits_fingerprints(tmp_path):
    import sklearn

    write_mnist_like(tmp_path / "one" / "MNIST" / "raw")
    write_mnist_like(tmp_path / "two" / "MNIST" / "raw")
    one = dataset_fingerprint(get_dataset("mnist", "train", root=tmp_path / "one"))
    two = dataset_fingerprint(get_dataset("mnist", "train", root=tmp_path / "two"))
    assert len({one, two, dataset_fingerprint(get_dataset("mnist", "test",
                                                          root=tmp_path / "one"))}) == 3
    assert sklearn.__version__ in dataset_fingerprint(get_dataset("digits", "test"))


def test_torchvision_dataset_fingerprint_covers_its_own_folder_only(tmp_path):
    class FakeCifar:  # what dataset_fingerprint reads of a torchvision dataset
        root = str(tmp_path)
        base_folder = "cifar-10-batches-py"

    (tmp_path / "cifar-10-batches-py").mkdir()
    (tmp_path / "cifar-10-batches-py" / "data_batch_1").write_bytes(b"1234")
    first = dataset_fingerprint(FakeCifar())
    (tmp_path / "unrelated.bin").write_bytes(b"x")
    assert dataset_fingerprint(FakeCifar()) == first
    (tmp_path / "cifar-10-batches-py" / "data_batch_1").write_bytes(b"12345")
    assert dataset_fingerprint(FakeCifar()) != first


def test_mnist_does_not_read_files_loose_in_the_data_root(tmp_path, no_debian_files):
    write_mnist_like(tmp_path / "loose")
    root = tmp_path / "loose"
    with pytest.raises(DatasetNotFoundError) as error:  # they may well be Fashion-MNIST's
        get_dataset("mnist", "test", root=root)
    message = str(error.value)
    assert f"{root / 'MNIST' / 'raw'}, {root / 'MNIST'}." in message
    assert "<data-root>/MNIST/raw/" in message
    with pytest.raises(DatasetNotFoundError, match="apt-get install dataset-fashion-mnist"):
        get_dataset("fashion-mnist", "test", root=root)


@pytest.mark.parametrize("damage", ["cut", "not-gzip"])
def test_truncated_or_corrupt_gz_file_says_to_download_it_again(tmp_path, damage):
    write_mnist_like(tmp_path / "MNIST" / "raw")
    images = tmp_path / "MNIST" / "raw" / "t10k-images-idx3-ubyte.gz"
    content = images.read_bytes()
    images.write_bytes(content[:len(content) // 2] if damage == "cut" else b"\x00" * 64)
    with pytest.raises(DatasetNotFoundError,
                       match="is truncated or corrupt.*delete it and download it again"):
        get_dataset("mnist", "test", root=tmp_path)


def _image_of_mode(mode: str, values: np.ndarray) -> Image.Image:
    dtype = {"I;16": np.uint16, "I": np.int32, "F": np.float32}[mode]
    return Image.fromarray(values.astype(dtype), mode=mode if mode != "I;16" else None)


@pytest.mark.parametrize("mode, full_scale", [("I;16", 65535), ("I", 65535), ("F", 1.0)])
def test_16_bit_and_float_images_are_scaled_not_clipped(tmp_path, mode, full_scale):
    """A dark and a bright class of 16-bit (or float) images stay apart after loading."""
    for cls, level in (("dark", 0.2), ("bright", 0.8)):
        folder = tmp_path / "train" / cls
        folder.mkdir(parents=True)
        image = _image_of_mode(mode, np.full((6, 6), level * full_scale))
        image.save(folder / ("0.tif" if mode != "I;16" else "0.png"))
    data = get_dataset(f"imagefolder:{tmp_path}", "train")
    pixels = {data.classes[label]: np.asarray(image) for image, label in data}
    assert pixels["dark"].dtype == np.uint8 and pixels["dark"].shape == (6, 6, 3)
    assert abs(int(pixels["dark"].max()) - round(0.2 * 255)) <= 1
    assert abs(int(pixels["bright"].max()) - round(0.8 * 255)) <= 1


def test_an_image_whose_value_range_is_unknown_is_refused_with_its_file_and_mode(tmp_path):
    folder = tmp_path / "train" / "a"
    folder.mkdir(parents=True)
    _image_of_mode("F", np.full((4, 4), 300.0)).save(folder / "hot.tif")
    data = get_dataset(f"imagefolder:{tmp_path}", "train")
    with pytest.raises(SeedzooError, match=r"hot\.tif has PIL mode F with values from 300"):
        data[0]


def test_a_corrupt_image_in_an_imagefolder_names_the_file(tmp_path):
    folder = tmp_path / "train" / "a"
    folder.mkdir(parents=True)
    Image.new("RGB", (4, 4)).save(folder / "good.png")
    (folder / "broken.png").write_bytes(b"\x89PNG not really")
    data = get_dataset(f"imagefolder:{tmp_path}", "train")
    assert np.asarray(data[1][0]).shape == (4, 4, 3)  # good.png sorts after broken.png
    with pytest.raises(DatasetNotFoundError, match=r"broken\.png is not a readable image"):
        data[0]
    pickle.dumps(data)  # the loader still pickles (spawned data-loading workers)


def test_mnist_images_and_labels_of_different_lengths_name_both_files(tmp_path):
    folder = tmp_path / "MNIST" / "raw"
    write_mnist_like(folder)
    write_idx(folder / "train-labels-idx1-ubyte.gz", np.arange(5) % 10)
    with pytest.raises(DatasetNotFoundError,
                       match=r"train-images-idx3-ubyte\.gz holds 12 images but .*"
                             r"train-labels-idx1-ubyte\.gz holds 5 labels"):
        get_dataset("mnist", "train", root=tmp_path)
