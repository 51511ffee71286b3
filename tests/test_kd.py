"""Supervised training and KD (Hinton): the loss by hand, exported classifiers, teachers that
give logits or are picked by name, exact resume (tiny models on digits, seconds)."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn
from trainer_helpers import toy_recipe

import seedzoo
from seedzoo.errors import ModelNotFoundError, SeedzooError
from seedzoo.training.checkpointing import load_checkpoint
from seedzoo.training.config import config_from_dict
from seedzoo.training.encoder_specs import build_encoder
from seedzoo.training.methods import build_method
from seedzoo.training.methods.kd import kd_loss
from seedzoo.training.teachers import load_backbone, load_classifier_teacher
from seedzoo.training.trainer import train
from seedzoo.zoo.layout import CLASSIFIER_CONFIG_NAME, CLASSIFIER_WEIGHTS_NAME
from seedzoo.zoo.pretrained import load_classifier, save_classifier, save_pretrained

pytestmark = pytest.mark.usefixtures("single_thread")

TINY = {"arch": "test_resnet"}
NO_MONITOR = {"knn_monitor": {"every_epochs": 0}}


def _recipe(method: dict, **train_options) -> dict:
    return toy_recipe(method=method, train={**NO_MONITOR, **train_options})


def _supervised(**options) -> dict:
    return {"name": "supervised", "encoder": TINY, **options}


def _kd(teacher: str) -> dict:
    return {"name": "kd", "student": TINY, "teacher": teacher, "temperature": 4.0}


def _method_state(run_dir):
    return load_checkpoint(run_dir / "checkpoint.pt")["method"]


def _assert_same_weights(got_dir, expected_dir):
    expected, got = _method_state(expected_dir), _method_state(got_dir)
    assert expected.keys() == got.keys()
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=1e-6, atol=1e-7, msg=key)


def _resumed(tmp_path, method: dict):
    """A run stopped at step 5 of 12 (mid-epoch 1), then resumed to the end."""
    run_dir = tmp_path / "resumed"
    stopped = train(config_from_dict(_recipe(method, max_steps=5)), run_dir)
    assert not stopped["finished"]
    resumed = train(config_from_dict(_recipe(method)), run_dir, resume=True)
    assert resumed["finished"] and resumed["steps"] == 12
    return run_dir


@pytest.fixture(scope="module")
def supervised_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("supervised") / "run"
    summary = train(config_from_dict(_recipe(_supervised(label_smoothing=0.1))), run_dir)
    return run_dir, summary


@pytest.fixture(scope="module")
def kd_run(tmp_path_factory, supervised_run):
    run_dir = tmp_path_factory.mktemp("kd") / "run"
    summary = train(config_from_dict(_recipe(_kd(str(supervised_run[0])))), run_dir)
    return run_dir, summary


# -- the loss -----------------------------------------------------------------------------------

def test_kd_loss_is_the_batch_mean_kl_at_temperature_times_t_squared():
    # Row 1: teacher softmax([2 ln 3, 0] / 2) = (3/4, 1/4), student (1/2, 1/2);
    # row 2: both alike, KL 0. batchmean halves the sum; T^2 = 4.
    teacher = torch.tensor([[2 * math.log(3), 0.0], [1.0, -1.0]])
    student = torch.tensor([[0.0, 0.0], [1.0, -1.0]])
    by_hand = 4 * (0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)) / 2
    assert kd_loss(student, teacher, 2.0).item() == pytest.approx(by_hand, rel=1e-6)
    assert kd_loss(teacher, teacher, 2.0).item() == pytest.approx(0.0, abs=1e-7)


def test_kd_loss_scales_with_t_squared():
    generator = torch.Generator().manual_seed(0)
    student, teacher = torch.randn(2, 5, 7, generator=generator)
    # Logits and temperature doubled: the same distributions, so only T^2 changes (x4).
    torch.testing.assert_close(kd_loss(2 * student, 2 * teacher, 8.0),
                               4 * kd_loss(student, teacher, 4.0))


def test_kd_loss_gradient_reaches_the_student_only():
    student = torch.randn(4, 3, requires_grad=True)
    teacher = torch.randn(4, 3, requires_grad=True)
    kd_loss(student, teacher.detach(), 4.0).backward()
    assert student.grad is not None and teacher.grad is None


# -- supervised ---------------------------------------------------------------------------------

def test_supervised_run_exports_encoder_and_classifier_with_the_same_logits(supervised_run):
    run_dir, summary = supervised_run
    assert summary["finished"] and math.isfinite(summary["final_loss"])
    folder = run_dir / "encoder"
    assert (folder / CLASSIFIER_WEIGHTS_NAME).is_file()
    info = json.loads((folder / CLASSIFIER_CONFIG_NAME).read_text())
    assert info["num_classes"] == 10 and len(info["classes"]) == 10
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert "train_top1" in rows[0]

    encoder = seedzoo.load(str(run_dir))  # the folder loads as before: the encoder alone
    classifier = load_classifier(folder)
    assert info["in_features"] == classifier.in_features and classifier.classes == info["classes"]
    trained = build_method("supervised", num_classes=10, encoder=TINY)
    trained.load_state_dict(_method_state(run_dir))
    trained.eval()
    images = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(classifier(encoder(images)),
                                   trained.classifier(trained.encoder(images)))


def test_supervised_resumes_to_the_same_weights(tmp_path, supervised_run):
    _assert_same_weights(_resumed(tmp_path, _supervised(label_smoothing=0.1)), supervised_run[0])


# -- kd -----------------------------------------------------------------------------------------

def test_kd_trains_from_a_supervised_run_and_exports_a_teacher_in_turn(kd_run, supervised_run,
                                                                        capsys):
    run_dir, summary = kd_run
    assert summary["finished"] and math.isfinite(summary["final_loss"])
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert {"loss_kd", "loss_ce", "train_top1", "teacher_top1"} <= set(rows[0])
    state = _method_state(run_dir)
    teacher_state = _method_state(supervised_run[0])
    for key in ("weight", "bias"):  # the teacher stayed frozen
        assert torch.equal(state[f"teacher_classifier.{key}"], teacher_state[f"classifier.{key}"])
    encoder, classifier, report = load_classifier_teacher(str(run_dir))  # the student teaches
    assert classifier.out_features == 10 and "classifier.weight" in report.loaded


def test_kd_resumes_to_the_same_weights(tmp_path, kd_run, supervised_run):
    _assert_same_weights(_resumed(tmp_path, _kd(str(supervised_run[0]))), kd_run[0])


def test_kd_describes_its_teacher_load(supervised_run):
    method = build_method("kd", num_classes=10, student=TINY, teacher=str(supervised_run[0]))
    assert str(supervised_run[0] / "encoder") in method.describe()
    assert not any(p.requires_grad for p in method.teacher.parameters())
    assert not method.train().teacher.training


def test_a_teacher_without_classifier_is_a_clear_error(tmp_path):
    save_pretrained(build_encoder(TINY), tmp_path / "ssl")
    with pytest.raises(ModelNotFoundError, match="no classifier.*train a `supervised` run first"):
        build_method("kd", num_classes=10, student=TINY, teacher=str(tmp_path / "ssl"))
    with pytest.raises(ModelNotFoundError, match="supervised, kd, finetune or simclrv2_distill"):
        load_classifier_teacher("timm:test_resnet")


def test_a_teacher_of_other_classes_is_a_clear_error(supervised_run):
    with pytest.raises(SeedzooError, match="classifies 10 classes, but the training data has 3"):
        build_method("kd", num_classes=3, student=TINY, teacher=str(supervised_run[0]))


def _two_networks(folder):
    torch.manual_seed(0)
    for name in ("peer0", "peer1"):
        encoder = build_encoder(TINY)
        save_pretrained(encoder, folder / name)
        save_classifier(nn.Linear(encoder.num_features, 4), folder / name)
    return folder


def test_a_multi_network_run_folder_needs_a_network_name(tmp_path):
    run = _two_networks(tmp_path / "peers")
    for load in (load_backbone, load_classifier_teacher):
        with pytest.raises(ModelNotFoundError, match=r"several networks \(peer0, peer1\).*"
                                                     "teacher network: peer0"):
            load(str(run))
    with pytest.raises(ModelNotFoundError, match=r"several networks \(peer0, peer1\).*peer0"):
        seedzoo.load(str(run))
    with pytest.raises(ModelNotFoundError, match="no network 'peer2'.*peer0, peer1"):
        load_backbone(str(run), network="peer2")
    by_name = load_classifier_teacher(str(run), network="peer1")
    by_path = load_classifier_teacher(str(run / "peer1"))
    for a, b in zip(by_name[:2], by_path[:2], strict=True):
        for (key, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
            assert torch.equal(x, y), key
    method = build_method("kd", num_classes=4, student=TINY,
                          teacher={"source": str(run), "network": "peer1"})
    assert torch.equal(method.teacher_classifier.weight, by_path[1].weight)


def test_classifier_files_round_trip_and_refuse_mismatches(tmp_path):
    head = nn.Linear(6, 3)
    save_classifier(head, tmp_path, classes=["a", "b", "c"])
    loaded = load_classifier(tmp_path)
    assert torch.equal(loaded.weight, head.weight) and torch.equal(loaded.bias, head.bias)
    assert loaded.classes == ["a", "b", "c"] and not loaded.training
    with pytest.raises(ValueError, match="2 class names"):
        save_classifier(head, tmp_path, classes=["a", "b"])
    info = json.loads((tmp_path / CLASSIFIER_CONFIG_NAME).read_text())
    (tmp_path / CLASSIFIER_CONFIG_NAME).write_text(json.dumps({**info, "num_classes": 5}))
    with pytest.raises(seedzoo.errors.CheckpointError, match="num_classes"):
        load_classifier(tmp_path)
    with pytest.raises(ModelNotFoundError, match="keeps no classifier"):
        load_classifier(tmp_path / "elsewhere")
