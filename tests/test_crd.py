"""CRD: the NCE loss against a hand computation, the memory banks (momentum update, duplicates,
the anchor never a negative), the fixed normalising constants, the paper's KD and CE terms on a
student classifier, exact resume in the trainer (label-free and CRD+KD+CE) and two gloo processes
keeping identical banks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.distributed as dist
from torch import nn
from torch.nn import functional as F
from trainer_helpers import spawn_processes, toy_recipe

from seedzoo.data.datasets import ArrayImageDataset
from seedzoo.errors import ModelNotFoundError, SeedzooError
from seedzoo.training.checkpointing import load_checkpoint
from seedzoo.training.config import config_from_dict
from seedzoo.training.encoder_specs import build_encoder
from seedzoo.training.methods import Batch, build_method, method_needs_labels
from seedzoo.training.methods.crd import (
    crd_nce_loss,
    initial_bank,
    momentum_update,
    nce_criterion,
    sample_negatives,
)
from seedzoo.training.methods.kd import kd_loss
from seedzoo.training.trainer import train
from seedzoo.zoo.layout import CLASSIFIER_WEIGHTS_NAME
from seedzoo.zoo.pretrained import load_classifier, save_classifier, save_pretrained

pytestmark = [pytest.mark.usefixtures("single_thread"),
              pytest.mark.filterwarnings("ignore:Teacher timm:UserWarning")]

TINY_ENCODER = {"arch": "test_resnet", "pretrained_cfg": {"input_size": [3, 32, 32]}}


def build_crd(dataset_size=20, seed=0, **options):
    torch.manual_seed(seed)
    options = {"student": TINY_ENCODER, "teacher": {"source": "timm:test_resnet"},
               "feat_dim": 8, "nce_k": 6, **options}
    return build_method("crd", dataset_size=dataset_size, **options)


def batch_of(images, indices):
    return Batch([images], torch.full((len(indices),), -1), torch.as_tensor(indices))


def test_nce_loss_matches_a_hand_computation():
    anchors = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    rows = torch.tensor([[[0.6, 0.8], [1.0, 0.0], [0.0, -1.0]],    # positive, then 2 negatives
                         [[0.0, 1.0], [0.8, 0.6], [-0.6, 0.8]]])
    tau, z, n, eps = 0.5, 3.0, 10, 1e-7
    dots = [[0.6, 1.0, 0.0], [1.0, 0.6, 0.8]]
    noise = 2 / n  # m P_n, m = K = 2
    total = 0.0
    for row in dots:
        p = [math.exp(d / tau) / z for d in row]
        total += math.log(p[0] / (p[0] + noise + eps))
        total += sum(math.log(noise / (q + noise + eps)) for q in p[1:])
    expected = -total / 2
    got = crd_nce_loss(anchors, rows, temperature=tau, normaliser=z, dataset_size=n)
    assert got.item() == pytest.approx(expected, rel=1e-6)
    probs = torch.tensor([[0.5, 0.1, 0.2]])
    assert nce_criterion(probs, 4).item() == pytest.approx(
        -(math.log(0.5 / (0.5 + 0.5 + 1e-7)) + math.log(0.5 / (0.6 + 1e-7))
          + math.log(0.5 / (0.7 + 1e-7))), rel=1e-6)


def test_momentum_update_renormalises_and_the_last_duplicate_wins():
    bank = F.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.0]]), dim=1)
    before = bank.clone()
    embeddings = torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.0, -1.0], [0.6, 0.8]])
    momentum_update(bank, torch.tensor([0, 2, 0, 1]), embeddings, 0.5)
    assert torch.allclose(bank[0], F.normalize(0.5 * before[0] + 0.5 * embeddings[2], dim=0))
    assert torch.allclose(bank[0], torch.tensor([1.0, -1.0]) / math.sqrt(2))  # last of index 0
    assert torch.allclose(bank[1], F.normalize(0.5 * before[1] + 0.5 * embeddings[3], dim=0))
    assert torch.allclose(bank[2], F.normalize(0.5 * before[2] + 0.5 * embeddings[1], dim=0))
    assert torch.equal(bank[3], before[3])
    assert torch.allclose(bank.norm(dim=1), torch.ones(4))


def test_negatives_never_contain_the_anchor_and_cover_every_other_row():
    torch.manual_seed(0)
    anchors = torch.tensor([0, 3, 4, 3])
    negatives = sample_negatives(anchors, 5, 2000)
    assert negatives.shape == (4, 2000)
    assert not (negatives == anchors.unsqueeze(1)).any()
    for anchor, row in zip(anchors.tolist(), negatives, strict=True):
        counts = torch.bincount(row, minlength=5)
        assert counts[anchor] == 0 and (counts[[i for i in range(5) if i != anchor]] > 400).all()


def test_banks_start_as_in_the_reference():
    bank = initial_bank(1000, 12)
    stdv = 1 / math.sqrt(12 / 3)
    assert bank.abs().max() <= stdv and bank.min() < -0.9 * stdv and bank.max() > 0.9 * stdv


def test_training_forward_scores_the_old_banks_then_updates_them():
    method = build_crd(nce_t=0.2, crd_weight=0.5).train()
    assert method.views == "single" and not method.teacher.training
    images, indices = torch.randn(4, 3, 32, 32), torch.tensor([3, 7, 7, 11])  # a duplicate
    student_bank, teacher_bank = method.student_bank.clone(), method.teacher_bank.clone()
    generator = method._generator(torch.device("cpu"))  # the draws of training step 0
    out = method(batch_of(images, indices))
    assert int(method.draws) == 1
    student = method.embed_student(method.encoder(images))  # train-mode BN: same batch, same out
    with torch.no_grad():
        teacher = method.embed_teacher(method.teacher(images))
    candidates = torch.cat([indices[:, None], sample_negatives(indices, 20, 6, generator)], 1)
    assert not (candidates[:, 1:] == indices[:, None]).any()
    scores_s = torch.exp(torch.bmm(teacher_bank[candidates], student[:, :, None])[..., 0] / 0.2)
    scores_t = torch.exp(torch.bmm(student_bank[candidates], teacher[:, :, None])[..., 0] / 0.2)
    z = torch.stack([scores_s.mean() * 20, scores_t.mean() * 20])
    torch.testing.assert_close(method.normalisers, z)
    expected = 0.5 * (crd_nce_loss(student, teacher_bank[candidates], temperature=0.2,
                                   normaliser=z[0], dataset_size=20)
                      + crd_nce_loss(teacher, student_bank[candidates], temperature=0.2,
                                     normaliser=z[1], dataset_size=20))
    torch.testing.assert_close(out["loss"], expected)
    for bank, before, new in ((method.student_bank, student_bank, student),
                              (method.teacher_bank, teacher_bank, teacher)):
        for row, position in ((3, 0), (7, 2), (11, 3)):  # index 7: the last occurrence wins
            expected = F.normalize(0.5 * before[row] + 0.5 * new[position], dim=0)
            torch.testing.assert_close(bank[row], expected)
        untouched = [i for i in range(20) if i not in (3, 7, 11)]
        assert torch.equal(bank[untouched], before[untouched])
    out["loss"].backward()
    assert method.embed_teacher.linear.weight.grad is not None
    assert all(p.grad is None for p in method.teacher.parameters())


def test_normalisers_are_set_once_in_training_and_never_in_eval():
    method = build_crd().eval()
    images = torch.randn(4, 3, 32, 32)
    method(batch_of(images, [0, 1, 2, 3]))
    assert (method.normalisers < 0).all()
    method.train()
    method(batch_of(images, [0, 1, 2, 3]))
    first = method.normalisers.clone()
    assert (first > 0).all()
    method(batch_of(torch.randn(4, 3, 32, 32), [4, 5, 6, 7]))
    assert torch.equal(method.normalisers, first)
    assert "normalisers" in method.state_dict() and "draws" in method.state_dict()


def test_state_dict_carries_banks_teacher_and_embeddings():
    keys = set(build_crd().state_dict())
    assert {"student_bank", "teacher_bank", "normalisers", "draw_seed", "draws",
            "embed_student.linear.weight", "embed_teacher.linear.weight"} <= keys
    assert any(k.startswith("teacher.") for k in keys)
    assert "2 x 20 x 8 floats" in build_crd().describe()


def test_a_bank_not_larger_than_k_is_a_clear_error():
    with pytest.raises(SeedzooError, match=r"lower method.nce_k below 20"):
        build_crd(dataset_size=20, nce_k=20)
    build_crd(dataset_size=21, nce_k=20)


# -- CRD + KD + CE: the paper's full loss ---------------------------------------------------------

@pytest.fixture(scope="module")
def classifier_teacher(tmp_path_factory):
    """A tiny encoder folder with a 10-class classifier beside it: a teacher that gives logits."""
    folder = tmp_path_factory.mktemp("crd_teacher") / "teacher"
    torch.manual_seed(1)
    encoder = build_encoder(TINY_ENCODER)
    save_pretrained(encoder, folder)
    save_classifier(nn.Linear(encoder.num_features, 10), folder)
    return str(folder)


def test_crd_kd_ce_loss_is_the_weighted_sum_of_its_terms(classifier_teacher):
    method = build_crd(teacher=classifier_teacher, num_classes=10, crd_weight=0.8, kd_weight=1.0,
                       ce_weight=0.5, kd_temperature=2.0).train()
    images, labels = torch.randn(4, 3, 32, 32), torch.tensor([0, 3, 3, 9])
    out = method(Batch([images], labels, torch.tensor([1, 4, 8, 13])))
    student_logits = method.classifier(method.encoder(images))  # train-mode BN: the same output
    with torch.no_grad():
        teacher_logits = method.teacher_classifier(method.teacher(images))
    kd = kd_loss(student_logits, teacher_logits, 2.0)
    ce = F.cross_entropy(student_logits, labels)
    crd = out["crd_student_anchor"] + out["crd_teacher_anchor"]
    torch.testing.assert_close(out["loss_kd"], kd.detach())
    torch.testing.assert_close(out["loss_ce"], ce.detach())
    torch.testing.assert_close(out["loss"], 0.8 * crd + 1.0 * kd + 0.5 * ce)
    out["loss"].backward()
    assert method.classifier.weight.grad.abs().sum() > 0
    assert next(method.encoder.parameters()).grad.abs().sum() > 0
    assert all(p.grad is None for p in method.teacher_classifier.parameters())
    assert not method.teacher_classifier.training and not method.teacher.training
    assert method.classifiers() == {"encoder": method.classifier}


def test_label_free_crd_has_no_classifier_and_reads_no_labels():
    method = build_crd()
    assert method.classifier is None and method.classifiers() == {}
    assert not any(key.startswith(("classifier", "teacher_classifier"))
                   for key in method.state_dict())
    assert not method_needs_labels("crd", {"kd_weight": 1.0, "crd_weight": 0.8})
    assert method_needs_labels("crd", {"ce_weight": 1.0})


def test_crd_kd_without_labels_takes_the_teachers_classes(classifier_teacher):
    method = build_crd(teacher=classifier_teacher, num_classes=0, kd_weight=1.0)
    assert method.classifier.out_features == 10


def test_crd_option_mistakes_are_clear_errors(tmp_path, classifier_teacher):
    save_pretrained(build_encoder(TINY_ENCODER), tmp_path / "ssl")
    with pytest.raises(ModelNotFoundError, match="no classifier.*train a `supervised` run first"):
        build_crd(teacher=str(tmp_path / "ssl"), num_classes=10, kd_weight=1.0)
    with pytest.raises(SeedzooError, match="classifies 10 classes, but the training data has 3"):
        build_crd(teacher=classifier_teacher, num_classes=3, kd_weight=1.0)
    with pytest.raises(SeedzooError, match="non-negative and not all 0"):
        build_crd(crd_weight=0.0)
    with pytest.raises(SeedzooError, match="non-negative"):
        build_crd(kd_weight=-1.0)
    with pytest.raises(SeedzooError, match=r"a source or \{source, arch, network, model_args\}"):
        build_crd(teacher={"path": "x"})


def test_crd_with_cross_entropy_refuses_unlabelled_data(tmp_path, monkeypatch):
    unlabelled = ArrayImageDataset(np.zeros((32, 8, 8), np.uint8), np.full(32, -1), classes=[])
    monkeypatch.setattr("seedzoo.training.trainer.get_dataset", lambda *a, **k: unlabelled)
    with pytest.raises(SeedzooError, match="'crd' trains on labels"):
        train(config_from_dict(crd_recipe(method={"ce_weight": 1.0})), tmp_path / "run")


# -- the trainer: an interrupted run resumes to the same weights --------------------------------

def crd_recipe(method=None, **train_options):
    method = {"name": "crd", "student": {"arch": "test_resnet"},
              "teacher": {"source": "timm:test_resnet"}, "feat_dim": 8, "nce_k": 32,
              **(method or {})}
    return toy_recipe(method=method, train={"knn_monitor": {"every_epochs": 0}, **train_options})


@pytest.mark.parametrize("label_terms", [False, True], ids=["label-free", "crd+kd+ce"])
def test_killed_and_resumed_crd_run_ends_with_the_same_weights(tmp_path, label_terms,
                                                              classifier_teacher):
    method = {"teacher": classifier_teacher, "kd_weight": 1.0, "ce_weight": 1.0} \
        if label_terms else {}
    train(config_from_dict(crd_recipe(method)), tmp_path / "reference")
    stopped = train(config_from_dict(crd_recipe(method, max_steps=5)), tmp_path / "run")
    assert not stopped["finished"]
    resumed = train(config_from_dict(crd_recipe(method)), tmp_path / "run", resume=True)
    assert resumed["finished"] and resumed["steps"] == 12
    expected = load_checkpoint(tmp_path / "reference" / "checkpoint.pt")["method"]
    got = load_checkpoint(tmp_path / "run" / "checkpoint.pt")["method"]
    assert expected.keys() == got.keys()
    assert int(got["draws"]) == 12 and (got["normalisers"] > 0).all()
    assert ("classifier.weight" in got) == label_terms
    for key in expected:  # student, embeddings, classifier, BN statistics, banks, Z, draws
        torch.testing.assert_close(got[key], expected[key], rtol=1e-6, atol=1e-7, msg=key)
    exported = tmp_path / "run" / "encoder"
    assert (exported / CLASSIFIER_WEIGHTS_NAME).is_file() == label_terms
    if label_terms:
        assert torch.equal(load_classifier(exported).weight, got["classifier.weight"])


# -- two gloo processes ---------------------------------------------------------------------------

WORLD, BATCH, DATASET = 2, 4, 12
# A padded last shard: rank 1 repeats sample 0, which rank 0 also holds (the last write wins).
RANK_INDICES = [[0, 5, 9, 2], [7, 11, 3, 0]]


def rank_images(rank):
    return torch.randn(BATCH, 3, 32, 32, generator=torch.Generator().manual_seed(10 + rank))


def _worker(rank, port, out):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=WORLD)
    try:
        method = build_crd(dataset_size=DATASET).train()  # the same seed: the same initial banks
        method(batch_of(rank_images(rank), RANK_INDICES[rank]))
        torch.save({k: method.state_dict()[k] for k in ("student_bank", "teacher_bank",
                                                        "normalisers", "draws")},
                   out / f"{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def distributed_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("crd_distributed")
    return spawn_processes(_worker, out, WORLD)


def test_two_processes_keep_identical_banks_updated_at_their_own_indices(distributed_results):
    first, second = distributed_results
    for key in ("student_bank", "teacher_bank", "normalisers", "draws"):
        assert torch.equal(first[key], second[key]), key
    reference = build_crd(dataset_size=DATASET).train()  # the embeddings each rank computed
    with torch.no_grad():
        student = torch.cat([reference.embed_student(reference.encoder(rank_images(r)))
                             for r in range(WORLD)])
        teacher = torch.cat([reference.embed_teacher(reference.teacher(rank_images(r)))
                             for r in range(WORLD)])
    indices = torch.tensor(RANK_INDICES).flatten()
    for key, embeddings in (("student_bank", student), ("teacher_bank", teacher)):
        expected = getattr(reference, key).clone()
        for position, index in enumerate(indices.tolist()):  # rank order; sample 0: rank 1's
            expected[index] = F.normalize(0.5 * getattr(reference, key)[index]
                                          + 0.5 * embeddings[position], dim=0)
        torch.testing.assert_close(first[key], expected, rtol=1e-5, atol=1e-6)
        assert torch.equal(first[key][[1, 4, 6, 8, 10]], getattr(reference, key)[[1, 4, 6, 8, 10]])
