"""seedzoo.load: specs, pretrained=False, preprocessing that travels with weights, errors."""

import pytest
import torch
from PIL import Image

import seedzoo
from seedzoo.errors import ModelNotFoundError
from seedzoo.zoo import push, save_pretrained
from zoo_helpers import HUB_TOKEN, INPUT_SIZE, features, hf_cache, hub, tiny_encoder  # noqa: F401


def test_folder_and_local_dir_specs(tmp_path):
    model = tiny_encoder()
    folder = save_pretrained(model, tmp_path / "enc")
    for spec in (str(folder), f"local-dir:{folder}"):
        loaded = seedzoo.load(spec)
        assert torch.equal(features(loaded), features(model)) and not loaded.training
    random = seedzoo.load(str(folder), pretrained=False)
    assert type(random) is type(model) and not torch.equal(features(random), features(model))


def test_transform_matches_the_published_preprocessing(hub, tmp_path):
    push(save_pretrained(tiny_encoder(), tmp_path / "enc"), "org/tiny", endpoint=hub.url,
         token=HUB_TOKEN)
    model = seedzoo.load("hf-hub:org/tiny", endpoint=hub.url)
    image = Image.fromarray((torch.rand(50, 40) * 255).byte().numpy(), mode="L")
    tensor = seedzoo.transform_for(model)(image)
    assert tuple(tensor.shape) == INPUT_SIZE
    assert model.pretrained_cfg["mean"] == pytest.approx((0.3, 0.3, 0.3))


def test_pretrained_false_from_a_hub_fetches_only_the_config(hub, tmp_path):
    push(save_pretrained(tiny_encoder(), tmp_path / "enc"), "org/tiny", endpoint=hub.url,
         token=HUB_TOKEN)
    model = seedzoo.load("hf-hub:org/tiny", endpoint=hub.url, pretrained=False)
    assert model.pretrained_cfg["input_size"] == list(INPUT_SIZE)
    fetched = [path for method, path in hub.requests if method == "GET" and "/resolve/" in path]
    assert fetched and all(path.endswith("/config.json") for path in fetched)


@pytest.mark.parametrize("spec, hint", [
    ("resnet18", "use timm:resnet18"),
    ("someone/model", "use hf-hub:someone/model"),
    ("./no/such/folder", "an existing folder or weights file"),
])
def test_unknown_specs_say_what_would_work(spec, hint):
    with pytest.raises(ModelNotFoundError, match=hint):
        seedzoo.load(spec)


@pytest.mark.parametrize("spec", ["hf-hub:noslash", "hf-hub:org/name@", "hf-hub:a/b/c"])
def test_malformed_hub_ids(spec):
    with pytest.raises(ModelNotFoundError, match="is not a hub id"):
        seedzoo.load(spec)


def test_two_different_revisions_are_refused():
    with pytest.raises(ModelNotFoundError, match="keep one"):
        seedzoo.load("hf-hub:org/name@main", revision="v2")
