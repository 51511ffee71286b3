"""Weighted k-NN: agreement with scikit-learn, a hand-checked vote, chunking, top-5, memory."""

import json
import math
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest
import torch
from evaluation_helpers import clustered, torch_threads
from sklearn.neighbors import KNeighborsClassifier
from threadpoolctl import threadpool_info

from seedzoo.errors import SeedzooError
from seedzoo.evaluation import knn_classify, knn_scores
from seedzoo.evaluation.knn import iter_neighbors

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.mark.parametrize("k", [1, 7, 20])
def test_uniform_vote_equals_sklearn_cosine_brute_force(k):
    train_x, train_y, test_x, _ = clustered(labels=[3, 10, 42, 7, 0, 99])
    ours = knn_classify(train_x, train_y, test_x, k=k, weights="uniform")
    reference = KNeighborsClassifier(n_neighbors=k, metric="cosine", algorithm="brute")
    expected = reference.fit(train_x, train_y).predict(test_x)
    assert isinstance(ours, np.ndarray)
    np.testing.assert_array_equal(ours, expected)


def test_distance_weighted_vote_by_hand():
    # Query (1, 0.2). Neighbours by cosine: (1, 0) class 0, then (1, 1) and (1, 1.1) class 1.
    train = np.array([[1.0, 0.0], [1.0, 1.0], [1.0, 1.1], [-1.0, 0.0]], dtype=np.float32)
    labels = np.array([0, 1, 1, 2])
    query = np.array([[1.0, 0.2]], dtype=np.float32)

    def cos(a, b):
        return float(np.dot(a, b) / np.linalg.norm(a) / np.linalg.norm(b))

    sims = [cos(query[0], t) for t in train[:3]]  # 0.981, 0.832, 0.796
    for temperature in (0.07, 1.0):
        class0 = math.exp(sims[0] / temperature)
        class1 = math.exp(sims[1] / temperature) + math.exp(sims[2] / temperature)
        expected = 0 if class0 > class1 else 1
        got = knn_classify(train, labels, query, k=3, temperature=temperature)
        assert got.tolist() == [expected]
    # T 0.07: one very close neighbour outweighs two farther ones (e^14.0 > e^11.9 + e^11.4);
    # T 1.0: the two class-1 votes win; a majority vote also gives class 1.
    assert knn_classify(train, labels, query, k=3, temperature=0.07).tolist() == [0]
    assert knn_classify(train, labels, query, k=3, temperature=1.0).tolist() == [1]
    assert knn_classify(train, labels, query, k=3, weights="uniform").tolist() == [1]


def test_chunked_equals_unchunked():
    # 4000 > 4 * k * 32 columns, so the block-maxima selection is exercised too.
    train_x, train_y, test_x, test_y = clustered(train=4000, test=250, spread=2.0)
    whole = knn_scores(train_x, train_y, test_x, test_y, ks=(1, 5, 20, 30),
                       query_chunk=10_000, bank_chunk=10_000)
    chunked = knn_scores(train_x, train_y, test_x, test_y, ks=(1, 5, 20, 30),
                         query_chunk=17, bank_chunk=333)
    assert whole == chunked
    for k in (1, 20):
        np.testing.assert_array_equal(
            knn_classify(train_x, train_y, test_x, k=k),
            knn_classify(train_x, train_y, test_x, k=k, query_chunk=9, bank_chunk=101))


def test_neighbours_are_the_exact_top_k():
    train_x, _, test_x, _ = clustered(train=5000, test=64, spread=3.0)
    bank = torch.nn.functional.normalize(torch.from_numpy(train_x), dim=1)
    queries = torch.nn.functional.normalize(torch.from_numpy(test_x), dim=1)
    expected = (queries @ bank.T).topk(25, dim=1)
    for chunks in ({}, {"query_chunk": 13, "bank_chunk": 1200}):
        parts = list(iter_neighbors(train_x, test_x, 25, **chunks))
        torch.testing.assert_close(torch.cat([sims for _, sims, _ in parts]), expected.values)
        assert torch.equal(torch.cat([index for _, _, index in parts]), expected.indices)


def _knn_threads():
    return [thread for thread in threading.enumerate() if thread.name.startswith("seedzoo-knn")]


