"""Weighted k-nearest-neighbour classification on frozen features (InstDisc / DINO protocol).

Features are L2-normalised, neighbours are found by cosine similarity, and each neighbour
votes for its class with weight ``exp(similarity / temperature)`` (``weights="distance"``)
or 1 (``weights="uniform"``, a majority vote that matches scikit-learn's
``KNeighborsClassifier(metric="cosine", algorithm="brute")`` except on exact ties).

Similarities are computed one (query chunk x bank chunk) block at a time and reduced to a
running top-k, so memory stays bounded by the block size however large the bank is, and
several k are scored from one pass (the neighbours of the largest k, sorted). On CPU,
query chunks are searched in parallel threads, one per torch thread.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from itertools import islice

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from seedzoo.errors import SeedzooError
from seedzoo.evaluation.arrays import as_tensor, class_positions, label_array, refuse_non_finite

DEFAULT_KS = (10, 20, 100, 200)
WEIGHTINGS = ("distance", "uniform")
QUERY_CHUNK = 1024
BANK_CHUNK = 65536
# Top-k of a long row goes through the maxima of blocks of _SELECT_BLOCK columns: only the k
# blocks with the largest maxima can hold the k largest values, so most of the row is skipped.
# It pays off when the row has many more blocks than k, not for a k near the block count
# (figures: docs/design-notes.md, knn.py).
_SELECT_BLOCK = 32
_BLOCKS_PER_K = 32


def _similarity_block(queries: torch.Tensor, bank: torch.Tensor, out: torch.Tensor
                      ) -> torch.Tensor:
    """``queries @ bank.T`` written into ``out``.

    On CPU the product goes through NumPy's BLAS (OpenBLAS in the NumPy wheels), which
    threadpoolctl can hold to one thread per search worker; torch's MKL follows torch's
    process-wide thread count instead; one thread of either runs it about as fast
    (docs/design-notes.md, knn.py).
    """
    if out.device.type == "cpu":
        np.matmul(queries.numpy(), bank.numpy().T, out=out.numpy())
        return out
    return torch.mm(queries, bank.T, out=out)


def _check_features(train_features: torch.Tensor, test_features: torch.Tensor) -> None:
    if train_features.ndim != 2 or test_features.ndim != 2:
        raise SeedzooError(f"k-NN needs 2-D feature arrays (samples, dim); got shapes "
                           f"{tuple(train_features.shape)} and {tuple(test_features.shape)}.")
    if train_features.shape[1] != test_features.shape[1]:
        raise SeedzooError(f"Train and test features differ in size ({train_features.shape[1]} "
                           f"vs {test_features.shape[1]}); extract both with the same encoder.")
    if len(train_features) == 0:
        raise SeedzooError("k-NN needs at least one training feature.")


def _row_norms(features: torch.Tensor, name: str) -> torch.Tensor:
    """The L2 norm of each row; rows with NaN or infinite values are an error."""
    norms = torch.linalg.vector_norm(features, dim=1)
    refuse_non_finite(int((~torch.isfinite(norms)).sum()), len(features), name)
    return norms


def _unit_rows(features: torch.Tensor, norms: torch.Tensor) -> torch.Tensor:
    """``torch.nn.functional.normalize(features, dim=1)``, from precomputed row norms."""
    return features / norms.clamp_min(1e-12).unsqueeze(1)


def _row_topk(sims: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sorted ``k`` largest values of each row and their column indices."""
    rows, cols = sims.shape
    full_blocks = cols // _SELECT_BLOCK
    if full_blocks < _BLOCKS_PER_K * k:
        return sims.topk(k, dim=1)
    covered = full_blocks * _SELECT_BLOCK
    maxima = sims[:, :covered].unflatten(1, (full_blocks, _SELECT_BLOCK)).amax(dim=2)
    blocks = maxima.topk(k, dim=1, sorted=False).indices
    offsets = torch.arange(_SELECT_BLOCK, device=sims.device)
    candidates = (blocks.unsqueeze(2) * _SELECT_BLOCK + offsets).flatten(1)
    if covered < cols:  # the ragged tail is always a candidate
        tail = torch.arange(covered, cols, device=sims.device).expand(rows, -1)
        candidates = torch.cat([candidates, tail], dim=1)
    values, picked = sims.gather(1, candidates).topk(k, dim=1)
    return values, candidates.gather(1, picked)


