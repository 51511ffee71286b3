"""EsViT: region matching, the two losses and the centres against hand computations, the
schedules (teacher momentum, teacher temperature), a teacher without gradients, token extraction
from Swin and CNN backbones, last-layer freezing and exact resume in the trainer, and centres
all-reduced by two gloo processes (tiny Swin, seconds)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.distributed as dist
from trainer_helpers import TINY_SWIN, method_state, spawn_processes, tiny_swin, toy_recipe

import seedzoo
from seedzoo.errors import SeedzooError
from seedzoo.training.config import config_from_dict
from seedzoo.training.encoder_specs import build_encoder
from seedzoo.training.methods import Batch, TrainingProgress, build_method
from seedzoo.training.methods.esvit import (
    match_regions,
    pooled_and_region_features,
    region_level_loss,
    teacher_momentum_schedule,
    teacher_temperature_schedule,
    view_level_loss,
)
from seedzoo.training.trainer import train

pytestmark = pytest.mark.usefixtures("single_thread")

HEADS = {"out_dim": 16, "hidden_dim": 16, "bottleneck_dim": 8}


def build_esvit(seed: int = 0, **options):
    torch.manual_seed(seed)
    return build_method("esvit", **{"encoder": TINY_SWIN, **HEADS, **options})


def multicrop_batch(batch: int = 3, local_views: int = 2, seed: int = 0) -> Batch:
    generator = torch.Generator().manual_seed(seed)
    views = [torch.randn(batch, 3, 32, 32, generator=generator) for _ in range(2)] + \
        [torch.randn(batch, 3, 16, 16, generator=generator) for _ in range(local_views)]
    return Batch(views, torch.full((batch,), -1), torch.arange(batch))


def cross_entropy(target: list[float], logits: list[float]) -> float:
    normaliser = math.log(sum(math.exp(x) for x in logits))
    return -sum(p * (x - normaliser) for p, x in zip(target, logits, strict=True))


# -- the losses -----------------------------------------------------------------------------------

def test_region_matching_picks_the_teacher_token_of_highest_cosine_not_dot_product():
    student = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    teacher = torch.tensor([[[0.0, 0.5], [10.0, 1.0], [1.0, 0.05]]])
    # cosines: student 0 -> (0, 0.995, 0.9988); student 1 -> (1, 0.0995, 0.05)
    # (dot products would pick teacher token 1 for both)
    assert match_regions(student, teacher, [3]).tolist() == [[[2], [0]]]


def test_region_loss_is_the_cross_entropy_with_the_matched_teacher_tokens():
    # Two views of one image, two tokens each (view after view); view 0's tokens match view 1's
    # in reverse order.
    tokens = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [0.1, 1.0], [1.0, 0.2]]])
    student_logits = torch.tensor([[[2.0, 0.0], [0.0, 1.0], [1.0, 1.0], [3.0, 0.0]]])
    teacher_probabilities = torch.tensor([[[0.9, 0.1], [0.3, 0.7], [0.6, 0.4], [0.2, 0.8]]])
    # pair (teacher 0, student 1): student token 0 ~ teacher token 1, token 1 ~ teacher token 0
    first = (cross_entropy([0.3, 0.7], [1.0, 1.0]) + cross_entropy([0.9, 0.1], [3.0, 0.0])) / 2
    # pair (teacher 1, student 0): student token 0 ~ teacher token 1, token 1 ~ teacher token 0
    second = (cross_entropy([0.2, 0.8], [2.0, 0.0]) + cross_entropy([0.6, 0.4], [0.0, 1.0])) / 2
    got = region_level_loss(student_logits, tokens, [2, 2], teacher_probabilities, tokens, [2, 2])
    assert got.item() == pytest.approx((first + second) / 2, rel=1e-6)


def per_pair_region_loss(student_logits, student_tokens, teacher_probabilities, teacher_tokens):
    """The region loss one view pair and one token at a time (lists with one tensor per view)."""
    pairs = [(t, s) for t in range(len(teacher_tokens)) for s in range(len(student_tokens))
             if s != t]
    total = 0.0
    for t, s in pairs:
        terms = []
        for image in range(len(student_tokens[s])):
            for token, logits in zip(student_tokens[s][image], student_logits[s][image],
                                     strict=True):
                match = torch.cosine_similarity(token, teacher_tokens[t][image], dim=-1).argmax()
                terms.append(-(teacher_probabilities[t][image, match]
                               * torch.log_softmax(logits, -1)).sum())
        total = total + torch.stack(terms).mean()
    return total / len(pairs)


@pytest.mark.parametrize("teacher_tokens_per_view", [[4, 4], [4, 2]])
def test_batched_region_and_view_losses_equal_the_loss_taken_pair_by_pair(
        teacher_tokens_per_view):
    generator = torch.Generator().manual_seed(0)
    tokens_per_view = [4, 4, 1, 2, 1]

    def rows(counts, width):
        return torch.randn(3, sum(counts), width, generator=generator)

    student_logits = rows(tokens_per_view, 6).requires_grad_()
    student_tokens, teacher_tokens = rows(tokens_per_view, 5), rows(teacher_tokens_per_view, 5)
    teacher_probabilities = torch.softmax(rows(teacher_tokens_per_view, 6) / 0.1, -1)
    got = region_level_loss(student_logits, student_tokens, tokens_per_view,
                            teacher_probabilities, teacher_tokens, teacher_tokens_per_view)
    expected = per_pair_region_loss(
        *[x.split(counts, 1) for x, counts in ((student_logits, tokens_per_view),
                                               (student_tokens, tokens_per_view),
                                               (teacher_probabilities, teacher_tokens_per_view),
                                               (teacher_tokens, teacher_tokens_per_view))])
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(*[torch.autograd.grad(loss, student_logits)[0]
                                 for loss in (got, expected)])
    views = student_logits[:, :5].detach()  # the view level: one token per view
    torch.testing.assert_close(
        view_level_loss(views, teacher_probabilities[:, :2]),
        per_pair_region_loss(views.split(1, 1), views.split(1, 1),
                             teacher_probabilities[:, :2].split(1, 1), views[:, :2].split(1, 1)))


def test_view_loss_pairs_every_teacher_view_with_every_other_student_view():
    student_logits = torch.tensor([[[1.0, 0.0], [0.0, 2.0], [0.5, 0.5]]])  # (image, view, K)
    teacher_probabilities = torch.tensor([[[0.8, 0.2], [0.1, 0.9]]])
    pairs = [(0, 1), (0, 2), (1, 0), (1, 2)]
    expected = sum(cross_entropy(teacher_probabilities[0, t].tolist(),
                                 student_logits[0, s].tolist()) for t, s in pairs) / 4
    got = view_level_loss(student_logits, teacher_probabilities)
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_the_loss_centres_sharpens_and_weighs_both_levels_by_a_half():
    method = build_esvit(student_temperature=0.2, warmup_teacher_temperature=0.05)
    method.view_center.fill_(0.3)
    method.region_center.normal_()
    batch = multicrop_batch()
    outputs = method.eval()(batch)
    with torch.no_grad():
        student, teacher = method.student(batch.views), method.teacher(batch.views[:2])
        view = view_level_loss(student.view_logits / 0.2,
                               torch.softmax((teacher.view_logits - 0.3) / 0.05, -1))
        region = region_level_loss(
            student.region_logits / 0.2, student.region_features, student.tokens_per_view,
            torch.softmax((teacher.region_logits - method.region_center) / 0.05, -1),
            teacher.region_features, teacher.tokens_per_view)
    torch.testing.assert_close(outputs["view_loss"], view)
    torch.testing.assert_close(outputs["region_loss"], region)
    torch.testing.assert_close(outputs["loss"], 0.5 * view + 0.5 * region)


def test_either_level_can_be_switched_off():
    view_only = build_esvit(region_loss=False)
    assert view_only.student.region_head is None and not hasattr(view_only, "region_center")
    outputs = view_only(multicrop_batch())
    assert "region_loss" not in outputs and torch.equal(outputs["loss"], outputs["view_loss"])
    region_only = build_esvit(view_loss=False)
    outputs = region_only(multicrop_batch())
    assert "view_loss" not in outputs and torch.equal(outputs["loss"], outputs["region_loss"])
    with pytest.raises(SeedzooError, match="view_loss or method.region_loss"):
        build_esvit(view_loss=False, region_loss=False)


def test_centres_move_towards_the_batch_mean_of_the_teacher_outputs():
    method = build_esvit().train()
    expected = {"view_center": torch.zeros(1, 16), "region_center": torch.zeros(1, 16)}
    for seed in (0, 1):
        batch = multicrop_batch(seed=seed)
        with torch.no_grad():
            teacher = method.teacher(batch.views[:2])
        means = {"view_center": teacher.view_logits.flatten(0, 1).mean(0, keepdim=True),
                 "region_center": teacher.region_logits.flatten(0, 1).mean(0, keepdim=True)}
        method(batch)
        for key in expected:
            expected[key] = 0.9 * expected[key] + 0.1 * means[key]
            torch.testing.assert_close(getattr(method, key), expected[key])


# -- schedules, teacher and freezing ------------------------------------------------------------

def test_teacher_temperature_warms_up_linearly_per_epoch():
    got = [teacher_temperature_schedule(e, start=0.04, end=0.07, warmup_epochs=4)
           for e in range(6)]
    assert got == pytest.approx([0.04, 0.05, 0.06, 0.07, 0.07, 0.07])
    assert teacher_temperature_schedule(0, start=0.04, end=0.07, warmup_epochs=1) == 0.04
    assert teacher_temperature_schedule(0, start=0.04, end=0.07, warmup_epochs=0) == 0.07
    method = build_esvit(warmup_teacher_temperature_epochs=4)
    method.start_step(TrainingProgress(step=11, total_steps=30, steps_per_epoch=5))  # epoch 2
    assert method.eval()(multicrop_batch())["teacher_temperature"].item() == pytest.approx(0.06)


def test_teacher_momentum_rises_from_its_start_to_one_along_a_cosine():
    def momentum(step):
        return teacher_momentum_schedule(TrainingProgress(step, 10, 5), start=0.996)
    assert momentum(0) == pytest.approx(0.996)
    assert momentum(5) == pytest.approx(0.998)
    assert momentum(9) == pytest.approx(1 - 0.002 * (1 + math.cos(0.9 * math.pi)))


def test_the_teacher_is_an_ema_of_the_student_and_gets_no_gradient():
    method = build_esvit().train()
    assert all(not p.requires_grad for p in method.teacher.parameters())
    method(multicrop_batch())["loss"].backward()
    assert all(p.grad is None for p in method.teacher.parameters())
    with torch.no_grad():
        for parameter in method.student.parameters():
            parameter.add_(torch.randn_like(parameter))
    teacher = [p.clone() for p in method.teacher.parameters()]
    method.start_step(TrainingProgress(step=5, total_steps=10, steps_per_epoch=5))
    method.finish_step()
    for new, old, student in zip(method.teacher.parameters(), teacher,
                                 method.student.parameters(), strict=True):
        torch.testing.assert_close(new, 0.998 * old + 0.002 * student)
    assert method.encoders()["encoder"] is method.teacher.backbone


def test_the_teacher_drops_nothing():
    method = build_esvit(encoder={**TINY_SWIN, "model_args": {
        **TINY_SWIN["model_args"], "drop_path_rate": 0.5}}).train()
    images = multicrop_batch().views[0]
    with torch.no_grad():
        assert torch.equal(method.teacher.backbone(images), method.teacher.backbone(images))
        assert not torch.equal(method.student.backbone(images), method.student.backbone(images))


def test_last_layers_are_frozen_in_the_first_epochs_only():
    method = build_esvit(freeze_last_layer_epochs=2, norm_last_layer=False)
    last_layers = {id(p) for head in (method.student.view_head, method.student.region_head)
                   for p in head.last_layer.parameters()}
    method.start_step(TrainingProgress(step=9, total_steps=30, steps_per_epoch=5))
    assert {id(p) for p in method.frozen_parameters()} == last_layers and len(last_layers) == 4
    method.start_step(TrainingProgress(step=10, total_steps=30, steps_per_epoch=5))
    assert method.frozen_parameters() == []


@pytest.mark.parametrize("spec, tokens", [(TINY_SWIN, 4), ({"arch": "test_resnet"}, 4)])
def test_region_tokens_are_the_last_feature_map_and_the_pooled_feature_the_encoder_output(
        spec, tokens):
    torch.manual_seed(0)
    encoder = build_encoder(spec).eval()
    size = 16 if spec is TINY_SWIN else 64  # a 2 x 2 last map either way
    images = torch.randn(2, 3, size, size)
    with torch.no_grad():
        pooled, region = pooled_and_region_features(encoder, images)
        features = encoder.forward_features(images)
        torch.testing.assert_close(pooled, encoder(images))
    assert region.shape == (2, tokens, pooled.shape[1])
    grid = features if spec is TINY_SWIN else features.permute(0, 2, 3, 1)  # NHWC
    torch.testing.assert_close(region[:, 1], grid[:, 0, 1])  # row-major token order


# -- in the trainer -------------------------------------------------------------------------------

TRAINER_SWIN = tiny_swin(16)


def esvit_recipe(**train_options) -> dict:
    """12 steps (2 epochs of 6) on digits at 16 px with two local views: every schedule moves
    (teacher temperature, momentum, last-layer freezing, weight decay, lr warm-up)."""
    return toy_recipe(
        method={"name": "esvit", "encoder": TRAINER_SWIN, **HEADS,
                "warmup_teacher_temperature_epochs": 2, "freeze_last_layer_epochs": 1},
        data={"view_options": {"local_crops": 2}},
        train={"optimizer": "adamw", "lr": 1e-3, "weight_decay": 0.04, "weight_decay_end": 0.4,
               "grad_clip": 3.0, "knn_monitor": {"every_epochs": 0}, **train_options})


LAST_LAYER = "student.view_head.last_layer.parametrizations.weight.original1"


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("esvit") / "reference"
    summary = train(config_from_dict(esvit_recipe()), run_dir)
    assert summary["finished"] and summary["steps"] == 12
    return run_dir


def test_a_killed_and_resumed_run_ends_with_the_same_weights(tmp_path, reference_run):
    run_dir = tmp_path / "run"
    stopped = train(config_from_dict(esvit_recipe(max_steps=5)), run_dir)
    assert not stopped["finished"]
    initial = build_esvit(encoder=TRAINER_SWIN).state_dict()  # the trainer seeds 0 before building
    state = method_state(run_dir)
    assert torch.equal(state[LAST_LAYER], initial[LAST_LAYER])  # frozen in the first epoch
    assert not torch.equal(state["student.view_head.mlp.0.weight"],
                           initial["student.view_head.mlp.0.weight"])
    resumed = train(config_from_dict(esvit_recipe()), run_dir, resume=True)
    assert resumed["finished"] and resumed["steps"] == 12
    expected, got = method_state(reference_run), method_state(run_dir)
    assert expected.keys() == got.keys()
    for key in expected:  # student, teacher, both centres
        torch.testing.assert_close(got[key], expected[key], rtol=1e-6, atol=1e-7, msg=key)
    assert not torch.equal(got[LAST_LAYER], initial[LAST_LAYER])  # trained in the second epoch


def test_the_exported_encoder_is_the_teacher_backbone(reference_run):
    state = method_state(reference_run)
    encoder = seedzoo.load(str(reference_run / "encoder"))
    for key, value in encoder.state_dict().items():
        assert torch.equal(value, state[f"teacher.backbone.{key}"]), key
    assert encoder(torch.randn(2, 3, 16, 16)).shape == (2, encoder.num_features)


# -- two gloo processes ---------------------------------------------------------------------------

def _worker(rank, port, out):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=2)
    try:
        method = build_esvit().train()
        method(multicrop_batch(seed=rank))
        torch.save({k: method.state_dict()[k] for k in ("view_center", "region_center")},
                   out / f"{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_two_processes_share_centres_of_the_global_batch(tmp_path):
    first, second = spawn_processes(_worker, tmp_path, 2)
    reference = build_esvit().train()
    with torch.no_grad():
        outputs = [reference.teacher(multicrop_batch(seed=rank).views[:2]) for rank in (0, 1)]
    view = torch.cat([o.view_logits.flatten(0, 1) for o in outputs]).mean(0, keepdim=True)
    region = torch.cat([o.region_logits.flatten(0, 1) for o in outputs]).mean(0, keepdim=True)
    for key, mean in (("view_center", view), ("region_center", region)):
        assert torch.equal(first[key], second[key]), key
        torch.testing.assert_close(first[key], 0.1 * mean)
