"""Measuring frozen encoders: datasets, features, k-NN, linear probe, few-shot, ONNX."""

from seedzoo.evaluation.datasets import fewshot_indices, get_dataset, list_datasets
from seedzoo.evaluation.encoders import PixelEncoder, load_encoder
from seedzoo.evaluation.features import (FeatureCache, dataset_features, extract_features,
                                         weights_fingerprint)
from seedzoo.evaluation.knn import knn_classify, knn_scores
from seedzoo.evaluation.latency import benchmark_latency, format_latency_table
from seedzoo.evaluation.linear import LinearProbe, fewshot_probe, linear_probe
from seedzoo.evaluation.onnx_export import export_onnx, read_onnx_metadata, validate_onnx
from seedzoo.evaluation.ort import OrtEncoder, create_session, session_options
from seedzoo.evaluation.protocols import evaluate
from seedzoo.evaluation.quantize import compare_knn, quantize_int8
from seedzoo.evaluation.report import format_report, read_report, write_report
from seedzoo.evaluation.transforms import transform_for

__all__ = ["fewshot_indices", "get_dataset", "knn_classify", "knn_scores", "list_datasets",
           "transform_for",
           "FeatureCache", "LinearProbe", "PixelEncoder", "dataset_features", "evaluate",
           "extract_features", "fewshot_probe", "format_report", "linear_probe", "load_encoder",
           "read_report", "weights_fingerprint", "write_report",
           "OrtEncoder", "benchmark_latency", "compare_knn", "create_session", "export_onnx",
           "format_latency_table", "quantize_int8", "read_onnx_metadata", "session_options",
           "validate_onnx"]
