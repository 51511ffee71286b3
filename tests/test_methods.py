"""MoCo v2 and SimCLR as modules: what moves, what stays, what the queue receives."""

import torch
from torch.nn import functional as F
from trainer_helpers import as_batch

from seedzoo.training.methods import build_method, list_methods
from seedzoo.training.methods.moco import info_nce
from seedzoo.training.methods.simclr import nt_xent

SMALL = {"arch": "test_resnet", "pretrained_cfg": {"input_size": [3, 32, 32]}}


def views(batch=6):
    return [torch.randn(batch, 3, 32, 32), torch.randn(batch, 3, 32, 32)]


def test_all_methods_are_registered():
    assert {"seed", "moco", "simclr"} <= set(list_methods())


def test_moco_key_encoder_is_an_ema_of_the_query_encoder_and_feeds_the_queue():
    torch.manual_seed(0)
    method = build_method("moco", encoder=SMALL, dim=8, hidden_dim=16, queue_size=10,
                          momentum=0.9).train()
    assert method.views == "moco_v2"
    with torch.no_grad():  # make query and key weights differ
        for p in method.encoder.parameters():
            p.add_(0.1)
    query = [p.clone() for p in method.encoder.parameters()]
    key = [p.clone() for p in method.key_encoder.parameters()]
    batch = views()
    queue_before = method.queue.embeddings.clone()
    loss = method(as_batch(batch))["loss"]
    for q, k, new in zip(query, key, method.key_encoder.parameters(), strict=True):
        torch.testing.assert_close(new, 0.9 * k + 0.1 * q)
    assert torch.equal(method.queue.embeddings, queue_before)  # backward reads it, uncopied
    loss.backward()
    method.finish_step()
    assert all(p.grad is None for p in method.key_encoder.parameters())
    assert all(p.grad is not None for p in method.encoder.parameters())
    with torch.no_grad():  # train mode: batch statistics, which do not depend on running stats
        keys = F.normalize(method.key_head(method.key_encoder(batch[1])), dim=1)
    torch.testing.assert_close(method.queue.embeddings[:6], keys)
    assert int(method.queue.pointer) == 6
    assert torch.equal(method.queue.embeddings[6:], queue_before[6:])


def test_moco_eval_mode_neither_updates_nor_enqueues_and_loss_is_info_nce():
    torch.manual_seed(0)
    method = build_method("moco", encoder=SMALL, dim=8, hidden_dim=16, queue_size=10).eval()
    key_before = [p.clone() for p in method.key_encoder.parameters()]
    queue = method.queue.embeddings.clone()
    batch = views()
    loss = method(as_batch(batch))["loss"]
    assert int(method.queue.pointer) == 0 and torch.equal(method.queue.embeddings, queue)
    assert all(torch.equal(a, b)
               for a, b in zip(key_before, method.key_encoder.parameters(), strict=True))
    with torch.no_grad():
        q = F.normalize(method.head(method.encoder(batch[0])), dim=1)
        k = F.normalize(method.key_head(method.key_encoder(batch[1])), dim=1)
    torch.testing.assert_close(loss, info_nce(q, k, queue, temperature=0.2))


def test_simclr_loss_is_nt_xent_of_the_projected_views_and_trains_the_encoder():
    torch.manual_seed(0)
    method = build_method("simclr", encoder=SMALL, dim=8, hidden_dim=16, temperature=0.3).eval()
    assert method.views == "simclr"
    batch = views()
    loss = method(as_batch(batch))["loss"]
    with torch.no_grad():
        first, second = (F.normalize(method.head(method.encoder(v)), dim=1) for v in batch)
    torch.testing.assert_close(loss, nt_xent(first, second, temperature=0.3))
    loss.backward()
    assert all(p.grad is not None for p in method.encoder.parameters())
