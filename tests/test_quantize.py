"""Static INT8 quantization: a calibrated, self-describing QDQ file; its k-NN next to fp32's."""

from __future__ import annotations

import onnx
import pytest
from onnx_helpers import cosine, digits_batch, exported

from seedzoo.data.transforms import transform_for
from seedzoo.deploy.quantize import ImageCalibrationReader, quantize_int8
from seedzoo.deploy.runtime import OrtEncoder
from seedzoo.errors import SeedzooError
from seedzoo.evaluation.int8 import compare_knn

ARCH = "test_resnet"

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def quantized(tmp_path_factory):
    _, report = exported(ARCH, tmp_path_factory)
    out = tmp_path_factory.mktemp("int8") / "model.int8.onnx"
    return report, quantize_int8(report.path, out, calib_dataset="digits", calib_size=48)


def test_int8_file_is_qdq_per_channel_and_describes_itself(quantized):
    fp32_report, report = quantized
    proto = onnx.load(report.path)
    ops = {node.op_type for node in proto.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    weight_scales = [t for t in proto.graph.initializer if t.name.endswith("_scale") and t.dims]
    assert weight_scales, "per-channel weights have one scale per output channel"
    assert report.size_bytes < report.fp32_size_bytes
    int8, fp32 = OrtEncoder(report.path), OrtEncoder(fp32_report.path)
    assert int8.pretrained_cfg == fp32.pretrained_cfg
    assert int8.metadata["fp32_sha256"] == fp32.fingerprint
    assert "per-channel" in int8.metadata["quantization"]
    assert int8.metadata["calibration"] == "digits train, 48 images, seed 0"


def test_int8_features_stay_close_to_fp32(quantized):
    fp32_report, report = quantized
    int8, fp32 = OrtEncoder(report.path), OrtEncoder(fp32_report.path)
    images = digits_batch(transform_for(fp32), 8)
    assert cosine(int8(images), fp32(images)).min() > 0.99


def test_knn_of_int8_next_to_fp32(quantized):
    fp32_report, report = quantized
    result = compare_knn(fp32_report.path, report.path, "digits", k=10, train_limit=300,
                         test_limit=150)
    assert result["train_samples"] == 300 and result["test_samples"] == 150
    assert result["fp32_top1"] > 20  # 10 classes: well above chance even with random weights
    assert abs(result["int8_minus_fp32_points"]) < 10
    assert result["int8_minus_fp32_points"] == pytest.approx(
        result["int8_top1"] - result["fp32_top1"])


def test_calibration_reader_yields_seeded_batches_then_none():
    reader = ImageCalibrationReader("digits", _tiny_transform(), "input", calib_size=20,
                                    batch_size=8)
    sizes = []
    while (batch := reader.get_next()) is not None:
        sizes.append(batch["input"].shape[0])
    assert sizes == [8, 8, 4]
    again = ImageCalibrationReader("digits", _tiny_transform(), "input", calib_size=20,
                                   batch_size=8)
    assert again.indices == reader.indices


def _tiny_transform():
    from torchvision import transforms

    return transforms.ToTensor()


def test_bad_quantization_requests_are_refused(quantized, tmp_path):
    fp32_report, report = quantized
    with pytest.raises(SeedzooError, match="already quantized"):
        quantize_int8(report.path, tmp_path / "twice.onnx", calib_dataset="digits")
    with pytest.raises(SeedzooError, match="Calibration size must be between 1 and"):
        quantize_int8(fp32_report.path, tmp_path / "big.onnx", calib_dataset="digits",
                      calib_size=10**6)
    assert list(tmp_path.iterdir()) == []


def test_the_int8_copy_never_overwrites_its_fp32_source(quantized):
    fp32_report, _ = quantized
    before = fp32_report.path.read_bytes()
    with pytest.raises(SeedzooError, match="would overwrite its fp32 source"):
        quantize_int8(fp32_report.path, fp32_report.path, calib_dataset="digits", calib_size=8)
    assert fp32_report.path.read_bytes() == before
