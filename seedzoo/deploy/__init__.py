"""Deployment: ONNX export with validation, ONNX Runtime sessions, INT8 quantization, latency."""

from seedzoo.deploy.latency import benchmark_latency, format_latency_table
from seedzoo.deploy.onnx_export import export_onnx, read_onnx_metadata, validate_onnx
from seedzoo.deploy.quantize import quantize_int8
from seedzoo.deploy.runtime import OrtEncoder, create_session, session_options

__all__ = ["OrtEncoder", "benchmark_latency", "create_session", "export_onnx",
           "format_latency_table", "quantize_int8", "read_onnx_metadata", "session_options",
           "validate_onnx"]
