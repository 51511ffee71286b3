"""ONNX Runtime inference for exported encoders: sessions and :class:`OrtEncoder`.

An ``.onnx`` file written by :func:`seedzoo.evaluation.export_onnx` describes itself: its
``metadata_props`` hold the preprocessing (input size, mean, std, interpolation, crop) and
where the weights came from. :class:`OrtEncoder` reads them back into a timm-style
``pretrained_cfg``, so ``seedzoo.transform_for(OrtEncoder("model.onnx"))`` builds the same
transform as for the torch model, and the encoder is a drop-in for feature extraction.

Session options (:func:`session_options`), chosen deliberately (the measurements are in
docs/design-notes.md, runtime.py):

- ``intra_op_num_threads``: the thread count asked for, by default torch's
  (``torch.get_num_threads()``), so ORT and torch compete on equal terms in one process;
- ``inter_op_num_threads=1`` and ``ORT_SEQUENTIAL``: these encoders are a single chain of ops,
  parallel branches would only add thread hand-offs;
- ``ORT_ENABLE_ALL``: all graph fusions plus the CPU's blocked (NCHWc) conv layout;
- CPU memory arena and memory pattern on (ORT's defaults, kept on purpose): turning either off
  was slower;
- thread spinning left on (ORT's default): lowest latency when the cores are the model's. On an
  oversubscribed machine ``allow_spinning=False`` was faster; pass it there.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from seedzoo.errors import SeedzooError

# metadata_props keys whose values are JSON (numbers, lists); every other value is plain text.
JSON_METADATA_KEYS = ("input_size", "mean", "std", "crop_pct", "num_features", "num_classes",
                      "classes")
# The metadata an OrtEncoder needs to rebuild the model's preprocessing.
PREPROCESSING_KEYS = ("input_size", "mean", "std", "interpolation", "crop_pct", "crop_mode")


def decode_metadata(props: dict[str, str]) -> dict:
    """``metadata_props`` (all strings) as Python values: JSON keys parsed, the rest as text."""
    decoded = {}
    for key, value in props.items():
        if key in JSON_METADATA_KEYS:
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                raise SeedzooError(f"ONNX metadata {key!r} is not valid JSON: {value!r}. "
                                   "Re-export the model with `seedzoo export`.") from None
        decoded[key] = value
    return decoded


def pretrained_cfg_from_metadata(metadata: dict, source: str = "the ONNX file") -> dict:
    """The timm ``pretrained_cfg`` recorded in an exported file: its preprocessing, plus the
    source's ``revision`` when the file names one (read by evaluation reports)."""
    missing = [key for key in PREPROCESSING_KEYS if key not in metadata]
    if missing:
        raise SeedzooError(
            f"{source} carries no preprocessing metadata ({', '.join(missing)} missing), so its "
            "input transform is unknown. Export it with `seedzoo export` (or "
            "seedzoo.evaluation.export_onnx), which records input size, mean, std and crop.")
    cfg = {key: metadata[key] for key in PREPROCESSING_KEYS}
    cfg["input_size"] = tuple(cfg["input_size"])
    cfg["mean"], cfg["std"] = tuple(cfg["mean"]), tuple(cfg["std"])
    cfg["architecture"] = metadata.get("architecture", "onnx")
    cfg["num_classes"] = 0
    if metadata.get("revision"):
        cfg["revision"] = metadata["revision"]
    return cfg


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def session_options(threads: int | None = None, *, allow_spinning: bool = True):
    """The ``onnxruntime.SessionOptions`` seedzoo runs encoders with (see the module docstring)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = int(threads or torch.get_num_threads())
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.enable_cpu_mem_arena = True
    options.enable_mem_pattern = True
    options.add_session_config_entry("session.intra_op.allow_spinning",
                                     "1" if allow_spinning else "0")
    options.log_severity_level = 3  # errors only (ORT warns about unused initializers)
    return options


def create_session(path: str | os.PathLike, threads: int | None = None, *,
                   allow_spinning: bool = True):
    """An ``onnxruntime.InferenceSession`` on CPU for ``path``, with a clear error for bad files."""
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise SeedzooError(f"ONNX file {path} does not exist; create it with `seedzoo export`.")
    try:
        return ort.InferenceSession(str(path), session_options(threads,
                                                               allow_spinning=allow_spinning),
                                    providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own pybind error types
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise SeedzooError(f"ONNX Runtime cannot load {path} ({type(error).__name__}: "
                           f"{first_line}). Is it a complete .onnx file? Re-export it.") from None


class OrtEncoder(nn.Module):
    """An exported encoder run by ONNX Runtime, usable where a torch encoder is expected.

    ``encoder(batch)`` takes a float tensor ``(B, C, H, W)`` and returns the ``(B, D)``
    features as a torch tensor (or the ``(B, num_classes)`` logits of a file exported with its
    classifier: then ``num_classes`` > 0 and ``classes`` names them, as the metadata records).
    ``pretrained_cfg`` is rebuilt from the file's metadata (so
    ``seedzoo.transform_for(encoder)`` works), ``metadata`` holds all of it, and
    ``fingerprint`` is the sha256 of the file. ``threads`` defaults to torch's thread count.

    The call adds as little as possible to ``InferenceSession.run``: the input's memory is
    handed to ORT as a NumPy view (``.to`` and ``ascontiguousarray`` are no-ops for contiguous
    float32 CPU tensors) and the output array is wrapped, not copied.
    """

    def __init__(self, path: str | os.PathLike, threads: int | None = None, *,
                 allow_spinning: bool = True):
        super().__init__()
        self.path = Path(path)
        self.session = create_session(self.path, threads, allow_spinning=allow_spinning)
        self.threads = self.session.get_session_options().intra_op_num_threads
        meta = self.session.get_modelmeta()
        self.metadata = decode_metadata(dict(meta.custom_metadata_map))
        self.pretrained_cfg = pretrained_cfg_from_metadata(self.metadata, str(self.path))
        (model_input,) = self.session.get_inputs()
        self.input_name = model_input.name
        graph_size = list(model_input.shape[1:])
        expected = list(self.pretrained_cfg["input_size"])
        if len(graph_size) != len(expected) or any(
                isinstance(g, int) and g != e for g, e in zip(graph_size, expected, strict=False)):
            raise SeedzooError(
                f"{self.path}: its metadata says input_size {tuple(expected)}, but its graph "
                f"takes (B, {', '.join(map(str, graph_size))}): the file was edited or mixed "
                "up. Export it again with seedzoo export.")
        self.output_name = self.session.get_outputs()[0].name
        self.num_features = self.metadata.get("num_features",
                                              self.session.get_outputs()[0].shape[-1])
        self.num_classes = self.metadata.get("num_classes", 0)
        self.classes = self.metadata.get("classes")
        self.fingerprint = file_sha256(self.path)

    @property
    def default_cfg(self) -> dict:  # older timm helpers read this name
        return self.pretrained_cfg

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        array = np.ascontiguousarray(images.detach().to("cpu", torch.float32).numpy())
        try:
            (features,) = self.session.run((self.output_name,), {self.input_name: array})
        except Exception as error:  # shape / rank mismatches come back as ORT exceptions
            raise SeedzooError(
                f"{self.path.name} expects a float batch of shape (B, "
                f"{', '.join(map(str, self.pretrained_cfg['input_size']))}); got "
                f"{tuple(images.shape)} ({type(error).__name__}). Preprocess images with "
                "seedzoo.transform_for(encoder).") from None
        return torch.from_numpy(features)

    def extra_repr(self) -> str:
        return (f"path={str(self.path)!r}, architecture={self.pretrained_cfg['architecture']!r}, "
                f"threads={self.threads}, fingerprint={self.fingerprint[:12]}")
