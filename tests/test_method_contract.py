"""Every registered method keeps the contract of ``seedzoo.training.methods.base`` (tiny models,
batch 4 at 32 px): loss, resume, views, eval mode, exported networks."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

import pytest
import torch
from torch import nn
from trainer_helpers import TINY_SWIN  # importing it registers the toy methods: they keep it too

from seedzoo.errors import SeedzooError
from seedzoo.training.encoder_specs import build_encoder
from seedzoo.training.methods import Batch, TrainingProgress, build_method, list_methods
from seedzoo.zoo.pretrained import MLPClassifier, save_classifier, save_pretrained

TINY_ENCODER = {"arch": "test_resnet", "pretrained_cfg": {"input_size": [3, 32, 32]}}
DATASET_SIZE, NUM_CLASSES, BATCH = 16, 3, 4


def tiny_classifier_teacher() -> str:
    """An encoder folder with a classifier of NUM_CLASSES beside it (as a supervised run writes),
    for the methods that distil logits; removed when the tests end."""
    folder = Path(tempfile.mkdtemp(prefix="seedzoo-contract-teacher-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    torch.manual_seed(0)
    encoder = build_encoder(TINY_ENCODER)
    save_pretrained(encoder, folder)
    save_classifier(nn.Linear(encoder.num_features, NUM_CLASSES), folder)
    return str(folder)


# SimCLR with SimCLRv2's head (3 layers, BatchNorm on each, hidden = encoder width) and memory.
TINY_SIMCLRV2 = {"encoder": TINY_ENCODER, "dim": 8, "hidden_dim": None, "head_layers": 3,
                 "head_output_batch_norm": True, "memory_size": 6, "memory_momentum": 0.9}


def tiny_pretrained_run() -> str:
    """A run folder as a simclr run leaves it (``encoder/`` and a checkpoint keeping the 3-layer
    projection head), for the fine-tuning method; removed when the tests end."""
    folder = Path(tempfile.mkdtemp(prefix="seedzoo-contract-pretrained-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    torch.manual_seed(0)
    method = build_method("simclr", **TINY_SIMCLRV2)
    save_pretrained(method.encoder, folder / "encoder")
    torch.save({"method": method.state_dict()}, folder / "checkpoint.pt")
    return str(folder)


# Tiny options of every registered method; a method registered without an entry fails below.
TINY = {
    "seed": {"student": TINY_ENCODER, "teacher": {"source": "timm:test_resnet"},
             "queue_size": 6, "hidden_dim": 16, "small_patch_queue_size": 6},
    "moco": {"encoder": TINY_ENCODER, "dim": 8, "hidden_dim": 16, "queue_size": 6,
             "momentum": 0.9},
    "simclr": TINY_SIMCLRV2,
    "supervised": {"encoder": TINY_ENCODER, "label_smoothing": 0.1},
    "kd": {"student": TINY_ENCODER, "teacher": tiny_classifier_teacher()},
    "dogo": {"peers": [TINY_ENCODER, {**TINY_ENCODER, "arch": "test_efficientnet"}],
             "peer_weights": [100, 1], "student": "peer1", "dim": 8, "hidden_dim": 16},
    "crd": {"student": TINY_ENCODER, "teacher": {"source": "timm:test_resnet"}, "feat_dim": 8,
            "nce_k": 6},
    "esvit": {"encoder": TINY_SWIN, "out_dim": 32, "hidden_dim": 16, "bottleneck_dim": 8},
    "finetune": {"pretrained": tiny_pretrained_run(), "head_layers": 1},
    "simclrv2_distill": {"student": TINY_ENCODER, "teacher": tiny_classifier_teacher(),
                         "temperature": 0.5, "label_weight": 0.5},
    "toy_contrastive": {"queue_size": 6},
    "toy_peers": {},
}

pytestmark = [pytest.mark.parametrize("name", list_methods()),
              pytest.mark.usefixtures("single_thread"),
              pytest.mark.filterwarnings("ignore:Teacher timm:UserWarning")]


def build(name: str, seed: int = 0):
    assert name in TINY, f"method {name!r} is registered but has no tiny options in TINY"
    torch.manual_seed(seed)
    return build_method(name, dataset_size=DATASET_SIZE, num_classes=NUM_CLASSES, **TINY[name])


def make_batch(views: int, seed: int = 0) -> Batch:
    generator = torch.Generator().manual_seed(seed)
    return Batch([torch.randn(BATCH, 3, 32, 32, generator=generator) for _ in range(views)],
                 torch.randint(NUM_CLASSES, (BATCH,), generator=generator),
                 torch.randperm(DATASET_SIZE, generator=generator)[:BATCH])


def full_batch(method) -> Batch:
    return make_batch(max(method.min_views, 2))


def state(method) -> dict[str, torch.Tensor]:
    """Every parameter and buffer (persistent or not), copied."""
    return {name: value.detach().clone()
            for name, value in [*method.named_parameters(), *method.named_buffers()]}


def assert_same_state(got: dict, expected: dict) -> None:
    assert got.keys() == expected.keys()
    changed = [name for name in expected if not torch.equal(got[name], expected[name])]
    assert not changed, f"changed: {changed[:5]}"


def test_forward_returns_a_finite_scalar_loss_that_backpropagates(name):
    method = build(name).train()
    outputs = method(full_batch(method))
    assert isinstance(outputs, dict) and "loss" in outputs
    assert all(value.ndim == 0 for value in outputs.values())
    assert torch.isfinite(outputs["loss"])
    outputs["loss"].backward()
    assert any(p.grad is not None for p in method.parameters())
    for encoder in method.encoders().values():  # trained by gradients, or a momentum copy
        trainable = [p for p in encoder.parameters() if p.requires_grad]
        assert not trainable or any(p.grad is not None for p in trainable)


def test_training_steps_with_their_hooks_change_every_exported_network(name):
    method = build(name).train()
    before = {key: [p.detach().clone() for p in encoder.parameters()]
              for key, encoder in method.encoders().items()}
    optimizer = torch.optim.SGD([p for p in method.parameters() if p.requires_grad], lr=0.5)
    for step in range(2):   # a zero-initialised classifier passes its encoder no first gradient
        optimizer.zero_grad()
        method.start_step(TrainingProgress(step=step, total_steps=10, steps_per_epoch=5))
        method(full_batch(method))["loss"].backward()
        for parameter in method.frozen_parameters():
            parameter.grad = None
        optimizer.step()
        method.finish_step()
    for key, encoder in method.encoders().items():
        assert any(not torch.equal(p, old) for p, old in
                   zip(encoder.parameters(), before[key], strict=True)), key


def test_state_dict_round_trip_resumes_exactly(name):
    method = build(name).train()
    method(full_batch(method))  # queues, pointers and momentum encoders move
    resumed = build(name, seed=1).train()
    resumed.load_state_dict(method.state_dict())
    assert_same_state(state(resumed), state(method))
    batch = make_batch(max(method.min_views, 2), seed=1)
    torch.testing.assert_close(resumed(batch)["loss"], method(batch)["loss"], rtol=0, atol=0)
    assert_same_state(state(resumed), state(method))


def test_too_few_views_is_a_clear_error(name):
    method = build(name)
    with pytest.raises(SeedzooError, match=f"at least {method.min_views} views"):
        method(make_batch(method.min_views - 1))


def test_eval_mode_forward_changes_no_state(name):
    method = build(name).train()
    method(full_batch(method))
    method.eval()
    before = state(method)
    method(make_batch(max(method.min_views, 2), seed=2))["loss"]
    assert_same_state(state(method), before)


def test_encoders_are_named_timm_networks_of_the_method(name):
    method = build(name)
    encoders = method.encoders()
    assert encoders and all(isinstance(key, str) for key in encoders)
    submodules = list(method.modules())
    for encoder in encoders.values():
        assert isinstance(encoder, nn.Module) and isinstance(encoder.pretrained_cfg, dict)
        assert "input_size" in encoder.pretrained_cfg
        assert any(encoder is module for module in submodules)  # trained, and in state_dict()


def test_describe_is_text_or_nothing(name):
    description = build(name).describe()
    assert description is None or (isinstance(description, str) and description)


def test_classifiers_are_heads_of_exported_networks(name):
    method = build(name)
    encoders, classifiers = method.encoders(), method.classifiers()
    assert isinstance(classifiers, dict) and set(classifiers) <= set(encoders)
    submodules = list(method.modules())
    batch = make_batch(1).views[0]
    for key, classifier in classifiers.items():
        assert isinstance(classifier, (nn.Linear, MLPClassifier))
        assert classifier.out_features == NUM_CLASSES
        assert any(classifier is module for module in submodules)
        with torch.no_grad():
            features = encoders[key].eval()(batch)
        assert classifier(features).shape == (BATCH, NUM_CLASSES)
