"""k-NN speed: seedzoo's ``knn_classify`` against scikit-learn's brute-force cosine k-NN.

Both classify the same queries against the same bank (default 60,000 x 512 training
features, 10,000 queries, k 20, majority vote), each in its own process so that its peak
memory can be read from the kernel and compared. The two processes stay up and take turns,
one run each per round for ``--repeats`` rounds, so that a slow spell of a shared machine
falls on both methods alike; the first round includes each method's warm-up. The median and
the fastest time of each are printed, then the ratio of each round's pair and their median.
scikit-learn's time varies a lot from run to run on 2 cores (measured 11.7-19.6 s within one
process), so the ratio of medians ends the output, ``ratio: <seedzoo median / scikit-learn
median>``. Also printed: the threads each side used, the peak memory above the loaded data and
the agreement of the predictions. seedzoo runs ``--jobs`` search threads with one BLAS thread
each; scikit-learn runs ``n_jobs=--jobs`` with its BLAS's default thread count in each job (what
a plain call gets, more threads than cores) unless ``--sklearn-blas-threads`` caps it.

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


def _worker(method: str, folder: Path, k: int, jobs: int, sklearn_blas: int | None) -> None:
    """Child process: load the data, then classify once per line read from stdin.

    Prints its thread count, then one JSON line (time and peak extra memory) per run. Saves
    the last predictions when stdin closes.
    """
    train_x = np.load(folder / "train_x.npy")
    train_y = np.load(folder / "train_y.npy")
    test_x = np.load(folder / "test_x.npy")
    from threadpoolctl import threadpool_info, threadpool_limits

    blas = max((pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"),
               default=1)
    if method == "seedzoo":
        import torch

        from seedzoo.evaluation import knn_classify

        torch.set_num_threads(jobs)
        threads = f"{jobs} search, BLAS 1 each"

        def classify():
            return knn_classify(train_x, train_y, test_x, k=k, weights="uniform")
    else:
        from sklearn.neighbors import KNeighborsClassifier

        blas = sklearn_blas or blas
        threads = f"n_jobs {jobs}, BLAS {blas} each"

        def classify():
            model = KNeighborsClassifier(n_neighbors=k, metric="cosine", algorithm="brute",
                                         n_jobs=jobs)
            with threadpool_limits(limits=blas, user_api="blas"):
                return model.fit(train_x, train_y).predict(test_x)

    print(json.dumps({"threads": threads}), flush=True)
    predictions = None
    for _ in sys.stdin:
        _reset_peak_memory()
        baseline = _status_mib("VmRSS:")
        start = time.perf_counter()
        predictions = classify()
        seconds = time.perf_counter() - start
        extra = _status_mib("VmHWM:") - baseline
        print(json.dumps({"time_s": seconds, "extra_mib": extra}), flush=True)
    np.save(folder / f"{method}_predictions.npy", np.asarray(predictions))


class _Worker:
    """One method's resident child process, run on demand."""

    def __init__(self, method: str, folder: Path, args) -> None:
        self.method, self.folder = method, folder
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--worker", method, "--folder", str(folder),
             "--k", str(args.k), "--jobs", str(args.jobs),
             *(["--sklearn-blas-threads", str(args.sklearn_blas_threads)]
               if args.sklearn_blas_threads else [])],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.threads = self._reply()["threads"]
        self.times, self.extra_mib = [], []

    def _reply(self) -> dict:
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the {self.method} worker stopped (exit code "
                               f"{self.process.wait()}); its error is printed above")
        return json.loads(line)

    def run(self) -> None:
        self.process.stdin.write("run\n")
        self.process.stdin.flush()
        reply = self._reply()
        self.times.append(reply["time_s"])
        self.extra_mib.append(reply["extra_mib"])

    def finish(self) -> np.ndarray:
        """Stop the process and return its last predictions."""
        self.process.stdin.close()
        if self.process.wait() != 0:
            raise RuntimeError(f"the {self.method} worker failed; its error is printed above")
        return np.load(self.folder / f"{self.method}_predictions.npy")


def add_problem_arguments(parser: argparse.ArgumentParser) -> None:
    """The k-NN problem of this benchmark (and of knn_floor.py): sizes, classes and k."""
    parser.add_argument("--train", type=int, default=60000, help="training (bank) features")
    parser.add_argument("--test", type=int, default=10000, help="query features")
    parser.add_argument("--dim", type=int, default=512, help="feature size")
    parser.add_argument("--classes", type=int, default=10, help="number of classes")
    parser.add_argument("--k", type=int, default=20, help="neighbours")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_problem_arguments(parser)
    parser.add_argument("--jobs", type=int, default=2,
                        help="scikit-learn n_jobs, and seedzoo's torch threads (default 2)")
    parser.add_argument("--sklearn-blas-threads", type=int, metavar="N",
                        help="BLAS threads in each scikit-learn job (default: the BLAS's own, "
                        "the CPU count, as a plain KNeighborsClassifier call gets)")
    parser.add_argument("--repeats", type=int, default=5, help="rounds (runs per method)")
    parser.add_argument("--worker", choices=("seedzoo", "scikit-learn"), help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker(args.worker, args.folder, args.k, args.jobs, args.sklearn_blas_threads)
        return

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        train_x, train_y, test_x, test_y = make_features(args.train, args.test, args.dim,
                                                         args.classes)
        for name, array in {"train_x": train_x, "train_y": train_y, "test_x": test_x}.items():
            np.save(folder / f"{name}.npy", array)
        data_mib = (train_x.nbytes + test_x.nbytes) / 2**20
        print(f"bank {args.train} x {args.dim}, {args.test} queries, k {args.k}, uniform vote, "
              f"float32 ({data_mib:.0f} MiB of features), {os.cpu_count()} CPUs, "
              f"{args.repeats} rounds", flush=True)
        workers = [_Worker(method, folder, args) for method in ("scikit-learn", "seedzoo")]
        try:
            for _ in range(args.repeats):
                for worker in workers:
                    worker.run()
            predictions = {worker.method: worker.finish() for worker in workers}
        finally:
            for worker in workers:
                worker.process.kill()

    print(f"{'method':<14}{'threads':>25}{'median (s)':>12}{'fastest (s)':>13}"
          f"{'peak extra memory (MiB)':>26}{'top-1':>8}   times by round (s)")
    for worker in workers:
        accuracy = float((predictions[worker.method] == test_y).mean())
        print(f"{worker.method:<14}{worker.threads:>25}{statistics.median(worker.times):>12.2f}"
              f"{min(worker.times):>13.2f}{max(worker.extra_mib):>26.0f}{accuracy:>8.3f}   "
              + " ".join(f"{t:.2f}" for t in worker.times))
    sklearn, seedzoo = workers
    agreement = float((predictions["seedzoo"] == predictions["scikit-learn"]).mean())
    print(f"identical predictions: {agreement:.4f}")
    print(f"memory ratio: {max(seedzoo.extra_mib) / max(max(sklearn.extra_mib), 1):.3f}")
    paired = [ours / theirs for ours, theirs in zip(seedzoo.times, sklearn.times, strict=True)]
    print("ratio by round: " + " ".join(f"{r:.3f}" for r in paired)
          + f" (median {statistics.median(paired):.3f})")
    print(f"ratio of the fastest runs: {min(seedzoo.times) / min(sklearn.times):.3f}")
    print(f"ratio: {statistics.median(seedzoo.times) / statistics.median(sklearn.times):.3f}")

if __name__ == "__main__":
    main()
