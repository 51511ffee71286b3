"""The accuracy cost of an INT8 copy: k-NN of an fp32 ONNX file and of its quantized copy."""

from __future__ import annotations

import os

from seedzoo.deploy.runtime import OrtEncoder
from seedzoo.evaluation.features import dataset_features
from seedzoo.evaluation.knn import knn_scores


def compare_knn(fp32_path: str | os.PathLike, int8_path: str | os.PathLike, dataset: str, *,
                k: int = 20, train_limit: int | None = 2000, test_limit: int | None = 1000,
                data_root: str | os.PathLike | None = None, seed: int = 0,
                batch_size: int = 64, progress: bool = False) -> dict:
    """k-NN top-1 (%) on ``dataset`` of the fp32 file and of its INT8 copy, on the same images.

    Features are extracted with ONNX Runtime from seeded subsets (``train_limit`` bank images,
    ``test_limit`` queries; ``None`` for a whole split) and classified by
    :func:`~seedzoo.evaluation.knn.knn_scores` (weighted k-NN, cosine, temperature 0.07).
    """
    result = {"dataset": dataset, "k": k, "seed": seed}
    for precision, path in (("fp32", fp32_path), ("int8", int8_path)):
        encoder = OrtEncoder(path)
        splits = {}
        for split, limit in (("train", train_limit), ("test", test_limit)):
            splits[split] = dataset_features(
                encoder, dataset, split, spec=str(path), root=data_root, limit=limit, seed=seed,
                cache=None, fingerprint=encoder.fingerprint, batch_size=batch_size,
                progress=progress, desc=f"{precision} {dataset} {split}")
        (train_x, train_y), (test_x, test_y) = splits["train"], splits["test"]
        scores = knn_scores(train_x, train_y, test_x, test_y, ks=(k,))
        result[f"{precision}_top1"] = 100 * scores[f"knn_top1@{k}"]
        result["train_samples"], result["test_samples"] = len(train_y), len(test_y)
    result["int8_minus_fp32_points"] = result["int8_top1"] - result["fp32_top1"]
    return result