def test_parallel_search_finds_the_same_neighbours_in_order():
    """Three search threads share each query chunk; BLAS threads are restored afterwards."""
    train_x, _, test_x, _ = clustered(train=3000, test=200, spread=3.0)
    serial = list(iter_neighbors(train_x, test_x, 10, query_chunk=60, bank_chunk=700))
    blas_before = [pool["num_threads"] for pool in threadpool_info()]
    with torch_threads(3):
        parallel = list(iter_neighbors(train_x, test_x, 10, query_chunk=60, bank_chunk=700))
    assert [pool["num_threads"] for pool in threadpool_info()] == blas_before
    expected_rows = [slice(start, min(start + 20, 200)) for start in range(0, 200, 20)]
    assert [rows for rows, _, _ in parallel] == expected_rows  # 60 rows shared by 3 threads
    torch.testing.assert_close(torch.cat([sims for _, sims, _ in parallel]),
                               torch.cat([sims for _, sims, _ in serial]))
    assert torch.equal(torch.cat([index for _, _, index in parallel]),
                       torch.cat([index for _, _, index in serial]))
    with torch_threads(3):
        search = iter_neighbors(train_x, test_x, 10, query_chunk=60, bank_chunk=700)
        next(search)
        search.close()  # a consumer that stops early leaves no search thread behind
    assert not _knn_threads()


def test_multi_k_scores_match_single_k_predictions():
    train_x, train_y, test_x, test_y = clustered(spread=2.5)
    scores = knn_scores(train_x, train_y, test_x, test_y, ks=(3, 10, 50))
    for k in (3, 10, 50):
        predicted = knn_classify(train_x, train_y, test_x, k=k)
        assert scores[f"knn_top1@{k}"] == pytest.approx(float((predicted == test_y).mean()))
        assert scores[f"knn_top5@{k}"] >= scores[f"knn_top1@{k}"]


@pytest.mark.parametrize("k", [1, 2, 3])
def test_top5_with_fewer_than_five_neighbours(k):
    # 12 classes, heavily overlapping: a zero-vote class must never count as a top-5 hit.
    train_x, train_y, test_x, test_y = clustered(classes=12, spread=4.0, seed=1)
    scores = knn_scores(train_x, train_y, test_x, test_y, ks=[k])
    bank = train_x / np.linalg.norm(train_x, axis=1, keepdims=True)
    queries = test_x / np.linalg.norm(test_x, axis=1, keepdims=True)
    neighbours = np.argsort(-(queries @ bank.T), axis=1)[:, :k]
    in_neighbours = (train_y[neighbours] == test_y[:, None]).any(axis=1)
    assert scores[f"knn_top5@{k}"] == pytest.approx(float(in_neighbours.mean()))
    if k == 1:
        assert scores["knn_top5@1"] == scores["knn_top1@1"]
    assert scores[f"knn_top5@{k}"] < 0.9  # far from what zero-vote padding would give


def test_k_larger_than_bank_uses_whole_bank():
    train_x, train_y, test_x, test_y = clustered(train=30, test=20)
    capped = knn_scores(train_x, train_y, test_x, test_y, ks=[200])
    whole = knn_scores(train_x, train_y, test_x, test_y, ks=[30])
    assert capped["knn_top1@200"] == whole["knn_top1@30"]


def test_tensor_inputs_give_tensor_predictions():
    train_x, train_y, test_x, _ = clustered()
    got = knn_classify(torch.from_numpy(train_x), torch.from_numpy(train_y),
                       torch.from_numpy(test_x), k=5)
    assert isinstance(got, torch.Tensor)
    np.testing.assert_array_equal(got.numpy(), knn_classify(train_x, train_y, test_x, k=5))


def test_bank_chunks_smaller_than_k_equal_one_chunk():
    train_x, train_y, test_x, test_y = clustered(train=200, test=40)
    expected = knn_scores(train_x, train_y, test_x, test_y, ks=[30])
    assert knn_scores(train_x, train_y, test_x, test_y, ks=[30], bank_chunk=10) == expected


def test_labels_of_any_sortable_kind_come_back_as_given():
    names = np.array(["boot", "coat", "dress", "shirt"])
    train_x, train_y, test_x, test_y = clustered(classes=4)
    as_ints = knn_classify(train_x, train_y, test_x, k=5)
    np.testing.assert_array_equal(knn_classify(train_x, names[train_y], test_x, k=5),
                                  names[as_ints])
    np.testing.assert_array_equal(knn_classify(train_x, train_y + 0.5, test_x, k=5), as_ints + 0.5)
    assert knn_scores(train_x, names[train_y], test_x, names[test_y], ks=[5]) \
        == knn_scores(train_x, train_y, test_x, test_y, ks=[5])


