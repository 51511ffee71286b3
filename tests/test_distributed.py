"""Two processes (torchrun, gloo on CPU) against one with the same global batch: SEED end to end."""

from __future__ import annotations

import pytest
import torch
import yaml
from trainer_helpers import torchrun_train

from seedzoo.training import distributed
from seedzoo.training.checkpointing import load_checkpoint
from seedzoo.training.config import config_from_dict
from seedzoo.training.trainer import train

GLOBAL_BATCH = 16

# SEED from a (random, frozen) tiny teacher into a tiny student with BatchNorm; 64 digits at 16 px
# give 4 steps of 16; the queue (48) wraps during the run.
RECIPE = {
    "method": {"name": "seed", "student": "test_efficientnet",
               "teacher": {"source": "timm:test_resnet"}, "queue_size": 48, "hidden_dim": 32},
    "data": {"dataset": "digits", "image_size": 16, "batch_size": GLOBAL_BATCH, "limit": 64,
             "workers": 0},
    "train": {"epochs": 1, "lr": 0.1, "warmup_epochs": 0.5, "sync_bn": True, "seed": 3},
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("distributed")
    recipe = tmp_path / "seed.yaml"
    recipe.write_text(yaml.safe_dump(RECIPE))
    torchrun_train(recipe, tmp_path / "two")
    train(config_from_dict(RECIPE), tmp_path / "one")
    return (load_checkpoint(tmp_path / "one" / "checkpoint.pt"),
            load_checkpoint(tmp_path / "two" / "checkpoint.pt"), tmp_path)


def test_queue_holds_the_embeddings_of_both_processes(runs):
    one, two, _ = runs
    assert one["progress"]["global_step"] == two["progress"]["global_step"] == 4
    # 4 steps x 16 embeddings went into a queue of 48: each process saw only 32 images.
    assert int(two["method"]["queue.pointer"]) == int(one["method"]["queue.pointer"]) == 16
    # Each process holds every other image of a global batch (DistributedSampler), and the
    # gather puts process 0's 8 rows before process 1's: the same rows, interleaved.
    interleave = torch.cat([torch.arange(0, GLOBAL_BATCH, 2), torch.arange(1, GLOBAL_BATCH, 2)])
    order = torch.cat([block * GLOBAL_BATCH + interleave for block in range(48 // GLOBAL_BATCH)])
    torch.testing.assert_close(two["method"]["queue.embeddings"],
                               one["method"]["queue.embeddings"][order], rtol=1e-4, atol=1e-5)


def test_two_processes_match_one_with_the_same_global_batch(runs):
    one, two, _ = runs
    for key, expected in one["method"].items():
        if key.startswith(("encoder.", "head.")):  # student weights and BN statistics
            torch.testing.assert_close(two["method"][key], expected, rtol=1e-4, atol=1e-5,
                                       msg=key)
    assert two["rng"]["torch"].shape[0] == 2  # each process's RNG state is kept


def test_distributed_run_exports_a_loadable_encoder(runs):
    _, _, tmp_path = runs
    import seedzoo

    encoder = seedzoo.load(str(tmp_path / "two" / "encoder"))
    assert encoder(torch.randn(2, 3, 16, 16)).shape[0] == 2


def test_cpu_sync_batchnorm_conversion_keeps_timm_norm_act_layers():
    import timm
    from timm.layers import BatchNormAct2d

    reference = timm.create_model("test_efficientnet", num_classes=0).eval()
    model = timm.create_model("test_efficientnet", num_classes=0).eval()
    model.load_state_dict(reference.state_dict())
    model = distributed.convert_sync_batchnorm(model, torch.device("cpu"))
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert norms and all(type(m).__name__.startswith("Sync") for m in norms)
    assert any(isinstance(m, BatchNormAct2d) for m in norms)
    x = torch.randn(2, 3, 16, 16)
    torch.testing.assert_close(model(x), reference(x))  # outside a process group: plain BN
