"""Measuring encoders: frozen features, k-NN, linear probe, few-shot, fine-tuning, a run's own
classifier, INT8 accuracy cost.

Encoders are torch modules (anything :func:`seedzoo.load` returns, or the raw-pixel baseline) or
ONNX files run by ONNX Runtime (:class:`seedzoo.deploy.OrtEncoder`). The deployment names this
module used to hold (``export_onnx``, ``OrtEncoder``, ``benchmark_latency``, ``quantize_int8``,
...) and the data names (``get_dataset``, ``transform_for``) are re-exported here unchanged.
"""

from seedzoo.data import (
                            class_balanced_indices,
                            get_dataset,
                            list_datasets,
                            transform_for,
)
from seedzoo.deploy import (
                            OrtEncoder,
                            benchmark_latency,
                            create_session,
                            export_onnx,
                            format_latency_table,
                            quantize_int8,
                            read_onnx_metadata,
                            session_options,
                            validate_onnx,
)
from seedzoo.evaluation.classifier import classifier_model, classifier_scores
from seedzoo.evaluation.features import FeatureCache, dataset_features, extract_features
from seedzoo.evaluation.finetune import FineTuneOptions, fine_tune, finetune_scores
from seedzoo.evaluation.int8 import compare_knn
from seedzoo.evaluation.knn import knn_classify, knn_scores
from seedzoo.evaluation.linear import LinearProbe, fewshot_probe, linear_probe
from seedzoo.evaluation.pixels import PixelEncoder, load_encoder
from seedzoo.evaluation.protocols import evaluate
from seedzoo.results import format_report, read_report, write_report
from seedzoo.zoo.pretrained import weights_fingerprint

__all__ = ["FeatureCache", "FineTuneOptions", "LinearProbe", "OrtEncoder", "PixelEncoder",
           "benchmark_latency", "class_balanced_indices", "classifier_model", "classifier_scores",
           "compare_knn", "create_session", "dataset_features", "evaluate", "export_onnx",
           "extract_features", "fewshot_probe", "fine_tune", "finetune_scores",
           "format_latency_table", "format_report", "get_dataset", "knn_classify", "knn_scores",
           "linear_probe", "list_datasets", "load_encoder", "quantize_int8", "read_onnx_metadata",
           "read_report", "session_options", "transform_for", "validate_onnx",
           "weights_fingerprint", "write_report"]
