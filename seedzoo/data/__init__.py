"""Images in: datasets, preprocessing transforms and seeded subsets, for training and evaluation."""

from seedzoo.data.datasets import get_dataset, list_datasets
from seedzoo.data.subsets import (
    class_balanced_indices,
    fraction_label,
    holdout_split,
    indices_digest,
    subset_indices,
)
from seedzoo.data.transforms import ToRGB, data_config_for, transform_for

__all__ = ["ToRGB", "class_balanced_indices", "data_config_for", "fraction_label", "get_dataset",
           "holdout_split", "indices_digest", "list_datasets", "subset_indices", "transform_for"]
