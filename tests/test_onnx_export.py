"""ONNX export: dynamo graph, checker, numerical validation on real images, self-description."""

from __future__ import annotations

import shutil

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from onnx_helpers import digits_batch, exported

from seedzoo.data.transforms import data_config_for, transform_for
from seedzoo.deploy.onnx_export import (
    DEFAULT_OPSET,
    INPUT_NAME,
    OUTPUT_NAME,
    export_metadata,
    export_onnx,
    model_source,
    read_onnx_metadata,
    validate_onnx,
)
from seedzoo.deploy.runtime import OrtEncoder
from seedzoo.errors import DatasetNotFoundError, SeedzooError
from seedzoo.zoo.pretrained import weights_fingerprint

ARCHS = ["test_efficientnet", "test_vit"]

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.mark.parametrize("arch", ARCHS)
def test_export_is_checked_and_validated_at_batch_1_and_8(arch, tmp_path_factory):
    _, report = exported(arch, tmp_path_factory)
    assert report.path.is_file()
    assert not list(report.path.parent.glob("*.tmp"))  # the temporary file was renamed
    assert [c.batch_size for c in report.validation.checks] == [1, 8]
    assert report.validation.dataset == "digits"
    assert report.validation.min_cosine > 0.9999
    assert report.validation.max_abs_error < 1e-3
    proto = onnx.load(str(report.path))
    onnx.checker.check_model(proto, full_check=True)
    assert {o.domain: o.version for o in proto.opset_import}[""] == DEFAULT_OPSET
    (graph_input,), (graph_output,) = proto.graph.input, proto.graph.output
    assert graph_input.name == INPUT_NAME and graph_output.name == OUTPUT_NAME
    assert report.metadata["output"] == "features" and "num_classes" not in report.metadata
    assert graph_input.type.tensor_type.shape.dim[0].dim_param  # symbolic batch
    assert graph_output.type.tensor_type.shape.dim[0].dim_param


@pytest.mark.parametrize("arch", ARCHS)
def test_metadata_round_trips_into_the_same_preprocessing(arch, tmp_path_factory):
    model, report = exported(arch, tmp_path_factory)
    meta = read_onnx_metadata(report.path)
    config = data_config_for(model)
    assert meta["input_size"] == list(config["input_size"])
    assert meta["mean"] == pytest.approx(list(config["mean"]))
    assert meta["std"] == pytest.approx(list(config["std"]))
    assert meta["interpolation"] == config["interpolation"]
    assert meta["crop_pct"] == pytest.approx(config["crop_pct"])
    assert meta["crop_mode"] == config.get("crop_mode", "center")
    assert meta["architecture"] == arch and meta["model_id"] == f"timm:{arch}"
    assert meta["weights_sha256"] == weights_fingerprint(model)
    assert meta["num_features"] == model.num_features
    encoder = OrtEncoder(report.path)
    assert data_config_for(encoder) == config
    torch.testing.assert_close(digits_batch(transform_for(encoder), 3),
                               digits_batch(transform_for(model), 3), rtol=0, atol=0)


def test_metadata_gives_the_width_of_the_output_not_num_features():
    import seedzoo

    model = seedzoo.load("timm:mobilenetv3_small_050")     # num_features 288, outputs 1024
    assert model.num_features == 288
    assert export_metadata(model)["num_features"] == "1024"


@pytest.mark.parametrize("arch", ARCHS)
def test_dynamic_batch_runs_at_1_and_5(arch, tmp_path_factory):
    model, report = exported(arch, tmp_path_factory)
    encoder = OrtEncoder(report.path)
    for batch_size in (1, 5):
        images = torch.randn(batch_size, *data_config_for(model)["input_size"])
        with torch.inference_mode():
            expected = model(images)
        features = encoder(images)
        assert features.shape == (batch_size, model.num_features)
        torch.testing.assert_close(features, expected, rtol=1e-4,
                                   atol=1e-4 * float(expected.abs().max()))


