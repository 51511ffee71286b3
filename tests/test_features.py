"""Feature extraction: encoders, grayscale through timm transforms, the on-disk cache."""

import numpy as np
import pytest
import torch
from torch import nn

from seedzoo.errors import ModelNotFoundError, SeedzooError
from seedzoo.evaluation import (
    FeatureCache,
    PixelEncoder,
    dataset_features,
    extract_features,
    get_dataset,
    load_encoder,
    transform_for,
    weights_fingerprint,
)

pytestmark = pytest.mark.usefixtures("single_thread")



def test_pixel_encoder_features_are_the_raw_pixels():
    encoder = load_encoder("pixels")
    assert isinstance(encoder, PixelEncoder)
    data = get_dataset("digits", "test", transform=transform_for(encoder))
    features, labels = extract_features(encoder, torch.utils.data.Subset(data, range(40)),
                                        batch_size=16, progress=False)
    raw = get_dataset("digits", "test")
    assert features.shape == (40, 64)
    np.testing.assert_allclose(features[3].numpy(), np.asarray(raw[3][0]).ravel() / 255.0,
                               rtol=1e-6)
    assert labels.tolist() == [raw[i][1] for i in range(40)]


def test_grayscale_dataset_through_an_imagenet_normalised_timm_model():
    model = load_encoder("timm:test_efficientnet")
    transform = transform_for(model)
    data = get_dataset("fashion-mnist", "test", transform=transform)
    image, _ = data[0]
    mean, std = model.pretrained_cfg["mean"], model.pretrained_cfg["std"]
    assert mean == (0.485, 0.456, 0.406)
    assert image.shape == (3, *model.pretrained_cfg["input_size"][1:])
    # Gray was copied to all three channels, then normalised with each channel's mean/std.
    unnormalised = image * torch.tensor(std).view(3, 1, 1) + torch.tensor(mean).view(3, 1, 1)
    torch.testing.assert_close(unnormalised[0], unnormalised[1], atol=1e-5, rtol=0)
    torch.testing.assert_close(unnormalised[1], unnormalised[2], atol=1e-5, rtol=0)
    assert not torch.allclose(image[0], image[2])
    subset = torch.utils.data.Subset(data, range(6))
    features, labels = extract_features(model, subset, batch_size=4, progress=False)
    assert features.shape == (6, model.num_features) and labels.shape == (6,)
    with torch.inference_mode():
        direct = model(torch.stack([subset[i][0] for i in range(6)]))
    torch.testing.assert_close(features, direct, atol=1e-4, rtol=1e-4)


def test_channels_last_does_not_change_features():
    model = load_encoder("timm:test_resnet")
    data = torch.utils.data.TensorDataset(torch.randn(5, 3, 64, 64), torch.arange(5))
    plain, _ = extract_features(model, data, channels_last=False, progress=False)
    fast, _ = extract_features(model, data, channels_last=True, progress=False)
    torch.testing.assert_close(plain, fast, atol=1e-4, rtol=1e-4)


class OnnxLikeEncoder:
    """Not a torch module: a callable with its own preprocessing and weights fingerprint."""

    fingerprint = "sha256-of-some-file"

    def __init__(self):
        from torchvision import transforms

        self.preprocess = transforms.ToTensor()
        self.calls = 0

    def __call__(self, images):
        self.calls += 1
        return images.mean(dim=(2, 3)).numpy()  # (B, C) features, as a NumPy array


def test_any_callable_encoder_works_and_its_fingerprint_is_used():
    encoder = OnnxLikeEncoder()
    assert weights_fingerprint(encoder) == "sha256-of-some-file"
    features, labels = dataset_features(encoder, "digits", "test", spec="onnx-like",
                                        limit=30, cache=None, batch_size=8, progress=False)
    assert features.shape == (30, 1) and features.dtype == torch.float32
    assert encoder.calls == 4


def test_fingerprint_follows_the_weights():
    model = load_encoder("timm:test_resnet")
    first = weights_fingerprint(model)
    twin = load_encoder("timm:test_resnet")
    assert weights_fingerprint(twin) != first  # another random initialisation
    twin.load_state_dict(model.state_dict())
    assert weights_fingerprint(twin) == first
    model.to(memory_format=torch.channels_last)
    assert weights_fingerprint(model) == first  # the memory layout is not the weights
    with torch.no_grad():
        next(model.parameters())[0, 0, 0, 0] += 1e-3
    second = weights_fingerprint(model)
    assert second != first
    model.bn1.running_mean[0] += 1.0  # buffers count too
    assert weights_fingerprint(model) not in (first, second)


def test_cache_is_reused_and_invalidated_when_the_weights_change(tmp_path, extractions):
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 8))
    model.preprocess = PixelEncoder().preprocess
    cache = FeatureCache(tmp_path / "cache")
    options = {"spec": "tiny", "cache": cache, "limit": 50, "batch_size": 16, "progress": False}

    first = dataset_features(model, "digits", "train", **options)
    again = dataset_features(model, "digits", "train", **options)
    assert len(extractions) == 1
    torch.testing.assert_close(first[0], again[0])
    assert torch.equal(first[1], again[1])
    assert len(list((tmp_path / "cache").glob("*.safetensors"))) == 1

    dataset_features(model, "digits", "test", **options)  # another split: its own entry
    dataset_features(model, "digits", "train", **{**options, "limit": 60})  # another subset
    assert len(extractions) == 3

    with torch.no_grad():
        model[1].weight.mul_(2)
    changed = dataset_features(model, "digits", "train", **options)
    assert len(extractions) == 4
    assert not torch.allclose(changed[0], first[0])

    # A corrupt cache file is not trusted: the features are extracted again.
    for path in (tmp_path / "cache").glob("*.safetensors"):
        path.write_bytes(b"not a safetensors file")
    dataset_features(model, "digits", "train", **options)
    assert len(extractions) == 5