def _search_workers(device: torch.device) -> int:
    """Threads that search query chunks side by side: one per torch thread on CPU.

    Each runs its own single-threaded product and top-k. This beat one multi-threaded product
    after another: there the idle BLAS thread keeps spinning on the core that the next top-k
    needs, and one-thread products run faster per core (docs/design-notes.md, knn.py;
    benchmarks/results/knn_speed.txt).
    """
    return torch.get_num_threads() if device.type == "cpu" else 1


def iter_neighbors(train_features, test_features, k: int, *, query_chunk: int = QUERY_CHUNK,
                   bank_chunk: int = BANK_CHUNK, device=None
                   ) -> Iterator[tuple[slice, torch.Tensor, torch.Tensor]]:
    """Yield ``(query_slice, similarities, indices)`` of the ``k`` nearest training features.

    Cosine similarity, sorted in decreasing order; ``k`` is capped at the bank size. Query
    slices come in order. On CPU the search runs in ``torch.get_num_threads()`` threads that
    share the ``query_chunk`` rows, with NumPy's BLAS held to one thread meanwhile, so peak
    extra memory stays one ``query_chunk x bank_chunk`` float32 block in total plus the
    bank's normalised copy.
    """
    if device is None:
        device = train_features.device if isinstance(train_features, torch.Tensor) else "cpu"
    device = torch.device(device)
    bank = as_tensor(train_features, torch.float32, device)
    queries_all = as_tensor(test_features, torch.float32, device)
    _check_features(bank, queries_all)
    if query_chunk < 1 or bank_chunk < 1:
        raise SeedzooError(f"query_chunk and bank_chunk must be at least 1, got {query_chunk} "
                           f"and {bank_chunk}.")
    bank = _unit_rows(bank, _row_norms(bank, "training"))
    query_norms = _row_norms(queries_all, "test")
    k = min(k, len(bank))
    bank_chunk = min(bank_chunk, len(bank))
    workers = _search_workers(device)
    rows_per_search = max(1, query_chunk // workers)
    blocks = threading.local()  # one similarity block per worker, reused across its chunks

    def search(start: int) -> tuple[slice, torch.Tensor, torch.Tensor]:
        if not hasattr(blocks, "block"):
            blocks.block = torch.empty(rows_per_search * bank_chunk, dtype=torch.float32,
                                       device=device)
        end = start + rows_per_search
        queries = _unit_rows(queries_all[start:end], query_norms[start:end])
        best_sims = best_idx = None
        for bank_start in range(0, len(bank), bank_chunk):
            part = bank[bank_start:bank_start + bank_chunk]
            sims = _similarity_block(queries, part, blocks.block[:len(queries) * len(part)]
                                     .view(len(queries), len(part)))
            values, index = _row_topk(sims, min(k, len(part)))
            index += bank_start
            if best_sims is None:
                best_sims, best_idx = values, index
            else:
                merged_sims = torch.cat([best_sims, values], dim=1)
                best_sims, order = merged_sims.topk(min(k, merged_sims.shape[1]), dim=1)
                best_idx = torch.cat([best_idx, index], dim=1).gather(1, order)
        return slice(start, start + len(queries)), best_sims, best_idx

    starts = iter(range(0, len(queries_all), rows_per_search))
    pool = ThreadPoolExecutor(workers, thread_name_prefix="seedzoo-knn")
    try:
        with threadpool_limits(limits=1, user_api="blas"):
            # Two searches per worker in flight: results wait for a slow consumer no further.
            pending = deque(pool.submit(search, start) for start in islice(starts, 2 * workers))
            while pending:
                result = pending.popleft().result()
                next_start = next(starts, None)
                if next_start is not None:
                    pending.append(pool.submit(search, next_start))
                yield result
    finally:
        pool.shutdown(cancel_futures=True)


def _class_scores(sims: torch.Tensor, neighbor_classes: torch.Tensor, num_classes: int,
                  temperature: float, weights: str) -> torch.Tensor:
    """Per-class vote totals (queries x classes) of neighbours sorted by decreasing similarity.

    Distance weights are exp(sim / T) scaled by the row's largest (the first) one, which
    keeps small temperatures finite and changes no ranking.
    """
    if weights == "distance":
        votes = ((sims - sims[:, :1]) / temperature).exp()
    else:
        votes = torch.ones_like(sims)
    scores = torch.zeros(len(sims), num_classes, dtype=votes.dtype, device=sims.device)
    return scores.scatter_add_(1, neighbor_classes, votes)


def _check_options(ks: Sequence[int], temperature: float, weights: str) -> None:
    if weights not in WEIGHTINGS:
        raise SeedzooError(f"Unknown k-NN weighting {weights!r}; "
                           f"use one of {', '.join(WEIGHTINGS)}.")
    if not ks or any(int(k) < 1 for k in ks):
        raise SeedzooError(f"k must be a positive integer, got {list(ks)}.")
    if temperature <= 0:
        raise SeedzooError(f"k-NN temperature must be positive, got {temperature}.")


def _encode_labels(train_labels, num_features: int, device) -> tuple[np.ndarray, torch.Tensor]:
    """(sorted distinct labels, each training label's index into them, on ``device``).

    Labels may be any values NumPy can sort: integers in any range, strings, floats.
    """
    labels = label_array(train_labels)
    if labels.shape != (num_features,):
        raise SeedzooError(f"k-NN needs one label per training feature: {num_features} features "
                           f"but labels of shape {labels.shape}.")
    classes, inverse = np.unique(labels, return_inverse=True)  # far faster than torch.unique on CPU
    return classes, torch.from_numpy(inverse.reshape(-1)).to(device)


def knn_classify(train_features, train_labels, test_features, k: int = 20,
                 temperature: float = 0.07, weights: str = "distance", *,
                 query_chunk: int = QUERY_CHUNK, bank_chunk: int = BANK_CHUNK, device=None):
    """Predicted label of each test feature by a k-NN vote among the training features.

    Accepts NumPy arrays or torch tensors; returns the same kind as ``train_labels``.
    Ties between classes go to the smallest label (as in scikit-learn).
    """
    _check_options([k], temperature, weights)
    device = torch.device(device or _device_of(train_features))
    classes, train_classes = _encode_labels(train_labels, len(train_features), device)
    predictions = torch.empty(len(test_features), dtype=torch.int64, device=device)
    for rows, sims, index in iter_neighbors(train_features, test_features, k,
                                            query_chunk=query_chunk, bank_chunk=bank_chunk,
                                            device=device):
        scores = _class_scores(sims, train_classes[index], len(classes), temperature, weights)
        predictions[rows] = scores.argmax(dim=1)
    predicted = classes[predictions.cpu().numpy()]
    if isinstance(train_labels, torch.Tensor):
        return torch.from_numpy(predicted).to(device)
    return predicted


def knn_scores(train_features, train_labels, test_features, test_labels,
               ks: Sequence[int] = DEFAULT_KS, temperature: float = 0.07,
               weights: str = "distance", *, query_chunk: int = QUERY_CHUNK,
               bank_chunk: int = BANK_CHUNK, device=None) -> dict[str, float]:
    """Top-1 and top-5 accuracy for every k in ``ks`` from one neighbour search.

    Returns ``{"knn_top1@<k>": ..., "knn_top5@<k>": ...}`` (fractions in [0, 1]). A class
    counts towards top-5 only if at least one neighbour voted for it, so with k < 5 top-5
    is "the true class is among the neighbours' classes", never a lucky zero-vote pick.
    A k larger than the bank uses the whole bank.
    """
    _check_options(ks, temperature, weights)
    device = torch.device(device or _device_of(train_features))
    classes, train_classes = _encode_labels(train_labels, len(train_features), device)
    labels = label_array(test_labels)
    if labels.shape != (len(test_features),):
        raise SeedzooError(f"{len(test_features)} test features but test labels of shape "
                           f"{labels.shape}.")
    # Test labels unseen in training can never be predicted: map them past the known classes.
    position, known = class_positions(classes, labels)
    truth = torch.from_numpy(np.where(known, position, len(classes)))
    truth = truth.to(device)
    ks = sorted({int(k) for k in ks})
    top1 = dict.fromkeys(ks, 0)
    top5 = dict.fromkeys(ks, 0)
    for rows, sims, index in iter_neighbors(train_features, test_features, max(ks),
                                            query_chunk=query_chunk, bank_chunk=bank_chunk,
                                            device=device):
        neighbor_classes = train_classes[index]
        target = truth[rows].unsqueeze(1)
        for k in ks:
            scores = _class_scores(sims[:, :k], neighbor_classes[:, :k], len(classes),
                                   temperature, weights)
            top1[k] += int((scores.argmax(dim=1, keepdim=True) == target).sum())
            best = scores.topk(min(5, len(classes)), dim=1)
            top5[k] += int(((best.indices == target) & (best.values > 0)).any(dim=1).sum())
    total = max(len(truth), 1)
    metrics = {}
    for k in ks:
        metrics[f"knn_top1@{k}"] = top1[k] / total
        metrics[f"knn_top5@{k}"] = top5[k] / total
    return metrics


def _device_of(features):
    return features.device if isinstance(features, torch.Tensor) else torch.device("cpu")
