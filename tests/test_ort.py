"""OrtEncoder: ORT features match torch, preprocessing from metadata, fingerprint, clear errors."""

from __future__ import annotations

import hashlib
import json

import onnx
import onnxruntime as ort
import pytest
import torch
from onnx_helpers import cosine, digits_batch, exported

from seedzoo.data.transforms import transform_for
from seedzoo.deploy.runtime import OrtEncoder, create_session, session_options
from seedzoo.errors import SeedzooError
from seedzoo.evaluation.features import dataset_features
from seedzoo.evaluation.knn import knn_scores

ARCH = "test_resnet"

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture
def resnet(tmp_path_factory):
    return exported(ARCH, tmp_path_factory)


def test_features_match_torch_on_real_images(resnet):
    model, report = resnet
    encoder = OrtEncoder(report.path)
    images = digits_batch(transform_for(encoder), 8)
    with torch.inference_mode():
        expected = model(digits_batch(transform_for(model), 8))
        features = encoder(images)
    assert isinstance(features, torch.Tensor) and features.dtype == torch.float32
    torch.testing.assert_close(features, expected, rtol=1e-4,
                               atol=1e-4 * float(expected.abs().max()))


def test_ort_backend_gives_the_torch_knn_through_the_feature_extractor(resnet):
    model, report = resnet
    encoder = OrtEncoder(report.path)
    results = {}
    for name, backend in (("torch", model), ("onnxruntime", encoder)):
        train = dataset_features(backend, "digits", "train", spec=name, limit=300, cache=None,
                                 batch_size=64, progress=False, device="cpu")
        test = dataset_features(backend, "digits", "test", spec=name, limit=150, cache=None,
                                batch_size=64, progress=False, device="cpu")
        results[name] = (train, test)
    (torch_train, torch_test), (ort_train, ort_test) = results["torch"], results["onnxruntime"]
    torch.testing.assert_close(ort_train[1], torch_train[1])
    assert cosine(ort_train[0], torch_train[0]).min() > 0.9999
    assert cosine(ort_test[0], torch_test[0]).min() > 0.9999
    top1 = {name: knn_scores(*train, *test, ks=(10,))["knn_top1@10"]
            for name, (train, test) in results.items()}
    # features agree to 1e-4, which can still flip one near-tied query of a random network
    # (seen with one thread): at most one of the 150 may differ
    assert abs(top1["onnxruntime"] - top1["torch"]) <= 1 / 150 + 1e-9


def test_encoder_is_a_module_with_pretrained_cfg_and_fingerprint(resnet):
    model, report = resnet
    encoder = OrtEncoder(report.path, threads=2)
    assert encoder.threads == 2
    assert encoder.eval() is encoder and encoder.to("cpu") is encoder
    assert list(encoder.parameters()) == []
    assert encoder.pretrained_cfg["input_size"] == tuple(model.pretrained_cfg["input_size"])
    assert encoder.num_features == model.num_features
    assert encoder.fingerprint == hashlib.sha256(report.path.read_bytes()).hexdigest()
    assert OrtEncoder(report.path).threads == torch.get_num_threads()


def test_inputs_of_any_layout_and_float_dtype_give_the_same_features(resnet):
    _, report = resnet
    encoder = OrtEncoder(report.path)
    images = torch.randn(3, 3, 160, 160)
    reference = encoder(images)
    torch.testing.assert_close(encoder(images.to(memory_format=torch.channels_last)), reference)
    torch.testing.assert_close(encoder(images.double()), reference)
    torch.testing.assert_close(encoder(images.requires_grad_()), reference)


def test_session_options_are_the_documented_ones():
    options = session_options(3)
    assert options.intra_op_num_threads == 3
    assert options.inter_op_num_threads == 1
    assert options.execution_mode == ort.ExecutionMode.ORT_SEQUENTIAL
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert options.enable_cpu_mem_arena and options.enable_mem_pattern
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "1"
    quiet = session_options(1, allow_spinning=False)
    assert quiet.get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_wrong_input_shape_is_a_clear_error(resnet):
    _, report = resnet
    with pytest.raises(SeedzooError, match=r"expects a float batch of shape \(B, 3, 160, 160\)"):
        OrtEncoder(report.path)(torch.randn(2, 3, 64, 64))


def test_bad_files_are_clear_errors(resnet, tmp_path):
    _, report = resnet
    with pytest.raises(SeedzooError, match="does not exist"):
        OrtEncoder(tmp_path / "missing.onnx")
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not a protobuf at all")
    with pytest.raises(SeedzooError, match="ONNX Runtime cannot load"):
        create_session(garbage)
    proto = onnx.load(str(report.path))
    del proto.metadata_props[:]
    bare = tmp_path / "no-metadata.onnx"
    onnx.save(proto, str(bare))
    with pytest.raises(SeedzooError, match="no preprocessing metadata.*seedzoo export"):
        OrtEncoder(bare)


def test_evaluation_reports_the_revision_recorded_in_the_file(resnet, tmp_path):
    from seedzoo.evaluation.protocols import model_identity

    _, report = resnet
    proto = onnx.load(str(report.path))
    onnx.helper.set_model_props(proto, {**{p.key: p.value for p in proto.metadata_props},
                                        "model_id": "hf-hub:org/student", "revision": "0123abcd"})
    pinned = tmp_path / "pinned.onnx"
    onnx.save(proto, str(pinned))
    identity = model_identity(OrtEncoder(pinned))
    assert identity == {"arch": ARCH, "revision": "0123abcd",
                        "source_weights_sha256": OrtEncoder(pinned).metadata["weights_sha256"]}
    assert model_identity(OrtEncoder(report.path))["revision"] is None  # none recorded


def test_metadata_that_disagrees_with_the_graph_is_refused_when_loading(resnet, tmp_path):
    _, report = resnet
    proto = onnx.load(str(report.path))
    props = {p.key: p.value for p in proto.metadata_props}
    onnx.helper.set_model_props(proto, {**props, "input_size": json.dumps([3, 99, 99])})
    edited = tmp_path / "edited.onnx"
    onnx.save(proto, str(edited))
    with pytest.raises(SeedzooError, match=r"metadata says input_size \(3, 99, 99\), but its "
                                           r"graph takes \(B, 3, \d+, \d+\)"):
        OrtEncoder(edited)
