import pytest
import torch

from seedzoo.training.queue import EmbeddingQueue


def oldest_first(queue: EmbeddingQueue) -> torch.Tensor:
    return torch.roll(queue.embeddings, -int(queue.pointer), dims=0)


def test_starts_as_random_unit_vectors_held_in_the_state_dict():
    queue = EmbeddingQueue(10, 4)
    assert torch.allclose(queue.embeddings.norm(dim=1), torch.ones(10))
    assert int(queue.pointer) == 0
    assert set(queue.state_dict()) == {"embeddings", "pointer"}


def test_fifo_with_pointer_wrapping():
    queue = EmbeddingQueue(5, 2)
    a, b, c = (torch.full((2, 2), float(v)) for v in (1, 2, 3))
    queue.enqueue(a)
    queue.enqueue(b)
    assert int(queue.pointer) == 4
    queue.enqueue(c)  # rows 4 and 0: wraps
    assert int(queue.pointer) == 1
    assert queue.embeddings[:, 0].tolist() == [3, 1, 2, 2, 3]
    assert oldest_first(queue)[:, 0].tolist() == [1, 2, 2, 3, 3]


@pytest.mark.parametrize("size", [7, 16, 5])
def test_any_size_keeps_the_newest_rows_in_order(size):
    queue = EmbeddingQueue(size, 3)
    stream = []
    for count in (4, 4, 3, 1, 9, 2):  # short batches, and one larger than a size-5/7 queue
        batch = torch.randn(count, 3)
        stream.append(batch)
        queue.enqueue(batch)
    everything = torch.cat(stream)
    assert torch.equal(oldest_first(queue), everything[-size:])
    assert int(queue.pointer) == len(everything) % size


def test_state_dict_round_trip_and_dtype():
    queue = EmbeddingQueue(6, 2)
    queue.enqueue(torch.randn(4, 2, dtype=torch.bfloat16))
    assert queue.embeddings.dtype == torch.float32
    copy = EmbeddingQueue(6, 2)
    copy.load_state_dict(queue.state_dict())
    assert torch.equal(copy.embeddings, queue.embeddings) and int(copy.pointer) == 4


def test_bad_sizes_are_refused():
    with pytest.raises(ValueError):
        EmbeddingQueue(0, 4)


def test_batches_kept_until_after_backward_are_written_in_order():
    queue, direct = EmbeddingQueue(7, 2), EmbeddingQueue(7, 2)
    direct.load_state_dict(queue.state_dict())
    before = queue.embeddings.clone()
    batches = [torch.full((2, 2), 1.0), torch.full((3, 2), 2.0)]
    for batch in batches:
        queue.enqueue_after_backward(batch)
        direct.enqueue(batch)
    assert torch.equal(queue.embeddings, before) and int(queue.pointer) == 0
    queue.write_pending()
    assert torch.equal(queue.embeddings, direct.embeddings) and int(queue.pointer) == 5
    queue.write_pending()  # nothing kept twice
    assert torch.equal(queue.embeddings, direct.embeddings)
