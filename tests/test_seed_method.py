import pytest
import torch
from torch.nn import functional as F
from trainer_helpers import as_batch

from seedzoo.errors import SeedzooError
from seedzoo.training.methods import build_method
from seedzoo.training.methods.seed import seed_loss
from seedzoo.zoo.pretrained import create_encoder, save_pretrained


@pytest.fixture(scope="module")
def teacher_folder(tmp_path_factory):
    torch.manual_seed(1)
    teacher = create_encoder("test_resnet", pretrained_cfg_overlay={"input_size": (3, 32, 32)})
    return str(save_pretrained(teacher, tmp_path_factory.mktemp("teacher")))


def build_seed(teacher_folder, **options):
    student = {"arch": "test_efficientnet", "pretrained_cfg": {"input_size": [3, 32, 32]}}
    options = {"student": student, "teacher": {"source": teacher_folder},
               "queue_size": 20, "hidden_dim": 64, **options}
    return build_method("seed", **options)


def test_teacher_is_frozen_in_eval_mode_and_gets_no_gradient(teacher_folder):
    method = build_seed(teacher_folder).train()
    assert method.encoder.training and not method.teacher.training
    method.train(True)
    assert not method.teacher.training
    teacher_before = {k: v.clone() for k, v in method.teacher.state_dict().items()}
    optimizer = torch.optim.SGD(method.parameters(), lr=0.5, momentum=0.9, weight_decay=1e-4)
    student_before = [p.clone() for p in method.encoder.parameters()]
    for _ in range(2):
        loss = method(as_batch([torch.randn(6, 3, 32, 32)]))["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert all(p.grad is None and not p.requires_grad for p in method.teacher.parameters())
    assert all(torch.equal(v, teacher_before[k]) for k, v in method.teacher.state_dict().items())
    assert any(not torch.equal(p, q)
               for p, q in zip(method.encoder.parameters(), student_before, strict=True))


def test_one_view_goes_to_both_and_the_queue_receives_the_teacher_embeddings(teacher_folder):
    method = build_seed(teacher_folder, student_temperature=0.3, teacher_temperature=0.05).train()
    assert method.views == "single"
    images = torch.randn(8, 3, 32, 32)
    queue_before = method.queue.embeddings.clone()
    loss = method(as_batch([images]))["loss"]
    assert torch.equal(method.queue.embeddings, queue_before)  # backward reads it, uncopied
    loss.backward()
    method.finish_step()
    with torch.no_grad():
        teacher = F.normalize(method.teacher(images), dim=1)
    # In train mode the student's BatchNorm statistics moved; the loss itself is checked below
    # in eval mode, where a forward pass can be repeated exactly.
    assert torch.allclose(method.queue.embeddings[:8], teacher, atol=1e-6)
    assert torch.equal(method.queue.embeddings[8:], queue_before[8:])
    assert int(method.queue.pointer) == 8
    assert loss.ndim == 0 and torch.isfinite(loss)

    method.eval()
    queue_now = method.queue.embeddings.clone()
    loss = method(as_batch([images]))["loss"]
    with torch.no_grad():
        student = F.normalize(method.head(method.encoder(images)), dim=1)
    expected = seed_loss(student, teacher, queue_now, student_temperature=0.3,
                         teacher_temperature=0.05)
    assert torch.allclose(loss, expected, atol=1e-5)
    assert int(method.queue.pointer) == 8 and torch.equal(method.queue.embeddings, queue_now)


def test_queue_wraps_with_a_size_that_is_not_a_multiple_of_the_batch(teacher_folder):
    method = build_seed(teacher_folder, queue_size=7).train()
    for batch in (3, 3, 2):  # a short last batch
        method(as_batch([torch.randn(batch, 3, 32, 32)]))
        method.finish_step()
    assert int(method.queue.pointer) == 8 % 7


def test_state_dict_carries_queue_teacher_and_student(teacher_folder):
    keys = build_seed(teacher_folder).state_dict().keys()
    assert {"queue.embeddings", "queue.pointer"} <= set(keys)
    assert any(k.startswith("teacher.") for k in keys) and any(k.startswith("head.") for k in keys)


def test_student_head_maps_to_the_teacher_width(teacher_folder):
    method = build_seed(teacher_folder, hidden_dim=32)
    assert [m.out_features for m in method.head if isinstance(m, torch.nn.Linear)] == [32, 96]
    assert method.queue.embeddings.shape == (20, 96)


def test_small_patch_views_use_a_second_queue(teacher_folder):
    method = build_seed(teacher_folder, small_patch_queue_size=10).train()
    assert method.views == "seed_small_patch"
    views = [torch.randn(4, 3, 32, 32)] + [torch.randn(4, 3, 16, 16) for _ in range(3)]
    metrics = method(as_batch(views))
    method.finish_step()
    assert torch.allclose(metrics["loss"], metrics["loss_global"] + metrics["loss_small_patch"])
    with torch.no_grad():
        first_patches = F.normalize(method.teacher(views[1]), dim=1)
    assert torch.allclose(method.small_patch_queue.embeddings[:4], first_patches, atol=1e-6)
    assert int(method.small_patch_queue.pointer) == 4 and int(method.queue.pointer) == 4
    with pytest.raises(SeedzooError, match="SEED needs at least 2 views of each image, got 1"):
        method(as_batch(views[:1]))
    assert build_seed(teacher_folder).min_views == 1


def test_bad_teacher_spec_is_a_clear_error(teacher_folder):
    with pytest.raises(SeedzooError, match="source"):
        build_seed(teacher_folder, teacher={"path": teacher_folder})


def test_teacher_projection_head_from_a_moco_checkpoint(tmp_path):
    torch.manual_seed(2)
    backbone = create_encoder("test_resnet", pretrained_cfg_overlay={"input_size": (3, 32, 32)})
    fc = torch.nn.Sequential(torch.nn.Linear(96, 64), torch.nn.ReLU(), torch.nn.Linear(64, 16))
    state = {**{f"module.encoder_q.{k}": v for k, v in backbone.state_dict().items()},
             **{f"module.encoder_q.fc.{k}": v for k, v in fc.state_dict().items()}}
    path = tmp_path / "moco_v2.pth.tar"
    torch.save({"epoch": 200, "state_dict": state}, path)
    method = build_method("seed", student={"arch": "test_efficientnet"}, queue_size=20,
                          hidden_dim=32, teacher={"source": str(path), "arch": "test_resnet",
                                                  "projection_head": True}).train()
    assert method.queue.embeddings.shape == (20, 16) and not method.teacher.training
    images = torch.randn(4, 3, 32, 32)
    method(as_batch([images]))
    method.finish_step()
    with torch.no_grad():
        expected = F.normalize(fc(backbone.eval()(images)), dim=1)
    torch.testing.assert_close(method.queue.embeddings[:4], expected)
