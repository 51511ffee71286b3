"""DoGo: the similarity-KL term by hand, gradients that never cross the detached targets, exact
resume, two gloo processes, and both peers exported and loadable (tiny models, seconds)."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.distributed as dist
from torch.nn import functional as F
from trainer_helpers import as_batch, method_state, spawn_processes, toy_recipe

import seedzoo
from seedzoo.cli import main as cli_main
from seedzoo.errors import SeedzooError
from seedzoo.training.config import config_from_dict
from seedzoo.training.methods import build_method
from seedzoo.training.methods.dogo import (
    cross_view_similarity,
    dogo_distillation,
    similarity_kl,
)
from seedzoo.training.methods.simclr import nt_xent
from seedzoo.training.trainer import train

pytestmark = pytest.mark.usefixtures("single_thread")

TINY = {"peers": ["test_resnet", "test_efficientnet"], "dim": 8, "hidden_dim": 16}


def build(**options):
    torch.manual_seed(0)
    return build_method("dogo", **{**TINY, **options})


def views(size=6, seed=1, count=4):
    """``count`` view batches: by default two per peer (each peer its own pair)."""
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(size, 3, 32, 32, generator=generator) for _ in range(count)]


def embeddings(method, images, own_views=True):
    """Each peer's two L2-normalised view embeddings: of views 2i and 2i+1 for peer i (own
    views), or of views 0 and 1 for every peer."""
    return [[F.normalize(head(peer(v)).float(), dim=1)
             for v in (images[2 * i:2 * i + 2] if own_views else images[:2])]
            for i, (peer, head) in enumerate(zip(method.peers, method.heads, strict=True))]


@pytest.mark.parametrize("own_views", [True, False])
def test_each_peer_embeds_its_own_views_or_the_shared_pair(own_views):
    method = build(own_views=own_views).eval()
    assert method.min_views == (4 if own_views else 2)
    assert method.view_options == {"num_views": method.min_views}
    images = views()
    pairs = embeddings(method, images, own_views)
    outputs = method(as_batch(images))
    for name, pair in zip(("peer0", "peer1"), pairs, strict=True):
        torch.testing.assert_close(outputs[f"ssl_{name}"], nt_xent(*pair, temperature=0.5).detach())
    with pytest.raises(SeedzooError, match=f"at least {method.min_views} views"):
        method(as_batch(images[:method.min_views - 1]))


def test_similarity_kl_matches_a_hand_computation():
    own = torch.tensor([[1.0, 0.0], [0.5, -0.5]])
    target = torch.tensor([[0.0, 1.0], [0.2, 0.2]])
    t = 0.5
    total = 0.0
    for own_row, target_row in zip(own.tolist(), target.tolist(), strict=True):
        q = [math.exp(x / t) for x in own_row]
        p = [math.exp(x / t) for x in target_row]
        q = [x / sum(q) for x in q]
        p = [x / sum(p) for x in p]
        total += sum(pi * math.log(pi / qi) for pi, qi in zip(p, q, strict=True))
    expected = total / 4  # element-wise mean over the N^2 = 4 entries
    got = similarity_kl(own, target, temperature=t)
    assert got.item() == pytest.approx(expected, rel=1e-6)
    assert similarity_kl(own, own, temperature=t).item() == pytest.approx(0.0, abs=1e-7)


def test_each_peer_is_pulled_towards_every_other_peer():
    matrices = [torch.randn(5, 5, generator=torch.Generator().manual_seed(i)) for i in range(3)]
    terms = dogo_distillation(matrices, temperature=0.1)
    for i in range(3):
        expected = sum(similarity_kl(matrices[i], matrices[j], temperature=0.1)
                       for j in range(3) if j != i)
        torch.testing.assert_close(terms[i], expected)


def test_cross_view_similarity_is_the_cosine_of_first_and_second_views():
    first, second = torch.randn(4, 3), torch.randn(4, 3)
    sims = cross_view_similarity(first, second)
    assert sims.shape == (4, 4)
    torch.testing.assert_close(sims[1, 2], F.cosine_similarity(first[1], second[2], dim=0))


def test_a_peer_s_distillation_term_reaches_only_that_peer():
    method = build().eval()
    pairs = embeddings(method, views())
    kd = dogo_distillation([cross_view_similarity(*pair) for pair in pairs], temperature=0.1)
    kd[0].backward()
    assert all(p.grad is None for p in [*method.peers[1].parameters(),
                                        *method.heads[1].parameters()])
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in method.peers[0].parameters())


def test_the_step_s_gradient_of_a_peer_is_its_own_ssl_and_kd_terms():
    """Peer 1 gets the gradient of ssl_1 + w_1 kd_1 and nothing from peer 0's terms (weighted
    1000 here, so a leak would show)."""
    images = views()
    method = build(peer_weights=[1000.0, 3.0]).eval()  # eval: BatchNorm repeatable
    outputs = method(as_batch(images))
    outputs["loss"].backward()
    got = [p.grad.clone() for p in method.peers[1].parameters()]

    reference = build(peer_weights=[1000.0, 3.0]).eval()
    pairs = embeddings(reference, images)
    kd = dogo_distillation([cross_view_similarity(*pair) for pair in pairs], temperature=0.1)
    ssl1 = nt_xent(*pairs[1], temperature=0.5)
    (ssl1 + 3.0 * kd[1]).backward()
    for mine, expected in zip(got, [p.grad for p in reference.peers[1].parameters()],
                              strict=True):
        torch.testing.assert_close(mine, expected, rtol=1e-4, atol=1e-6)
    for name in ("peer0", "peer1"):
        assert {f"ssl_{name}", f"kd_{name}"} <= set(outputs)
    total = sum(outputs[f"ssl_{n}"] + w * outputs[f"kd_{n}"]
                for n, w in zip(("peer0", "peer1"), (1000.0, 3.0), strict=True))
    torch.testing.assert_close(outputs["loss"].detach(), total)


@pytest.mark.parametrize("options, message", [
    ({"peers": ["test_resnet"]}, "two or more"),
    ({"names": ["a", "a"]}, "different names"),
    ({"names": ["a", "b/c"]}, "folder names"),
    ({"peer_weights": [1.0]}, "peer_weights"),
    ({"student": "peer7"}, "not a peer"),
    ({"kd_temperature": 0}, "positive"),
])
def test_bad_options_are_clear_errors(options, message):
    with pytest.raises(SeedzooError, match=message):
        build(**options)


def test_describe_names_the_peers_their_weights_and_the_student():
    method = build(names=["big", "small"], peer_weights=[100, 1], student="small")
    assert method.student == "small" and list(method.encoders()) == ["big", "small"]
    text = method.describe()
    assert "big (test_resnet, kd weight 100)" in text and "student: small" in text


# Two gloo processes -------------------------------------------------------------------------

WORLD, BATCH = 2, 4  # per process
WEIGHTS = [100.0, 1.0]


def _worker(rank, port, out):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=WORLD)
    try:
        mine = slice(rank * BATCH, (rank + 1) * BATCH)
        method = build(peer_weights=WEIGHTS).eval()  # eval: no batch statistics
        outputs = method(as_batch([view[mine] for view in views(WORLD * BATCH)]))
        outputs["loss"].backward()
        grads = [p.grad.clone() for p in method.parameters()]
        for grad in grads:  # what DDP does
            dist.all_reduce(grad)
            grad /= WORLD
        torch.save({"grads": grads, "keys": sorted(outputs)}, out / f"{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def distributed_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("dogo_distributed")
    return spawn_processes(_worker, out, WORLD)


def test_two_processes_give_global_negatives_and_per_process_distillation(distributed_results):
    """NT-Xent over the global batch (gathered negatives), the KL term the mean of each
    process's own N x N term."""
    method = build(peer_weights=WEIGHTS).eval()
    pairs = embeddings(method, views(WORLD * BATCH))
    loss = sum(nt_xent(*pair, temperature=0.5) for pair in pairs)
    for rank in range(WORLD):
        mine = slice(rank * BATCH, (rank + 1) * BATCH)
        kd = dogo_distillation([cross_view_similarity(a[mine], b[mine]) for a, b in pairs],
                               temperature=0.1)
        loss = loss + sum(w * k for w, k in zip(WEIGHTS, kd, strict=True)) / WORLD
    loss.backward()
    expected = [p.grad for p in method.parameters()]
    for result in distributed_results:
        assert result["keys"] == ["kd_peer0", "kd_peer1", "loss", "ssl_peer0", "ssl_peer1"]
        for got, want in zip(result["grads"], expected, strict=True):
            torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


