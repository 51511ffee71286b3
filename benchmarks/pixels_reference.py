"""Raw-pixel baselines on Fashion-MNIST: scikit-learn's references next to seedzoo's protocols.

All rows use the same 60,000 training and 10,000 test images as raw 784-pixel vectors:

- scikit-learn brute-force k-NN, cosine, k 20, majority vote (the reference seedzoo's
  uniform k-NN must reproduce) and Euclidean, k 5;
- seedzoo's ``knn_classify``: uniform k 20 (with its agreement with scikit-learn) and the
  weighted vote (k 20, T 0.07) that ``seedzoo eval`` reports as ``knn_top1@20``;
- with ``--linear``: scikit-learn ``LogisticRegression`` (C 1, lbfgs) against seedzoo's
  linear probe, both on standardised pixels (slow: minutes to tens of minutes on 2 cores).

    python benchmarks/pixels_reference.py [--linear] [--dataset fashion-mnist]
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def pixels(dataset: str, split: str, root=None) -> tuple[np.ndarray, np.ndarray]:
    """Flattened raw pixels (float32, 0-255) and labels of an in-memory image dataset."""
    from seedzoo.data.datasets import dataset_labels, get_dataset

    data = get_dataset(dataset, split, root=root)
    if not hasattr(data, "images"):
        raise SystemExit(f"{dataset} is not held in memory as an array; use fashion-mnist, "
                         "mnist or digits.")
    return data.images.reshape(len(data), -1).astype(np.float32), dataset_labels(data)


def timed(function):
    start = time.perf_counter()
    result = function()
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="fashion-mnist",
                        help="fashion-mnist (default), mnist or digits")
    parser.add_argument("--data-root", help="dataset root (see seedzoo eval --help)")
    parser.add_argument("--jobs", type=int, default=2, help="scikit-learn n_jobs (default 2)")
    parser.add_argument("--linear", action="store_true",
                        help="also compare LogisticRegression with seedzoo's linear probe")
    args = parser.parse_args()

    from sklearn.neighbors import KNeighborsClassifier

    from seedzoo.evaluation import knn_classify

    train_x, train_y = pixels(args.dataset, "train", args.data_root)
    test_x, test_y = pixels(args.dataset, "test", args.data_root)
    print(f"{args.dataset} raw pixels: train {train_x.shape}, test {test_x.shape}")
    rows = []

    def sklearn_knn(k, metric):
        model = KNeighborsClassifier(n_neighbors=k, metric=metric, algorithm="brute",
                                     n_jobs=args.jobs)
        return model.fit(train_x, train_y).predict(test_x)

    reference, seconds = timed(lambda: sklearn_knn(20, "cosine"))
    rows.append(("scikit-learn k-NN cosine k=20 uniform", (reference == test_y).mean(), seconds))
    euclidean, seconds = timed(lambda: sklearn_knn(5, "euclidean"))
    rows.append(("scikit-learn k-NN euclidean k=5 uniform", (euclidean == test_y).mean(),
                 seconds))
    uniform, seconds = timed(lambda: knn_classify(train_x, train_y, test_x, k=20,
                                                  weights="uniform"))
    rows.append(("seedzoo k-NN cosine k=20 uniform", (uniform == test_y).mean(), seconds))
    weighted, seconds = timed(lambda: knn_classify(train_x, train_y, test_x, k=20))
    rows.append(("seedzoo k-NN cosine k=20 weighted T=0.07", (weighted == test_y).mean(),
                 seconds))

    if args.linear:
        from sklearn.linear_model import LogisticRegression
        from sklearn.preprocessing import StandardScaler

        from seedzoo.evaluation import LinearProbe

        scaler = StandardScaler().fit(train_x)
        logistic, seconds = timed(lambda: LogisticRegression(C=1.0, max_iter=1000).fit(
            scaler.transform(train_x), train_y))
        rows.append(("scikit-learn LogisticRegression C=1",
                     logistic.score(scaler.transform(test_x), test_y), seconds))
        probe, seconds = timed(lambda: LinearProbe().fit(train_x, train_y))
        rows.append((f"seedzoo linear probe (weight decay {probe.weight_decay_:g})",
                     probe.score(test_x, test_y), seconds))

    width = max(len(name) for name, _, _ in rows)
    print(f"{'':<{width}}  {'top-1':>6}  {'seconds':>8}")
    for name, accuracy, seconds in rows:
        print(f"{name:<{width}}  {accuracy:>6.4f}  {seconds:>8.1f}")
    print(f"seedzoo uniform k-NN = scikit-learn cosine k-NN on "
          f"{(uniform == reference).mean():.4f} of the test images")


if __name__ == "__main__":
    main()
