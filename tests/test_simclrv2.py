"""SimCLRv2 (pretraining with the deeper head and memory, fine-tuning from the first head layer on
the few-shot label subsets, distillation of the class distribution) and the pipeline that runs
the three: losses by hand, weights carried over, exact resumes, skipped steps, clear errors
(tiny models on digits, seconds each)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import timm
import torch
from torch import nn
from torch.nn import functional as F
from trainer_helpers import toy_recipe

import seedzoo
from seedzoo.data.datasets import dataset_labels, get_dataset
from seedzoo.data.subsets import class_balanced_indices, subset_indices
from seedzoo.errors import CheckpointError, ModelNotFoundError, SeedzooError
from seedzoo.training.checkpointing import load_checkpoint
from seedzoo.training.config import config_from_dict
from seedzoo.training.methods import Batch, build_method
from seedzoo.training.methods.simclr import nt_xent
from seedzoo.training.methods.simclrv2_distill import distillation_loss, labelled_cross_entropy
from seedzoo.training.pipeline import load_pipeline, run_pipeline
from seedzoo.training.teachers import load_classifier_teacher
from seedzoo.training.trainer import train, training_images, training_labels
from seedzoo.zoo.pretrained import MLPClassifier, load_classifier, save_classifier

pytestmark = pytest.mark.usefixtures("single_thread")

TINY = {"arch": "test_resnet"}
NO_MONITOR = {"knn_monitor": {"every_epochs": 0}}
SIMCLRV2 = {"encoder": TINY, "dim": 8, "hidden_dim": None, "head_layers": 3,
            "head_output_batch_norm": True, "memory_size": 32, "memory_momentum": 0.9,
            "temperature": 0.2}
PRETRAIN = {"name": "simclr", **SIMCLRV2}


def pretrain_recipe(**train_options) -> dict:
    """96 digits, batch 16: 6 steps."""
    return toy_recipe(method=PRETRAIN, train={**NO_MONITOR, "epochs": 1, **train_options})


def finetune_recipe(pretrained, **train_options) -> dict:
    """The 10% label subset of the 96 digits (one or two per class), batch 4: 4 steps."""
    return toy_recipe(method={"name": "finetune", "pretrained": str(pretrained)},
                      data={"label_fraction": 0.1, "batch_size": 4, "views": "single"},
                      train={**NO_MONITOR, **train_options})


def distill_recipe(teacher, **train_options) -> dict:
    """All 96 digits without labels, batch 16: 6 steps."""
    return toy_recipe(method={"name": "simclrv2_distill", "student": TINY,
                              "teacher": str(teacher)},
                      data={"views": "single"}, train={**NO_MONITOR, "epochs": 1,
                                                        **train_options})


def method_state(run_dir) -> dict[str, torch.Tensor]:
    return load_checkpoint(run_dir / "checkpoint.pt")["method"]


def assert_same_weights(got_dir, expected_dir) -> None:
    expected, got = method_state(expected_dir), method_state(got_dir)
    assert expected.keys() == got.keys()
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=1e-6, atol=1e-7, msg=key)


def resumed(run_dir, recipe: dict, stop_at: int) -> dict:
    """Train ``recipe`` in ``run_dir`` stopped after ``stop_at`` steps, then resumed to the end."""
    stopped = train(config_from_dict({**recipe, "train": {**recipe["train"],
                                                          "max_steps": stop_at}}), run_dir)
    assert not stopped["finished"] and stopped["steps"] == stop_at
    return train(config_from_dict(recipe), run_dir, resume=True)


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("simclrv2") / "pretrain"
    assert train(config_from_dict(pretrain_recipe()), run_dir)["finished"]
    return run_dir


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory, pretrained):
    run_dir = tmp_path_factory.mktemp("finetune") / "finetune"
    assert train(config_from_dict(finetune_recipe(pretrained)), run_dir)["finished"]
    return run_dir


@pytest.fixture(scope="module")
def distilled(tmp_path_factory, finetuned):
    run_dir = tmp_path_factory.mktemp("distill") / "distill"
    assert train(config_from_dict(distill_recipe(finetuned)), run_dir)["finished"]
    return run_dir


# -- the losses ---------------------------------------------------------------------------------

def test_distillation_loss_is_the_soft_cross_entropy_by_hand_at_both_temperatures():
    # tau 1: teacher softmax([ln 3, 0]) = (3/4, 1/4), student (1/2, 1/2): -ln(1/2) = ln 2.
    teacher, student = torch.tensor([[math.log(3), 0.0]]), torch.zeros(1, 2)
    assert distillation_loss(student, teacher, 1.0).item() == pytest.approx(math.log(2))
    # tau 0.1 (self-distillation): logits / 0.1 give teacher (3/4, 1/4), student (7/8, 1/8); no
    # tau^2 factor. The batch mean halves the sum with a second row of loss ln 2 at that tau.
    teacher = torch.tensor([[0.1 * math.log(3), 0.0], [0.0, 0.0]])
    student = torch.tensor([[0.1 * math.log(7), 0.0], [0.0, 0.0]])
    first = -(0.75 * math.log(7 / 8) + 0.25 * math.log(1 / 8))
    assert distillation_loss(student, teacher, 0.1).item() == pytest.approx(
        (first + math.log(2)) / 2, rel=1e-6)


def test_distillation_gradient_reaches_the_student_only_and_the_label_loss_skips_unlabelled():
    student, teacher = torch.randn(4, 3, requires_grad=True), torch.randn(4, 3)
    distillation_loss(student, teacher, 1.0).backward()
    assert student.grad is not None
    logits, labels = torch.randn(4, 3), torch.tensor([2, -1, 0, -1])
    torch.testing.assert_close(labelled_cross_entropy(logits, labels),
                               F.cross_entropy(logits[[0, 2]], labels[[0, 2]]))
    assert labelled_cross_entropy(logits, torch.full((4,), -1)).item() == 0.0


def test_nt_xent_memory_adds_negatives_that_are_never_positives():
    generator = torch.Generator().manual_seed(0)
    first, second, memory = (F.normalize(torch.randn(n, 4, generator=generator), dim=1)
                             for n in (3, 3, 5))
    # By hand: each of the 6 embeddings against the 5 others and the 5 memory rows.
    views = torch.cat([first, second])
    losses = []
    for i in range(6):
        positive = (i + 3) % 6
        others = [j for j in range(6) if j != i]
        logits = torch.cat([views[i] @ views[others].T, views[i] @ memory.T]) / 0.2
        losses.append(-F.log_softmax(logits, 0)[others.index(positive)])
    torch.testing.assert_close(nt_xent(first, second, temperature=0.2, memory=memory),
                               torch.stack(losses).mean())


# -- step 1: pretraining --------------------------------------------------------------------------

def test_simclrv2_head_has_three_batch_normed_layers_of_the_encoder_width_and_a_memory():
    method = build_method("simclr", **SIMCLRV2)
    width = method.encoder.num_features
    assert [type(m).__name__ for m in method.head] == [
        "Linear", "BatchNorm1d", "ReLU", "Linear", "BatchNorm1d", "ReLU", "Linear", "BatchNorm1d"]
    assert method.head[0].out_features == method.head[3].out_features == width
    assert method.head[0].bias is None and method.head[6].out_features == 8
    before = method.memory.embeddings.clone()
    images = [torch.randn(4, 3, 16, 16) for _ in range(2)]
    method.train()(Batch(images, torch.zeros(4, dtype=torch.long), torch.arange(4)))
    method.finish_step()
    assert int(method.memory.pointer) == 8  # both views of 4 images
    assert not torch.equal(method.memory.embeddings[:8], before[:8])
    assert torch.equal(method.memory.embeddings[8:], before[8:])
    assert not any(p.requires_grad for p in method.memory_encoder.parameters())


def test_pretraining_checkpoint_keeps_the_head_and_resumes_exactly(tmp_path, pretrained):
    assert {"head.0.weight", "head.1.running_mean", "memory.embeddings"} <= set(
        method_state(pretrained))
    summary = resumed(tmp_path / "run", pretrain_recipe(), stop_at=4)
    assert summary["finished"]
    assert_same_weights(tmp_path / "run", pretrained)


# -- step 2: fine-tuning ------------------------------------------------------------------------

def test_finetune_starts_from_the_encoder_and_the_first_head_layer(pretrained):
    method = build_method("finetune", num_classes=10, pretrained=str(pretrained))
    encoder = seedzoo.load(str(pretrained))
    for key, value in encoder.state_dict().items():
        assert torch.equal(method.encoder.state_dict()[key], value), key
    head = method_state(pretrained)
    classifier = method.classifier
    assert isinstance(classifier, MLPClassifier)
    assert [type(m).__name__ for m in classifier] == ["Linear", "BatchNorm1d", "ReLU", "Linear"]
    assert torch.equal(classifier[0].weight, head["head.0.weight"])
    for key in ("weight", "bias", "running_mean", "running_var"):
        assert torch.equal(getattr(classifier[1], key), head[f"head.1.{key}"]), key
    assert classifier.out_features == 10 and "1 of the 3 projection head layers" in \
        method.describe()
    linear = build_method("finetune", num_classes=10, pretrained=str(pretrained), head_layers=0)
    assert isinstance(linear.classifier, nn.Linear)


def test_finetune_classifier_starts_at_zero_and_takes_plain_lars_steps(pretrained):
    """As the reference code: the logits layer zero-initialised, and (as its head_supervised)
    left out of weight decay and LARS adaptation, which would keep a zero layer near zero."""
    from seedzoo.training.optim import build_optimizer

    method = build_method("finetune", num_classes=10, pretrained=str(pretrained))
    output = method.classifier[-1]
    assert not output.weight.any() and not output.bias.any()
    assert {id(p) for p in method.plain_parameters()} == {id(output.weight), id(output.bias)}
    optimizer = build_optimizer("lars", method, lr=0.1, weight_decay=1e-4,
                                plain=method.plain_parameters())
    def group_of(parameter):
        return next(g for g in optimizer.param_groups if any(p is parameter for p in g["params"]))

    assert group_of(output.weight)["lars_exclude"] and group_of(output.weight)["weight_decay"] == 0
    first_head_layer = group_of(method.classifier[0].weight)   # still adapted, with weight decay
    assert not first_head_layer["lars_exclude"] and first_head_layer["weight_decay"] == 1e-4


def test_label_fraction_trains_on_the_few_shot_protocols_subset():
    config = config_from_dict(toy_recipe(method={"name": "supervised", "encoder": TINY},
                                         data={"label_fraction": 0.1}, train={"seed": 3}))
    images = training_images(config)
    # The few-shot protocol: the seeded --limit-train subset, then its class-balanced fraction.
    digits = get_dataset("digits", "train")
    limited = subset_indices(len(digits), 96, 3)
    labels = dataset_labels(digits)[limited]
    expected = limited[class_balanced_indices(labels, 0.1, 3)]
    assert images.indices == expected.tolist()
    assert sorted(set(training_labels(images))) == list(range(10))
    kept = training_images(dataclasses.replace(
        config, data=dataclasses.replace(config.data, keep_unlabelled=True)))
    partial = training_labels(kept)
    assert len(kept) == 96 and (partial >= 0).sum() == len(expected)
    assert np.array_equal(limited[partial >= 0], expected)
    assert kept[int(np.flatnonzero(partial < 0)[0])][1] == -1


def test_finetune_exports_a_teacher_that_gives_its_logits(finetuned, pretrained):
    folder = finetuned / "encoder"
    encoder, classifier, _ = load_classifier_teacher(str(finetuned))
    assert isinstance(classifier, MLPClassifier) and classifier.hidden_layers == 1
    plain = timm.create_model(f"local-dir:{folder}", pretrained=True, num_classes=0).eval()
    trained = build_method("finetune", num_classes=10, pretrained=str(pretrained))
    trained.load_state_dict(method_state(finetuned))
    trained.eval()
    images = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(plain(images), encoder(images))
        torch.testing.assert_close(classifier(encoder(images)),
                                   trained.classifier(trained.encoder(images)))


def test_finetune_resumes_to_the_same_weights(tmp_path, pretrained, finetuned):
    assert resumed(tmp_path / "run", finetune_recipe(pretrained), stop_at=3)["finished"]
    assert_same_weights(tmp_path / "run", finetuned)


def test_mlp_classifier_files_round_trip(tmp_path):
    head = MLPClassifier(nn.Linear(6, 5, bias=False), nn.BatchNorm1d(5), nn.ReLU(),
                         nn.Linear(5, 3))
    head.train()(torch.randn(8, 6))  # running statistics move
    save_classifier(head, tmp_path, classes=["a", "b", "c"])
    loaded = load_classifier(tmp_path)
    assert isinstance(loaded, MLPClassifier) and loaded.classes == ["a", "b", "c"]
    for (key, value), (_, got) in zip(head.state_dict().items(), loaded.state_dict().items(),
                                      strict=True):
        assert torch.equal(got, value), key
    with pytest.raises(ValueError, match="from a Linear to a Linear"):
        MLPClassifier(nn.Linear(6, 5), nn.BatchNorm1d(5))


# -- step 3: distillation -----------------------------------------------------------------------

def test_distillation_trains_a_student_classifier_from_the_frozen_teacher(distilled, finetuned):
    state, teacher = method_state(distilled), method_state(finetuned)
    for key in ("0.weight", "1.running_mean", "3.weight"):  # the teacher stayed frozen
        assert torch.equal(state[f"teacher_classifier.{key}"], teacher[f"classifier.{key}"])
    encoder, classifier, _ = load_classifier_teacher(str(distilled))  # the student teaches
    assert isinstance(classifier, nn.Linear) and classifier.out_features == 10
    rows = (distilled / "metrics.jsonl").read_text()
    assert "loss_distill" in rows and "teacher_agreement" in rows and "loss_label" not in rows


def test_distillation_resumes_to_the_same_weights(tmp_path, finetuned, distilled):
    assert resumed(tmp_path / "run", distill_recipe(finetuned), stop_at=4)["finished"]
    assert_same_weights(tmp_path / "run", distilled)


def test_distillation_mixes_in_the_labels_of_the_labelled_images_only(tmp_path, finetuned):
    recipe = distill_recipe(finetuned, max_steps=2)
    recipe["method"]["label_weight"] = 0.5
    recipe["data"].update(label_fraction=0.1, keep_unlabelled=True)
    summary = train(config_from_dict(recipe), tmp_path / "run")
    assert summary["steps"] == 2
    assert "loss_label" in (tmp_path / "run" / "metrics.jsonl").read_text()


# -- clear errors -------------------------------------------------------------------------------

def test_finetune_refuses_a_run_without_a_head_or_unfinished(tmp_path, finetuned, pretrained):
    with pytest.raises(CheckpointError, match="keeps no projection head.*simclr or moco"):
        build_method("finetune", num_classes=10, pretrained=str(finetuned))
    (tmp_path / "unfinished").mkdir()
    with pytest.raises(ModelNotFoundError, match="no exported encoder/: finish it first"):
        build_method("finetune", num_classes=10, pretrained=str(tmp_path / "unfinished"))
    with pytest.raises(SeedzooError, match="head_layers is 4, but .* has 3 layers"):
        build_method("finetune", num_classes=10, pretrained=str(pretrained), head_layers=4)


def test_a_label_fraction_leaving_a_class_without_images_is_a_clear_error(pretrained):
    recipe = finetune_recipe(pretrained)
    recipe["data"]["limit"] = 6  # six digits cannot hold all ten classes
    with pytest.raises(SeedzooError, match="leaves no labelled image of class .*Raise data.limit"):
        training_images(config_from_dict(recipe))


def test_label_settings_that_cannot_work_are_clear_errors(tmp_path, pretrained, finetuned):
    recipe = finetune_recipe(pretrained)
    recipe["data"]["keep_unlabelled"] = True
    with pytest.raises(SeedzooError, match="every image's label.*keep_unlabelled"):
        train(config_from_dict(recipe), tmp_path / "run")
    recipe["data"]["label_fraction"] = None
    with pytest.raises(SeedzooError, match="keep_unlabelled .* set data.label_fraction"):
        config_from_dict(recipe)
    with pytest.raises(SeedzooError, match="label_weight must be in"):
        build_method("simclrv2_distill", student=TINY, teacher=str(finetuned), label_weight=1.0)
    with pytest.raises(SeedzooError, match="training data has no labels"):
        build_method("simclrv2_distill", num_classes=0, student=TINY, teacher=str(finetuned),
                     label_weight=0.3)


# -- the pipeline -------------------------------------------------------------------------------

def pipeline_runs(out, *, stop: dict[str, int] | None = None) -> list:
    """The three steps in ``out``, with ``train.max_steps`` of ``stop`` for some."""
    stop = stop or {}
    recipes = {"pretrain": pretrain_recipe(), "finetune": finetune_recipe("wired-by-pipeline"),
               "distill": distill_recipe("wired-by-pipeline")}
    for name, steps in stop.items():
        recipes[name]["train"]["max_steps"] = steps
    return [(name, config_from_dict(recipe)) for name, recipe in recipes.items()]


def test_pipeline_resumes_each_step_exactly_and_skips_finished_ones(tmp_path, capsys):
    whole = run_pipeline("simclrv2", pipeline_runs(tmp_path / "whole"), tmp_path / "whole")
    assert [s["finished"] for s in whole] == [True, True, True]
    assert method_state(tmp_path / "whole" / "distill")["teacher_classifier.0.weight"] is not None

    out = tmp_path / "interrupted"
    first = run_pipeline("simclrv2", pipeline_runs(out, stop={"pretrain": 4}), out)
    assert len(first) == 1 and not first[0]["finished"]
    second = run_pipeline("simclrv2", pipeline_runs(out, stop={"finetune": 1}), out)
    assert [s["finished"] for s in second] == [True, False]
    assert "resuming" in capsys.readouterr().out
    third = run_pipeline("simclrv2", pipeline_runs(out), out)
    assert [s["finished"] for s in third] == [True, True, True]
    for name in ("pretrain", "finetune", "distill"):
        assert_same_weights(out / name, tmp_path / "whole" / name)

    written = {name: (out / name / "checkpoint.pt").stat().st_mtime_ns
               for name in ("pretrain", "finetune", "distill")}
    capsys.readouterr()
    run_pipeline("simclrv2", pipeline_runs(out), out)
    assert capsys.readouterr().out.count("finished before, skipped") == 3
    assert written == {name: (out / name / "checkpoint.pt").stat().st_mtime_ns
                       for name in written}

    changed = pipeline_runs(out)
    changed[1][1].train.epochs = 3
    with pytest.raises(SeedzooError, match="other settings .*train.epochs: 2 -> 3"):
        run_pipeline("simclrv2", changed, out)


def test_pipeline_recipes_and_overrides(tmp_path):
    recipes = []
    for name, recipe in (("pre", pretrain_recipe()), ("fine", finetune_recipe("x")),
                         ("dist", distill_recipe("x"))):
        path = tmp_path / f"{name}.yaml"
        path.write_text(seedzoo.files.dump_yaml(recipe))
        recipes.append(path)
    runs = load_pipeline("simclrv2", recipes, ["finetune.train.epochs=5", "data.workers=1"])
    assert [name for name, _ in runs] == ["pre", "fine", "dist"]
    assert [config.train.epochs for _, config in runs] == [1, 5, 1]
    assert all(config.data.workers == 1 for _, config in runs)
    with pytest.raises(SeedzooError, match="start with a step .*pretrain, finetune, distill"):
        load_pipeline("simclrv2", recipes, ["distil.train.epochs=5"])
    with pytest.raises(SeedzooError, match="takes 3 recipes, one per step"):
        load_pipeline("simclrv2", recipes[:2])
    with pytest.raises(SeedzooError, match="Unknown pipeline 'simclrv3'"):
        load_pipeline("simclrv3", recipes)
