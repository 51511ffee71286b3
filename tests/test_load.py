"""seedzoo.load: specs, pretrained=False, preprocessing that travels with weights, errors."""

import json

import pytest
import timm
import torch
from PIL import Image
from safetensors.torch import load_file
from zoo_helpers import (  # noqa: F401
    HUB_TOKEN,
    INPUT_SIZE,
    features,
    hf_cache,
    hub,
    save_in_timm_format,
    tiny_encoder,
)

import seedzoo
from seedzoo.errors import CheckpointError, ModelNotFoundError
from seedzoo.zoo import create_encoder, push, save_pretrained
from seedzoo.zoo.checkpoint_formats import backbone_state_dict


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


@pytest.mark.parametrize("spec", ["hf-hub:noslash", "hf-hub:org/name@", "hf-hub:a/b/c",
                                  "hf-hub:org/-name", "hf-hub:org/a..b", "hf-hub:org/name.git"])
def test_malformed_hub_ids(spec):
    with pytest.raises(ModelNotFoundError, match="is not a hub id"):
        seedzoo.load(spec)


def test_two_different_revisions_are_refused():
    with pytest.raises(ModelNotFoundError, match="keep one"):
        seedzoo.load("hf-hub:org/name@main", revision="v2")


def test_a_run_folder_loads_its_encoder(tmp_path):
    model = tiny_encoder()
    save_pretrained(model, tmp_path / "run/encoder")
    assert torch.equal(features(seedzoo.load(str(tmp_path / "run"))), features(model))
    assert type(seedzoo.load(str(tmp_path / "run"), pretrained=False)) is type(model)


def test_a_path_loads_and_a_wrong_type_is_refused(tmp_path):
    model = tiny_encoder()
    folder = save_pretrained(model, tmp_path / "enc")
    assert torch.equal(features(seedzoo.load(folder)), features(model))
    with pytest.raises(TypeError, match="a model spec \\(str\\), a path or a catalog ModelEntry"):
        seedzoo.load(42)


@pytest.mark.parametrize("model_args", [True, False], ids=["save_for_hf", "hub-repo-layout"])
def test_folders_in_timm_own_format_load_as_encoders(tmp_path, model_args):
    classifier, folder = save_in_timm_format(tmp_path / "timm", model_args=model_args)
    loaded = seedzoo.load(str(folder))
    reference = timm.create_model(f"local-dir:{folder}", pretrained=True, num_classes=0).eval()
    classifier.reset_classifier(0)
    assert torch.equal(features(loaded), features(reference))
    assert torch.equal(features(loaded), features(classifier))
    assert loaded.num_classes == 0 and "fc.weight" not in loaded.state_dict()


def test_a_pickled_timm_folder_is_refused_with_the_way_to_save_it(tmp_path):
    from timm.models import save_for_hf

    folder = tmp_path / "pickled"
    folder.mkdir()
    save_for_hf(timm.create_model("test_resnet"), folder, safe_serialization=False)
    with pytest.raises(CheckpointError, match=r"pickle.*safe_serialization=True"):
        seedzoo.load(folder)


def test_save_pretrained_leaves_the_classifier_out(tmp_path):
    classifier = timm.create_model("test_resnet", pretrained_cfg_overlay={"input_size": INPUT_SIZE})
    folder = save_pretrained(classifier, tmp_path / "enc")
    assert not any(key.startswith("fc.") for key in load_file(folder / "model.safetensors"))
    assert json.loads((folder / "config.json").read_text())["num_classes"] == 0
    loaded = seedzoo.load(folder)
    classifier.reset_classifier(0)
    assert torch.equal(features(loaded), features(classifier))


def test_a_weights_file_drops_the_classifier_its_pretrained_cfg_names():
    model = create_encoder("test_resnet", pretrained_cfg_overlay={"classifier": "last_linear"})
    checkpoint = {**model.state_dict(), "last_linear.weight": torch.zeros(10, 96),
                  "last_linear.bias": torch.zeros(10)}
    state, report = backbone_state_dict(checkpoint, model, source="ckpt")
    assert set(state) == set(model.state_dict())
    assert report.skipped == {"last_linear.weight": "classifier", "last_linear.bias": "classifier"}


