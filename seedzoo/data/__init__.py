"""Images in: datasets, preprocessing transforms and seeded subsets, for training and evaluation."""

from seedzoo.data.datasets import get_dataset, list_datasets
from seedzoo.data.subsets import class_balanced_indices, holdout_split, subset_indices
from seedzoo.data.transforms import ToRGB, data_config_for, transform_for

__all__ = ["ToRGB", "class_balanced_indices", "data_config_for", "get_dataset", "holdout_split",
           "list_datasets", "subset_indices", "transform_for"]
