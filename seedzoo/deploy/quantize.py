"""Static INT8 quantization of an exported encoder, calibrated on real images.

``quantize_int8("model.onnx", "model.int8.onnx", calib_dataset="fashion-mnist")`` runs ONNX
Runtime's ``quantize_static`` in QDQ format: weights int8 per output channel, activations uint8
per tensor with MinMax ranges collected on ``calib_size`` training images of a registry dataset,
preprocessed exactly as the fp32 file's metadata says. The INT8 file keeps the fp32 file's
metadata (so it describes itself too) and records how it was quantized.

Choices (measured on an AVX2 CPU without VNNI; figures in docs/design-notes.md, quantize.py):

- ``reduce_range=True`` (7-bit weights): without VNNI, x86 INT8 kernels multiply u8 x s8 pairs
  into saturating 16-bit sums; full-range weights lost accuracy (cosine to fp32 features on
  held-out images) where reduced range kept it, at the same speed. Pass
  ``reduce_range=False`` only for VNNI/AMX targets.
- No ``quant_pre_process``: the dynamo-exported graph already has BatchNorm folded and shapes
  inferred; pre-processing changed neither accuracy nor speed.
- Depthwise convolutions (MobileNet, EfficientNet) gain little from INT8 on AVX2 and pay for
  the extra quantize/dequantize steps, so INT8 can be slower than fp32 there; the latency
  benchmark reports it as measured.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from seedzoo.data.datasets import get_dataset
from seedzoo.data.transforms import transform_for
from seedzoo.deploy.runtime import OrtEncoder
from seedzoo.errors import SeedzooError
from seedzoo.files import atomic_write_path

DEFAULT_CALIB_SIZE = 256


class _DropPreprocessingAdvice(logging.Filter):
    """ORT logs a 'consider pre-processing' warning on every call; we skip it on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()


class ImageCalibrationReader:
    """Batches of preprocessed images for ORT's calibrator (its ``CalibrationDataReader`` protocol).

    ``calib_size`` images are drawn without replacement (seeded) from the ``split`` of
    ``dataset`` and transformed with ``transform``; ``get_next`` yields ``{input_name: batch}``.
    """

    def __init__(self, dataset: str, transform, input_name: str, *, calib_size: int,
                 batch_size: int = 16, split: str = "train", seed: int = 0,
                 data_root: str | os.PathLike | None = None):
        images = get_dataset(dataset, split, root=data_root, transform=transform)
        if not 0 < calib_size <= len(images):
            raise SeedzooError(f"Calibration size must be between 1 and {len(images)} (the "
                               f"{split} split of {dataset}), got {calib_size}.")
        picks = np.random.default_rng(seed).choice(len(images), calib_size, replace=False)
        self.images, self.input_name, self.batch_size = images, input_name, batch_size
        self.indices = [int(i) for i in np.sort(picks)]
        self.rewind()

    def rewind(self) -> None:
        self._position = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        chunk = self.indices[self._position:self._position + self.batch_size]
        if not chunk:
            return None
        self._position += len(chunk)
        batch = torch.stack([self.images[i][0] for i in chunk])
        return {self.input_name: batch.numpy()}


@dataclass
class QuantizationReport:
    """What :func:`quantize_int8` wrote."""

    path: str
    source: str
    calib_dataset: str
    calib_size: int
    seconds: float
    size_bytes: int
    fp32_size_bytes: int
    settings: str

    def to_dict(self) -> dict:
        return asdict(self)


def quantize_int8(onnx_path: str | os.PathLike, out_path: str | os.PathLike, *,
                  calib_dataset: str = "fashion-mnist", calib_size: int = DEFAULT_CALIB_SIZE,
                  data_root: str | os.PathLike | None = None, batch_size: int = 16,
                  per_channel: bool = True, reduce_range: bool = True,
                  seed: int = 0) -> QuantizationReport:
    """Write a static INT8 (QDQ) copy of the fp32 file ``onnx_path`` to ``out_path``."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    if Path(out_path).resolve() == Path(onnx_path).resolve():
        raise SeedzooError(f"The INT8 copy would overwrite its fp32 source {onnx_path}; give "
                           "another output path (e.g. model.int8.onnx).")
    fp32 = OrtEncoder(onnx_path)  # checks the file and rebuilds its preprocessing
    if "quantization" in fp32.metadata:
        raise SeedzooError(f"{onnx_path} is already quantized ({fp32.metadata['quantization']}); "
                           "quantize the fp32 export.")
    reader = ImageCalibrationReader(calib_dataset, transform_for(fp32), fp32.input_name,
                                    calib_size=calib_size, batch_size=batch_size, seed=seed,
                                    data_root=data_root)
    settings = (f"static QDQ, weights int8 {'per-channel' if per_channel else 'per-tensor'}"
                f"{' reduce_range' if reduce_range else ''}, activations uint8 per-tensor, "
                "MinMax calibration")
    out_path = Path(out_path)
    start = time.perf_counter()
    advice_filter = _DropPreprocessingAdvice()
    logging.getLogger().addFilter(advice_filter)
    try:
        with atomic_write_path(out_path) as tmp:
            quantize_static(str(fp32.path), str(tmp), reader, quant_format=QuantFormat.QDQ,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            per_channel=per_channel, reduce_range=reduce_range,
                            calibrate_method=CalibrationMethod.MinMax)
            model = onnx.load(str(tmp))
            fp32_proto = onnx.load(str(fp32.path), load_external_data=False)
            props = {prop.key: prop.value for prop in fp32_proto.metadata_props}
            props.update({"quantization": settings,
                          "calibration": f"{calib_dataset} train, {calib_size} images, seed {seed}",
                          "fp32_sha256": fp32.fingerprint})
            del model.metadata_props[:]
            onnx.helper.set_model_props(model, props)
            onnx.save(model, str(tmp))
    except Exception as error:  # onnxruntime.quantization raises assorted error types
        raise SeedzooError(f"INT8 quantization of {onnx_path} failed: {type(error).__name__}: "
                           f"{error}") from error
    finally:
        logging.getLogger().removeFilter(advice_filter)
    return QuantizationReport(path=str(out_path), source=str(fp32.path),
                              calib_dataset=calib_dataset, calib_size=calib_size,
                              seconds=time.perf_counter() - start,
                              size_bytes=out_path.stat().st_size,
                              fp32_size_bytes=fp32.path.stat().st_size, settings=settings)