@pytest.mark.parametrize("not_a_model", ["not a model", None, 3])
def test_transform_for_something_that_is_not_a_model_says_what_it_expects(not_a_model):
    with pytest.raises(TypeError, match="transform_for expects a model that carries its "
                                        "pretrained_cfg.*seedzoo.load"):
        seedzoo.transform_for(not_a_model)


@pytest.mark.parametrize("change, message", [
    ({"input_size": [3, 0, 32]}, r"input_size must be 3 positive integers"),
    ({"input_size": [3, 32]}, r"input_size must be 3 positive integers"),
    ({"std": [0.5, 0.0, 0.5]}, r"std must be positive"),
    ({"mean": [0.5, 0.5]}, r"mean must be 3 finite numbers"),
    ({"crop_pct": 0}, r"crop_pct must be in \(0, 1\]"),
])
def test_a_config_json_with_nonsense_preprocessing_is_refused_naming_the_file(tmp_path, change,
                                                                               message):
    folder = save_pretrained(tiny_encoder(), tmp_path / "enc")
    config = json.loads((folder / "config.json").read_text())
    config["pretrained_cfg"].update(change)
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=rf"enc/config\.json: pretrained_cfg {message}"):
        seedzoo.load(str(folder))


@pytest.mark.parametrize("content, message", [
    (b"", r"is empty \(0 bytes\)"),
    (b"hello world\n", r"is not a readable torch weights file"),
])
def test_an_empty_or_text_weights_file_is_not_called_a_pickle(tmp_path, content, message):
    path = tmp_path / "weights.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message):
        seedzoo.load(str(path), arch="test_resnet")


def test_a_weights_file_that_needs_pickled_objects_says_so(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save({"state_dict": {}, "args": Image.new("L", (1, 1))}, path)
    with pytest.raises(CheckpointError, match=r"needs arbitrary pickled objects"):
        seedzoo.load(str(path), arch="test_resnet")


@pytest.mark.parametrize("spec", ["", "   "])
def test_an_empty_spec_is_refused_not_read_as_the_current_folder(spec):
    with pytest.raises(ModelNotFoundError, match="The model spec is empty"):
        seedzoo.load(spec)


def test_an_unknown_timm_name_suggests_the_closest_names():
    with pytest.raises(ModelNotFoundError, match=r"timm has no architecture 'resnet1800'\. "
                                                 r"Similar timm names: .*\bresnet18\b"):
        seedzoo.load("timm:resnet1800")


def test_a_training_checkpoint_loads_with_its_run_preprocessing(tmp_path):
    """Not timm's default input size of the architecture: the run's 32 px crops and its
    normalisation, as the run's encoder/ folder carries them."""
    encoder = create_encoder("test_resnet")
    data = {"image_size": 32, "mean": [0.25, 0.25, 0.25], "std": [0.4, 0.4, 0.4],
            "crop_pct": 1.0, "view_options": {}}
    path = tmp_path / "checkpoint.pt"
    torch.save({"method": {f"encoder.{k}": v for k, v in encoder.state_dict().items()},
                "config": {"data": data}}, path)
    loaded = seedzoo.load(str(path), arch="test_resnet")
    assert loaded.pretrained_cfg["input_size"] == (3, 32, 32)
    assert tuple(loaded.pretrained_cfg["mean"]) == (0.25, 0.25, 0.25)
    assert seedzoo.transform_for(loaded)(Image.new("L", (28, 28))).shape == (3, 32, 32)


@pytest.mark.parametrize("not_a_model", ["not a model", None, torch.nn.Linear(2, 2)])
def test_save_pretrained_of_something_that_is_not_an_encoder_writes_nothing(tmp_path,
                                                                            not_a_model):
    with pytest.raises(TypeError, match="save_pretrained expects a timm encoder"):
        save_pretrained(not_a_model, tmp_path / "out")
    assert not (tmp_path / "out").exists()
