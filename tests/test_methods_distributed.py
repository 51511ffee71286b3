"""Two gloo processes: queues gather from both, SimCLR's gathered negatives give the global-batch
gradient, MoCo's cross-process batch shuffle returns each key to its own image."""


import pytest
import torch
import torch.distributed as dist
from torch.nn import functional as F
from trainer_helpers import as_batch, spawn_processes

from seedzoo.training.methods import build_method
from seedzoo.training.queue import EmbeddingQueue

WORLD = 2
BATCH = 4  # per process


def global_views(seed=1):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(WORLD * BATCH, 3, 32, 32, generator=generator) for _ in range(2)]


def build(name, **options):
    torch.manual_seed(0)
    return build_method(name, encoder="test_resnet", dim=8, hidden_dim=16, **options)


def gradients(method):
    return [p.grad.clone() for p in method.parameters() if p.requires_grad]


def _worker(rank, port, out):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=WORLD)
    try:
        results = {}
        torch.manual_seed(0)  # as DDP would broadcast rank 0's buffers: same initial queue
        queue = EmbeddingQueue(8, 2)
        queue.enqueue(torch.full((3 - rank, 2), float(rank + 1)))  # unequal batches: 3 and 2
        results["queue"], results["pointer"] = queue.embeddings.clone(), int(queue.pointer)

        mine = slice(rank * BATCH, (rank + 1) * BATCH)
        first, second = global_views()
        simclr = build("simclr", head_batch_norm=False).eval()  # eval: no batch statistics
        simclr(as_batch([first[mine], second[mine]]))["loss"].backward()
        grads = gradients(simclr)
        for grad in grads:  # what DDP does
            dist.all_reduce(grad)
            grad /= WORLD
        results["simclr_grads"] = grads

        moco = build("moco", queue_size=16).eval()
        with torch.no_grad():
            results["moco_local_keys"] = F.normalize(moco.key_head(moco.key_encoder(first[mine])))
        results["moco_shuffled_keys"] = moco._keys(first[mine])
        moco.train()
        moco(as_batch([first[mine], second[mine]]))
        results["moco_queue"] = moco.queue.embeddings.clone()
        torch.save(results, out / f"{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    out = tmp_path_factory.mktemp("distributed")
    return spawn_processes(_worker, out, WORLD)


def test_queue_receives_every_process_batch_in_rank_order(results):
    for result in results:
        assert result["queue"][:5, 0].tolist() == [1, 1, 1, 2, 2]
        assert result["pointer"] == 5
    assert torch.equal(results[0]["queue"], results[1]["queue"])


def test_simclr_gathered_negatives_give_the_global_batch_gradient(results):
    first, second = global_views()
    simclr = build("simclr", head_batch_norm=False).eval()
    simclr(as_batch([first, second]))["loss"].backward()
    for rank_result in results:
        for single, averaged in zip(gradients(simclr), rank_result["simclr_grads"],
                                    strict=True):
            torch.testing.assert_close(averaged, single, atol=1e-5, rtol=1e-4)


def test_moco_shuffled_keys_come_back_to_their_images(results):
    for result in results:
        torch.testing.assert_close(result["moco_shuffled_keys"], result["moco_local_keys"])
    assert torch.equal(results[0]["moco_queue"], results[1]["moco_queue"])
