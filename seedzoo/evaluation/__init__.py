"""Measuring frozen encoders: datasets, features, k-NN, linear probe, few-shot, ONNX."""

from seedzoo.evaluation.datasets import fewshot_indices, get_dataset, list_datasets
from seedzoo.evaluation.latency import benchmark_latency, format_latency_table
from seedzoo.evaluation.onnx_export import export_onnx, read_onnx_metadata, validate_onnx
from seedzoo.evaluation.ort import OrtEncoder, create_session, session_options
from seedzoo.evaluation.quantize import compare_knn, quantize_int8
from seedzoo.evaluation.transforms import transform_for

__all__ = ["fewshot_indices", "get_dataset", "list_datasets", "transform_for",
           "OrtEncoder", "benchmark_latency", "compare_knn", "create_session", "export_onnx",
           "format_latency_table", "quantize_int8", "read_onnx_metadata", "session_options",
           "validate_onnx"]