def test_cache_file_records_its_key(tmp_path):
    cache = FeatureCache(tmp_path)
    key = {"model": "m", "weights": "abc", "dataset": "imagefolder:/x/y", "split": "test"}
    path = cache.save(key, torch.ones(3, 2), torch.arange(3))
    assert path.parent == tmp_path and path.suffix == ".safetensors"
    assert not list(tmp_path.glob("*.tmp"))
    from safetensors import safe_open

    with safe_open(str(path), "pt") as stored:
        assert '"weights": "abc"' in stored.metadata()["key"]
    features, labels = cache.load(key)
    assert features.shape == (3, 2) and labels.tolist() == [0, 1, 2]
    assert cache.load({**key, "weights": "other"}) is None


def test_unknown_model_spec_is_a_clear_error():
    with pytest.raises(ModelNotFoundError):
        load_encoder("no-such-model-anywhere")


def test_a_training_model_is_put_back_in_training_mode():
    model = load_encoder("timm:test_resnet").train()
    data = torch.utils.data.TensorDataset(torch.randn(4, 3, 32, 32), torch.arange(4))
    extract_features(model, data, progress=False)
    assert model.training
    model.eval()
    extract_features(model, data, progress=False)
    assert not model.training


def _image_folder(base, sizes=((6, 6),), classes="ab", count=3):
    """train/ and val/ with ``count`` gray images per class, cycling through ``sizes``."""
    from PIL import Image

    for split in ("train", "val"):
        for c, cls in enumerate(classes):
            folder = base / split / cls
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                size = sizes[i % len(sizes)]
                Image.new("L", size, 100 * c + 10 * i).save(folder / f"{cls}{i}.png")


def test_cache_follows_the_data_not_just_the_dataset_name(tmp_path, monkeypatch):
    _image_folder(tmp_path / "data")
    cache = FeatureCache(tmp_path / "cache")
    encoder = load_encoder("pixels")
    name = f"imagefolder:{tmp_path / 'data'}"
    options = {"spec": "pixels", "cache": cache, "progress": False}
    before = dataset_features(encoder, name, "train", **options)
    # Relabel (same file count): a0 belongs to b, b0 to a.
    (tmp_path / "data/train/a/a0.png").rename(tmp_path / "data/train/b/a0.png")
    (tmp_path / "data/train/b/b0.png").rename(tmp_path / "data/train/a/b0.png")
    cached = dataset_features(encoder, name, "train", **options)
    fresh = dataset_features(encoder, name, "train", **{**options, "cache": None})
    assert not torch.equal(cached[0], before[0])
    torch.testing.assert_close(cached[0], fresh[0])
    assert torch.equal(cached[1], fresh[1])
    # The same relative imagefolder path from another directory is other data.
    _image_folder(tmp_path / "other" / "data", classes="ba")
    monkeypatch.chdir(tmp_path)
    here = dataset_features(encoder, "imagefolder:data", "train", **options)
    monkeypatch.chdir(tmp_path / "other")
    there = dataset_features(encoder, "imagefolder:data", "train", **options)
    assert not torch.equal(here[0], there[0])
    assert len(list((tmp_path / "cache").glob("*.safetensors"))) == 4


@pytest.mark.parametrize("batch_size, workers", [(4, 0), (1, 0), (4, 1)])
def test_raw_pixels_of_images_of_different_sizes_are_a_clear_error(tmp_path, batch_size,
                                                                    workers):
    _image_folder(tmp_path, sizes=((6, 6), (6, 7)))
    with pytest.raises(SeedzooError, match=r"differ in size \(\(3, 6, 6\) vs \(3, 7, 6\)\).*"
                                           r"resize the dataset.*encoder"):
        dataset_features(load_encoder("pixels"), f"imagefolder:{tmp_path}", "train",
                         spec="pixels", cache=None, progress=False, batch_size=batch_size,
                         num_workers=workers)


@pytest.mark.parametrize("device, message", [
    ("gpu0", r"'gpu0' is not a torch device; use cpu, cuda"),
    ("cuda", r"no CUDA GPU is visible here"),
    ("cuda:7", r"no CUDA GPU is visible here|only \d CUDA GPU"),
])
def test_a_device_that_does_not_exist_here_is_a_clear_error(device, message, monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    images = torch.utils.data.TensorDataset(torch.zeros(2, 4), torch.zeros(2))
    with pytest.raises(SeedzooError, match=message):
        extract_features(PixelEncoder(), images, device=device)


def test_a_cache_entry_altered_to_hold_nan_is_named_and_extracted_again(tmp_path):
    from safetensors.torch import save_file

    cache = FeatureCache(tmp_path)
    key = {"model": "m", "weights": "abc", "dataset": "digits", "split": "test"}
    assert cache.save(key, torch.full((3, 2), float("nan")), torch.arange(3)) is None  # never
    path = cache.save(key, torch.ones(3, 2), torch.arange(3))
    save_file({"features": torch.full((3, 2), float("nan")), "labels": torch.arange(3)},
              str(path))  # tampered
    with pytest.warns(UserWarning, match=rf"{path.name} hold NaN or infinite values.*altered"):
        assert cache.load(key) is None