def _tampered_copy(path, tmp_path):
    """A copy of ``path`` whose largest weight tensor is scaled by 1.5."""
    proto = onnx.load(str(path))
    largest = max(proto.graph.initializer, key=lambda t: int(np.prod(t.dims)))
    weights = numpy_helper.to_array(largest)
    largest.CopyFrom(numpy_helper.from_array(weights * 1.5, largest.name))
    copy = tmp_path / "tampered.onnx"
    onnx.save(proto, str(copy))
    return copy


def test_hub_models_record_their_id_and_commit(tmp_path_factory):
    import seedzoo

    model = seedzoo.load("timm:test_resnet")
    plain = export_metadata(model)  # timm's default hub id names weights this model lacks
    assert "model_id" not in plain and "revision" not in plain
    model.pretrained_cfg = {**model.pretrained_cfg, "hf_hub_id": "seedzoo/tiny@0123abcd"}
    assert model_source(model) == ("hf-hub:seedzoo/tiny", "0123abcd")
    meta = export_metadata(model)
    assert (meta["model_id"], meta["revision"]) == ("hf-hub:seedzoo/tiny", "0123abcd")
    assert export_metadata(model, model_id="mine", revision="v2")["revision"] == "v2"


def test_tampered_weight_fails_validation(tmp_path, tmp_path_factory):
    model, report = exported("test_efficientnet", tmp_path_factory)
    with pytest.raises(SeedzooError, match="does not reproduce the torch model on digits"):
        validate_onnx(_tampered_copy(report.path, tmp_path), model, dataset="digits")


def test_mismatched_preprocessing_metadata_fails_validation(tmp_path, tmp_path_factory):
    model, report = exported("test_vit", tmp_path_factory)
    proto = onnx.load(str(report.path))
    for prop in proto.metadata_props:
        if prop.key == "mean":
            prop.value = "[0.485, 0.456, 0.406]"
    copy = tmp_path / "wrong-mean.onnx"
    onnx.save(proto, str(copy))
    with pytest.raises(SeedzooError, match=r"preprocessing metadata does not match.*mean"):
        validate_onnx(copy, model, dataset="digits")


def test_failed_validation_is_an_error_and_leaves_no_file(tmp_path):
    import seedzoo

    model = seedzoo.load("timm:test_resnet")
    out = tmp_path / "model.onnx"
    with pytest.raises(SeedzooError, match=r"lowest cosine similarity .* \(required >= 1.1\)"):
        export_onnx(model, out, validate_dataset="digits", min_cosine=1.1)
    assert list(tmp_path.iterdir()) == []


def test_validation_needs_a_dataset_on_disk(tmp_path, tmp_path_factory):
    model, report = exported("test_efficientnet", tmp_path_factory)
    with pytest.raises(DatasetNotFoundError, match="--validate-dataset digits"):
        validate_onnx(report.path, model, dataset="mnist", data_root=tmp_path)


def test_unexportable_requests_are_refused(tmp_path):
    import seedzoo

    model = seedzoo.load("timm:test_resnet")
    with pytest.raises(SeedzooError, match="Opset 13 is too old"):
        export_onnx(model, tmp_path / "m.onnx", opset=13)
    model.preprocess = lambda image: image
    with pytest.raises(SeedzooError, match="own preprocess"):
        export_onnx(model, tmp_path / "m.onnx")
    with pytest.raises(SeedzooError, match="not a timm encoder"):
        export_onnx(torch.nn.Linear(2, 2), tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []


def test_read_metadata_of_a_missing_or_broken_file(tmp_path, tmp_path_factory):
    with pytest.raises(SeedzooError, match="does not exist"):
        read_onnx_metadata(tmp_path / "none.onnx")
    _, report = exported("test_efficientnet", tmp_path_factory)
    broken = tmp_path / "broken.onnx"
    shutil.copyfile(report.path, broken)
    broken.write_bytes(broken.read_bytes()[:1000])
    with pytest.raises(SeedzooError):
        read_onnx_metadata(broken)
