"""Measuring frozen encoders: datasets, features, k-NN, linear probe, few-shot, ONNX."""

from seedzoo.evaluation.datasets import fewshot_indices, get_dataset, list_datasets
from seedzoo.evaluation.transforms import transform_for

__all__ = ["fewshot_indices", "get_dataset", "list_datasets", "transform_for"]
