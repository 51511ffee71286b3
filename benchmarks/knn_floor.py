"""k-NN against its floor: ``knn_classify`` next to the float32 product it cannot avoid.

On the features of ``knn_speed.py`` (default 60,000 x 512 bank, 10,000 queries, k 20,
majority vote) this times, alternating in one process, ``knn_classify`` and the product of the
normalised queries and bank alone, computed the way the search computes it: one-thread BLAS
products over query chunks, one thread per torch thread. Prints both medians, the product's
GFLOP/s per core, and ends with ``ratio: <knn_classify median / product median>``, the share of
k-NN time above the product (1.0 would be a search that costs nothing else). Unlike the ratio
to scikit-learn, this one does not hang on another library's run-to-run spread.

    python benchmarks/knn_floor.py [--train 60000] [--test 10000] [--dim 512] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
import torch.nn.functional as F
from knn_speed import add_problem_arguments, make_features
from threadpoolctl import threadpool_limits

from seedzoo.evaluation import knn_classify
from seedzoo.evaluation.knn import QUERY_CHUNK


def product_only(bank: np.ndarray, queries: np.ndarray, threads: int) -> None:
    """Every query-chunk x bank product of a search, in ``threads`` one-thread BLAS threads."""
    rows = QUERY_CHUNK // threads
    outputs = [np.empty((rows, len(bank)), dtype=np.float32) for _ in range(threads)]

    def products(worker: int) -> None:
        for start in range(worker * rows, len(queries), threads * rows):
            chunk = queries[start:start + rows]
            np.matmul(chunk, bank.T, out=outputs[worker][:len(chunk)])

    with threadpool_limits(limits=1, user_api="blas"), ThreadPoolExecutor(threads) as pool:
        list(pool.map(products, range(threads)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_problem_arguments(parser)
    parser.add_argument("--repeats", type=int, default=5, help="runs of each, alternating")
    args = parser.parse_args()

    train_x, train_y, test_x, _ = make_features(args.train, args.test, args.dim, args.classes)
    bank = F.normalize(torch.from_numpy(train_x), dim=1).numpy()
    queries = F.normalize(torch.from_numpy(test_x), dim=1).numpy()
    threads = torch.get_num_threads()
    runs = {
        "knn_classify": lambda: knn_classify(train_x, train_y, test_x, k=args.k,
                                             weights="uniform"),
        "product only": lambda: product_only(bank, queries, threads),
    }
    times = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)

    gflop = 2 * args.train * args.test * args.dim / 1e9
    print(f"bank {args.train} x {args.dim}, {args.test} queries, k {args.k}, uniform vote, "
          f"{threads} threads; the product is {gflop:.0f} GFLOP")
    print(f"{'':<14}{'median (s)':>12}{'fastest (s)':>13}   all times (s)")
    for name, measured in times.items():
        print(f"{name:<14}{statistics.median(measured):>12.2f}{min(measured):>13.2f}   "
              + " ".join(f"{t:.2f}" for t in measured))
    product = statistics.median(times["product only"])
    print(f"product: {gflop / product / threads:.1f} GFLOP/s per core")
    print(f"ratio: {statistics.median(times['knn_classify']) / product:.3f}")


if __name__ == "__main__":
    main()
