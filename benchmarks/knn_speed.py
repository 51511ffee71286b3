"""k-NN speed: seedzoo's ``knn_classify`` against scikit-learn's brute-force cosine k-NN.

Both classify the same queries against the same bank (default 60,000 x 512 training
features, 10,000 queries, k 20, majority vote), each in a fresh process so that its peak
memory can be read from the kernel and compared. Each method runs ``--repeats`` times; the
median and the fastest time are printed. scikit-learn's time varies a lot from run to run on
2 cores (measured 12.0-18.5 s in four runs of one process), so the ratio of medians ends the
output, ``ratio: <seedzoo median / scikit-learn median>``, after the ratio of the fastest runs.
Also printed: the peak memory above the loaded data and the agreement of the predictions.

    python benchmarks/knn_speed.py [--train 60000] [--test 10000] [--dim 512] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def make_features(train: int, test: int, dim: int, classes: int, seed: int = 0):
    """Class-clustered Gaussian features (so the predictions mean something) and labels."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((classes, dim), dtype=np.float32)
    labels = rng.integers(0, classes, train + test)
    features = centres[labels] * 0.15 + rng.standard_normal((train + test, dim), dtype=np.float32)
    return features[:train], labels[:train], features[train:], labels[train:]


def _status_mib(field: str) -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field)) / 1024


def _reset_peak_memory() -> None:
    """Make the kernel's peak resident size (VmHWM) restart from the current size."""
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")


def _worker(method: str, folder: Path, k: int, jobs: int, repeats: int) -> None:
    """Child process: load the data, time ``method`` ``repeats`` times, measure its peak memory."""
    train_x = np.load(folder / "train_x.npy")
    train_y = np.load(folder / "train_y.npy")
    test_x = np.load(folder / "test_x.npy")
    if method == "seedzoo":
        import torch

        from seedzoo.evaluation import knn_classify

        threads = torch.get_num_threads()

        def classify():
            return knn_classify(train_x, train_y, test_x, k=k, weights="uniform")
    else:
        from sklearn.neighbors import KNeighborsClassifier

        threads = jobs

        def classify():
            model = KNeighborsClassifier(n_neighbors=k, metric="cosine", algorithm="brute",
                                         n_jobs=jobs)
            return model.fit(train_x, train_y).predict(test_x)

    times, extra = [], []
    for _ in range(repeats):
        _reset_peak_memory()
        baseline = _status_mib("VmRSS:")
        start = time.perf_counter()
        predictions = classify()
        times.append(time.perf_counter() - start)
        extra.append(_status_mib("VmHWM:") - baseline)
    np.save(folder / f"{method}_predictions.npy", np.asarray(predictions))
    summary = {"times_s": times, "extra_mib": max(extra), "threads": threads}
    (folder / f"{method}.json").write_text(json.dumps(summary))


def _measure(method: str, folder: Path, args) -> dict:
    subprocess.run([sys.executable, __file__, "--worker", method, "--folder", str(folder),
                    "--k", str(args.k), "--jobs", str(args.jobs), "--repeats", str(args.repeats)],
                   check=True)
    summary = json.loads((folder / f"{method}.json").read_text())
    summary["predictions"] = np.load(folder / f"{method}_predictions.npy")
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train", type=int, default=60000, help="training (bank) features")
    parser.add_argument("--test", type=int, default=10000, help="query features")
    parser.add_argument("--dim", type=int, default=512, help="feature size")
    parser.add_argument("--classes", type=int, default=10, help="number of classes")
    parser.add_argument("--k", type=int, default=20, help="neighbours")
    parser.add_argument("--jobs", type=int, default=2, help="scikit-learn n_jobs")
    parser.add_argument("--repeats", type=int, default=5, help="runs per method")
    parser.add_argument("--worker", choices=("seedzoo", "scikit-learn"), help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker(args.worker, args.folder, args.k, args.jobs, args.repeats)
        return

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        train_x, train_y, test_x, test_y = make_features(args.train, args.test, args.dim,
                                                         args.classes)
        for name, array in {"train_x": train_x, "train_y": train_y, "test_x": test_x}.items():
            np.save(folder / f"{name}.npy", array)
        data_mib = (train_x.nbytes + test_x.nbytes) / 2**20
        print(f"bank {args.train} x {args.dim}, {args.test} queries, k {args.k}, uniform vote, "
              f"float32 ({data_mib:.0f} MiB of features), {os.cpu_count()} CPUs", flush=True)
        results = {method: _measure(method, folder, args) for method in ("scikit-learn", "seedzoo")}

    print(f"{'method':<14}{'threads':>8}{'median (s)':>12}{'fastest (s)':>13}"
          f"{'peak extra memory (MiB)':>26}{'top-1':>8}   all times (s)")
    for method, result in results.items():
        accuracy = float((result["predictions"] == test_y).mean())
        times = result["times_s"]
        print(f"{method:<14}{result['threads']:>8}{statistics.median(times):>12.2f}"
              f"{min(times):>13.2f}{result['extra_mib']:>26.0f}{accuracy:>8.3f}   "
              + " ".join(f"{t:.2f}" for t in times))
    seedzoo, sklearn = results["seedzoo"], results["scikit-learn"]
    agreement = float((seedzoo["predictions"] == sklearn["predictions"]).mean())
    print(f"identical predictions: {agreement:.4f}")
    print(f"memory ratio: {seedzoo['extra_mib'] / max(sklearn['extra_mib'], 1):.3f}")
    ours, theirs = seedzoo["times_s"], sklearn["times_s"]
    print(f"ratio of the fastest runs: {min(ours) / min(theirs):.3f}")
    print(f"ratio: {statistics.median(ours) / statistics.median(theirs):.3f}")


if __name__ == "__main__":
    main()