def test_bad_inputs_are_clear_errors():
    train_x, train_y, test_x, test_y = clustered()
    with pytest.raises(SeedzooError, match="differ in size"):
        knn_classify(train_x, train_y, test_x[:, :5])
    with pytest.raises(SeedzooError, match="weighting"):
        knn_classify(train_x, train_y, test_x, weights="cosine")
    with pytest.raises(SeedzooError, match="test labels"):
        knn_scores(train_x, train_y, test_x, test_y[:-1])
    with pytest.raises(SeedzooError, match="one label per training feature"):
        knn_classify(train_x, train_y[:-1], test_x)
    with pytest.raises(SeedzooError, match="bank_chunk must be at least 1"):
        knn_classify(train_x, train_y, test_x, bank_chunk=0)
    broken = train_x.copy()
    broken[7] = np.nan
    with pytest.raises(SeedzooError, match="1 of .* training features are NaN or infinite"):
        knn_classify(broken, train_y, test_x)
    broken = test_x.copy()
    broken[:2, 0] = np.inf
    with pytest.raises(SeedzooError, match="2 of .* test features are NaN or infinite"):
        knn_scores(train_x, train_y, broken, test_y)


MEMORY_PROBE = textwrap.dedent("""
    import json, sys
    import torch
    from seedzoo.evaluation.knn import iter_neighbors

    def status_kib(field):
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith(field))

    threads, bank_size, queries, dim, query_chunk, bank_chunk = map(int, sys.argv[1:])
    torch.set_num_threads(threads)
    generator = torch.Generator().manual_seed(0)
    bank = torch.randn(bank_size, dim, generator=generator)
    test = torch.randn(queries, dim, generator=generator)
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")  # reset the peak resident size (VmHWM) to the current one
    before = status_kib("VmRSS:")
    for _ in iter_neighbors(bank, test, 20, query_chunk=query_chunk, bank_chunk=bank_chunk):
        pass
    print(json.dumps({"extra_mib": (status_kib("VmHWM:") - before) / 1024}))
""")


def _peak_extra_mib(*sizes) -> float:
    result = subprocess.run([sys.executable, "-c", MEMORY_PROBE, *map(str, sizes)],
                            capture_output=True, text=True, timeout=300)
    if result.returncode and "clear_refs" in result.stderr:
        pytest.skip("this kernel does not let a process reset its peak memory")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])["extra_mib"]


@pytest.mark.parametrize("threads", [1, 2])
def test_bank_larger_than_a_chunk_keeps_peak_memory_bounded(threads):
    """A 100k bank against 1024 queries: the full similarity matrix would take 400 MiB. Two
    search threads hold a block of half the query chunk each, so no more than one thread."""
    bank_size, queries, dim, query_chunk, bank_chunk = 100_000, 1024, 32, 512, 16_384
    extra_mib = _peak_extra_mib(threads, bank_size, queries, dim, query_chunk, bank_chunk)
    bank_mib = bank_size * dim * 4 / 2**20  # the normalised copy of the bank: 12 MiB
    block_mib = query_chunk * bank_chunk * 4 / 2**20  # one similarity block: 32 MiB
    full_matrix_mib = bank_size * queries * 4 / 2**20
    # Measured 53 MiB with 1 or 2 threads; a whole block per thread would need 85 MiB.
    assert extra_mib < bank_mib + 1.5 * block_mib + 8, extra_mib
    # The same search in one block does hold the full matrix: the measurement sees it.
    assert _peak_extra_mib(1, bank_size, queries, dim, queries, bank_size) > full_matrix_mib * 0.9


def test_small_temperatures_stay_finite():
    train_x, train_y, test_x, test_y = clustered(spread=2.0)
    sharp = knn_scores(train_x, train_y, test_x, test_y, ks=[20], temperature=1e-3)
    nearest = knn_scores(train_x, train_y, test_x, test_y, ks=[1])
    assert sharp["knn_top1@20"] == nearest["knn_top1@1"]  # T -> 0: the nearest neighbour wins
