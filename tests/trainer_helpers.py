"""A tiny method and recipe for the trainer's tests (the trainer knows nothing of real methods),
a tiny Swin encoder spec, and Batch construction for the methods' tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import torch
import torch.multiprocessing as mp
from torch import nn
from torch.nn import functional as F

from seedzoo.training.methods.base import Batch, Method, register_method
from seedzoo.training.queue import EmbeddingQueue
from seedzoo.zoo.pretrained import create_encoder


def tiny_swin(image_size: int = 32) -> dict:
    """The encoder spec of a two-stage Swin for ``image_size`` px images that also takes other
    sizes (multi-crop's local views), without stochastic depth, so that a forward pass draws
    nothing random."""
    return {"arch": "swin_tiny_patch4_window7_224",
            "model_args": {"img_size": image_size, "patch_size": 4, "window_size": 4,
                           "embed_dim": 16, "depths": [1, 1], "num_heads": [1, 2],
                           "strict_img_size": False, "drop_path_rate": 0.0},
            "pretrained_cfg": {"input_size": [3, image_size, image_size]}}


TINY_SWIN = tiny_swin()


@register_method("toy_contrastive")
class ToyContrastive(Method):
    """InfoNCE between two views with a FIFO queue of negatives: a queue, BatchNorm and
    augmentations, i.e. everything a resume must restore, in a model that trains in seconds.

    ``nan_at_call`` makes the loss NaN at that training forward call (counted in a buffer);
    ``inf_state_at_call`` makes a buffer infinite there while the loss stays finite.
    """

    views = "moco_v2"
    min_views = 2

    def __init__(self, arch: str = "test_resnet", dim: int = 16, queue_size: int = 64,
                 nan_at_call: int | None = None, inf_state_at_call: int | None = None):
        super().__init__()
        self.encoder = create_encoder(arch)
        self.head = nn.Linear(self.encoder.num_features, dim)
        self.queue = EmbeddingQueue(queue_size, dim)
        self.register_buffer("calls", torch.zeros((), dtype=torch.long))
        self.register_buffer("scale", torch.ones(()))
        self.nan_at_call, self.inf_state_at_call = nan_at_call, inf_state_at_call

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        self.check_views(batch.views)
        query, key = (F.normalize(self.head(self.encoder(v)), dim=1) for v in batch.views[:2])
        logits = torch.cat([(query * key).sum(1, keepdim=True),
                            query @ self.queue.embeddings.clone().T], dim=1) / 0.2
        loss = F.cross_entropy(logits, torch.zeros(len(query), dtype=torch.long))
        if self.training:
            self.calls += 1
            self.queue.enqueue(key.detach())
        if self.nan_at_call is not None and int(self.calls) == self.nan_at_call:
            loss = loss * float("nan")
        if self.inf_state_at_call is not None and int(self.calls) == self.inf_state_at_call:
            self.scale.fill_(float("inf"))
        return {"loss": loss, "positive_similarity": (query * key).sum(1).mean().detach()}


@register_method("toy_peers")
class ToyPeers(Method):
    """Two peers, each classifying the labels of one view: what the trainer serves beyond views
    (labels, sample indices, dataset size, class count) and several exported networks, each
    with its classifier.

    The buffer ``seen`` counts the training forwards that saw each sample index.
    """

    views = "moco_v2"
    min_views = 2
    needs_labels = True

    def __init__(self, *, num_classes: int, dataset_size: int, arch: str = "test_resnet"):
        super().__init__()
        self.peers = nn.ModuleList(create_encoder(arch) for _ in range(2))
        self.heads = nn.ModuleList(nn.Linear(p.num_features, num_classes) for p in self.peers)
        self.register_buffer("seen", torch.zeros(dataset_size, dtype=torch.long))

    def encoders(self) -> dict[str, nn.Module]:
        return {f"peer{i}": peer for i, peer in enumerate(self.peers)}

    def classifiers(self) -> dict[str, nn.Linear]:
        return {f"peer{i}": head for i, head in enumerate(self.heads)}

    def describe(self) -> str:
        return f"toy_peers: {len(self.peers)} peers"

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        self.check_views(batch.views)
        losses = [F.cross_entropy(classifier(peer(view)), batch.labels)
                  for peer, classifier, view in zip(self.peers, self.heads, batch.views,
                                                    strict=False)]
        if self.training:
            self.seen[batch.indices] += 1
        return {"loss": sum(losses) / len(losses)}


def as_batch(views: list[torch.Tensor]) -> Batch:
    """A Batch of ``views`` with no labels (-1) and sample indices 0..N-1."""
    size = len(views[0])
    return Batch(views, torch.full((size,), -1), torch.arange(size))


def toy_recipe(**sections) -> dict:
    """A recipe of a few seconds: 96 digits at 16 px, batch 16 (6 steps per epoch), 2 epochs,
    with the k-NN monitor after each epoch."""
    recipe = {
        "method": {"name": "toy_contrastive"},
        "data": {"dataset": "digits", "image_size": 16, "batch_size": 16, "limit": 96,
                 "workers": 0},
        "train": {"epochs": 2, "optimizer": "sgd", "lr": 0.05, "warmup_epochs": 1,
                  "checkpoint_every_steps": 2, "log_every_steps": 2,
                  "knn_monitor": {"every_epochs": 1, "train_limit": 200, "test_limit": 100,
                                  "k": 5}},
    }
    for section, values in sections.items():
        recipe.setdefault(section, {}).update(values)
    return recipe


def spawn_processes(worker, out: Path, world: int) -> list[dict]:
    """Run ``worker(rank, port, out)`` in ``world`` processes (a free local port for their
    process group) and return what each saved as ``out/<rank>.pt``."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(worker, args=(port, out), nprocs=world, join=True)
    return [torch.load(out / f"{rank}.pt") for rank in range(world)]


def torchrun_train(recipe: Path, out: Path) -> None:
    """``seedzoo train`` of ``recipe`` into ``out`` under torchrun: two processes, gloo on CPU."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         "-m", "seedzoo", "train", "--config", str(recipe), "--out", str(out)],
        env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def method_state(run_dir: Path) -> dict:
    """The method's state in the checkpoint of ``run_dir``."""
    from seedzoo.training.checkpointing import load_checkpoint

    return load_checkpoint(run_dir / "checkpoint.pt")["method"]