# The trainer ---------------------------------------------------------------------------------

DOGO_METHOD = {"name": "dogo", "peers": ["test_resnet", "test_efficientnet"], "dim": 8,
               "hidden_dim": 16, "peer_weights": [100, 1], "names": ["big", "small"],
               "student": "small"}


def _run(tmp_path, name, resume=False, **sections):
    return train(config_from_dict(toy_recipe(method=DOGO_METHOD, **sections)), tmp_path / name,
                 resume=resume)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("dogo_reference")
    summary = _run(tmp_path, "run")
    return tmp_path / "run", summary


def test_a_run_logs_each_peer_and_exports_both_loadable(uninterrupted, tmp_path, capsys):
    run_dir, summary = uninterrupted
    assert summary["finished"] and summary["steps"] == 12
    assert summary["encoders"] == {name: str(run_dir / name) for name in ("big", "small")}
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert {"ssl_big", "kd_big", "ssl_small", "kd_small", "knn_top1_big",
            "knn_top1_small"} <= set().union(*rows)
    state = method_state(run_dir)
    for index, name in enumerate(("big", "small")):
        encoder = seedzoo.load(str(run_dir / name))
        assert tuple(encoder.pretrained_cfg["input_size"]) == (3, 16, 16)  # training crops
        for key, value in encoder.state_dict().items():
            torch.testing.assert_close(value, state[f"peers.{index}.{key}"], rtol=0, atol=0)
    out = tmp_path / "small.json"
    assert cli_main(["eval", "--model", str(run_dir / "small"), "--dataset", "digits",
                     "--protocol", "knn", "--limit-train", "200", "--limit-test", "50",
                     "--workers", "0", "--quiet", "--no-cache", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["metrics"]["knn_top1@20"] > 0.2  # chance: 0.1


def test_killed_and_resumed_run_ends_with_the_same_weights(tmp_path, uninterrupted):
    reference, _ = uninterrupted
    stopped = _run(tmp_path, "run", train={"max_steps": 5})
    assert not stopped["finished"]
    resumed = _run(tmp_path, "run", resume=True)
    assert resumed["finished"] and resumed["steps"] == 12
    expected, got = method_state(reference), method_state(tmp_path / "run")
    assert expected.keys() == got.keys()
    for key in expected:  # both peers, both heads, BatchNorm statistics
        torch.testing.assert_close(got[key], expected[key], rtol=1e-6, atol=1e-7, msg=key)
