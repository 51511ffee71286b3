"""The trainer: exact resume, NaN stop, export, optimisers and schedule (tiny models, seconds)."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from trainer_helpers import method_state, toy_recipe

import seedzoo
from seedzoo.cli import main as cli_main
from seedzoo.data.datasets import ArrayImageDataset
from seedzoo.errors import CheckpointError, SeedzooError
from seedzoo.training.checkpointing import (
    gather_rng_states,
    load_checkpoint,
    restore_rng_states,
)
from seedzoo.training.config import config_from_dict
from seedzoo.training.optim import (
    LARS,
    WarmupCosineSchedule,
    build_optimizer,
    clip_gradients,
    param_groups,
    warmup_cosine,
)
from seedzoo.training.trainer import Trainer, train

pytestmark = pytest.mark.usefixtures("single_thread")

# The real CLI in a new process, with the toy method registered by importing the helpers module.
TOY_CLI = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
           "import trainer_helpers; from seedzoo.cli import main; sys.exit(main(sys.argv[1:]))")


def _run(tmp_path, name, resume=False, **sections):
    return train(config_from_dict(toy_recipe(**sections)), tmp_path / name, resume=resume)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The reference run: 2 epochs of 6 steps, not interrupted."""
    tmp_path = tmp_path_factory.mktemp("reference")
    summary = _run(tmp_path, "run")
    return tmp_path / "run", summary


def test_run_writes_summary_metrics_and_checkpoint(uninterrupted):
    run_dir, summary = uninterrupted
    assert summary["finished"] and summary["steps"] == 12 and summary["epochs"] == 2
    assert math.isfinite(summary["final_loss"])
    assert json.loads((run_dir / "summary.json").read_text())["steps"] == 12
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == [2, 4, 6, 8, 10, 12]
    assert [r["epoch_loss"] > 0 for r in rows if "epoch_loss" in r] == [True, True]
    assert {"lr", "img_per_s", "positive_similarity"} <= set(rows[0])
    knn = [r["knn_top1"] for r in rows if "knn_top1" in r]  # digits: chance is 10%
    assert len(knn) == 2 and all(20 < top1 <= 100 for top1 in knn)
    progress = load_checkpoint(run_dir / "checkpoint.pt")["progress"]
    assert (progress["epoch"], progress["step_in_epoch"], progress["global_step"]) == (2, 0, 12)


def test_killed_and_resumed_run_ends_with_the_same_weights(tmp_path, uninterrupted):
    reference, _ = uninterrupted
    # Stopped mid-epoch 1 (step 5 of 6) after a checkpoint, then resumed with data workers:
    # neither the interruption nor the worker count may change the result.
    stopped = _run(tmp_path, "run", train={"max_steps": 5})
    assert not stopped["finished"] and not (tmp_path / "run" / "encoder").exists()
    progress = load_checkpoint(tmp_path / "run" / "checkpoint.pt")["progress"]
    assert (progress["epoch"], progress["step_in_epoch"]) == (0, 5)
    with open(tmp_path / "run" / "metrics.jsonl", "a") as log:
        log.write('{"step": 6, "lo')  # a row cut short by a kill
    resumed = _run(tmp_path, "run", resume=True, data={"workers": 2})
    assert resumed["finished"] and resumed["steps"] == 12
    expected, got = method_state(reference), method_state(tmp_path / "run")
    assert expected.keys() == got.keys()
    for key in expected:  # encoder, head, BN statistics, queue and its pointer
        torch.testing.assert_close(got[key], expected[key], rtol=1e-6, atol=1e-7, msg=key)
    metrics = (tmp_path / "run" / "metrics.jsonl").read_text()
    rows = [json.loads(line) for line in metrics.splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == [2, 4, 6, 8, 10, 12]


def test_sigkilled_process_resumes_to_the_same_weights(tmp_path, uninterrupted):
    reference, _ = uninterrupted
    recipe = tmp_path / "toy.yaml"
    recipe.write_text(json.dumps(toy_recipe(train={"checkpoint_every_steps": 1})))
    run_dir = tmp_path / "run"
    process = subprocess.Popen([sys.executable, "-c", TOY_CLI, "train", "--config", str(recipe),
                                "--out", str(run_dir)], env={**os.environ, "OMP_NUM_THREADS": "1"},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while not (run_dir / "checkpoint.pt").exists() and process.poll() is None:
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.05)
    process.kill()  # SIGKILL: no clean-up of any kind
    process.wait()
    killed_at = load_checkpoint(run_dir / "checkpoint.pt")["progress"]["global_step"]
    assert killed_at < 12
    train(config_from_dict(toy_recipe(train={"checkpoint_every_steps": 1})), run_dir, resume=True)
    expected, got = method_state(reference), method_state(run_dir)
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=1e-6, atol=1e-7, msg=key)


def test_sigterm_checkpoints_the_current_step_and_exits_non_zero(tmp_path, uninterrupted):
    """The signal goes to the whole process group, data workers included, as a scheduler's
    or Ctrl-C's does."""
    reference, _ = uninterrupted
    recipe = tmp_path / "toy.yaml"
    settings = {"checkpoint_every_steps": 0, "log_every_steps": 1}
    recipe.write_text(json.dumps(toy_recipe(train=settings, data={"workers": 1})))
    run_dir = tmp_path / "run"
    process = subprocess.Popen([sys.executable, "-c", TOY_CLI, "train", "--config", str(recipe),
                                "--out", str(run_dir)], env={**os.environ, "OMP_NUM_THREADS": "1"},
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    metrics = run_dir / "metrics.jsonl"
    deadline = time.monotonic() + 240
    while not (metrics.exists() and metrics.read_text()) and process.poll() is None:
        assert time.monotonic() < deadline, "no step was logged"
        time.sleep(0.01)
    assert not (run_dir / "checkpoint.pt").exists()  # only the signal can write one this early
    os.killpg(process.pid, signal.SIGTERM)
    _, stderr = process.communicate(timeout=240)
    assert process.returncode == 128 + signal.SIGTERM, stderr
    stopped_at = load_checkpoint(run_dir / "checkpoint.pt")["progress"]["global_step"]
    assert 1 <= stopped_at < 6
    assert f"stopped after step {stopped_at}" in stderr and "--resume" in stderr
    train(config_from_dict(toy_recipe(train=settings)), run_dir, resume=True)
    expected, got = method_state(reference), method_state(run_dir)
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=1e-6, atol=1e-7, msg=key)


def test_too_few_views_for_the_method_is_a_clear_error_before_training(tmp_path):
    with pytest.raises(SeedzooError, match=r"at least 2 views of each image, got 1.*'moco_v2'"):
        train(config_from_dict(toy_recipe(data={"views": "single"})), tmp_path / "run")
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_resume_follows_the_recipe_s_optimizer_settings(tmp_path):
    run_dir = tmp_path / "run"
    train(config_from_dict(toy_recipe(train={"max_steps": 2})), run_dir)
    changed = toy_recipe(train={"weight_decay": 0.05, "momentum": 0.5})
    trainer = Trainer(config_from_dict(changed), run_dir, torch.device("cpu"))
    state = load_checkpoint(run_dir / "checkpoint.pt")
    trainer.restore(state)
    assert [(g["weight_decay"], g["momentum"]) for g in trainer.optimizer.param_groups] \
        == [(0.05, 0.5), (0.0, 0.5)]
    buffers = [s["momentum_buffer"] for s in trainer.optimizer.state.values()]
    assert buffers and len(buffers) == len(state["optimizer"]["state"])  # the state is loaded


def test_resuming_a_run_stopped_by_max_steps_takes_no_further_step(tmp_path):
    run_dir = tmp_path / "run"
    config = config_from_dict(toy_recipe(train={"max_steps": 3}))
    train(config, run_dir)
    train(config, run_dir, resume=True)
    assert load_checkpoint(run_dir / "checkpoint.pt")["progress"]["global_step"] == 3


def test_a_run_folder_is_not_overwritten_without_resume(tmp_path, uninterrupted):
    reference, _ = uninterrupted
    with pytest.raises(SeedzooError, match="--resume"):
        train(config_from_dict(toy_recipe()), reference)


def test_nan_loss_stops_naming_the_step_and_keeps_the_last_good_checkpoint(tmp_path, capsys):
    recipe = tmp_path / "nan.yaml"
    recipe.write_text(json.dumps(toy_recipe(method={"nan_at_call": 8},
                                            train={"checkpoint_every_steps": 3})))
    code = cli_main(["train", "--config", str(recipe), "--out", str(tmp_path / "run")])
    message = capsys.readouterr().err
    assert code == 2
    assert "stopped at step 8" in message and "the loss is nan" in message
    assert "checkpoint.pt (step 6, largest |value|" in message
    state = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert state["progress"]["global_step"] == 6
    assert all(torch.isfinite(v).all() for v in state["method"].values() if v.is_floating_point())


def test_exported_encoder_loads_with_seedzoo_and_timm(uninterrupted):
    run_dir, _ = uninterrupted
    folder = run_dir / "encoder"
    ours = seedzoo.load(str(folder))
    theirs = timm.create_model(f"local-dir:{folder}", pretrained=True, num_classes=0).eval()
    cfg = theirs.pretrained_cfg
    assert tuple(cfg["input_size"]) == (3, 16, 16) and cfg["crop_pct"] == 1.0
    assert tuple(cfg["mean"]) == (0.5, 0.5, 0.5) and cfg["interpolation"] == "bilinear"
    trained = {k.removeprefix("encoder."): v for k, v in method_state(run_dir).items()
               if k.startswith("encoder.")}
    for key, value in theirs.state_dict().items():
        torch.testing.assert_close(value, trained[key], rtol=0, atol=0, msg=key)
    x = torch.randn(2, 3, 16, 16)
    torch.testing.assert_close(ours(x), theirs(x))


def test_unknown_method_option_is_a_clear_error(tmp_path):
    with pytest.raises(SeedzooError, match=r"method\.queue_sise.*queue_size"):
        _run(tmp_path, "run", method={"queue_sise": 8})
    with pytest.raises(SeedzooError, match=r"method\.dataset_size"):  # the data's, not a recipe's
        _run(tmp_path, "run", method={"name": "toy_peers", "dataset_size": 8})


def test_trainer_serves_labels_indices_data_size_and_exports_each_network(tmp_path, capsys):
    run_dir = tmp_path / "run"
    summary = _run(tmp_path, "run", method={"name": "toy_peers"}, train={"epochs": 1})
    assert "toy_peers: 2 peers" in capsys.readouterr().out  # method.describe()
    state = method_state(run_dir)
    assert torch.equal(state["seen"], torch.ones(96, dtype=torch.long))  # each index once
    assert state["heads.0.weight"].shape[0] == 10  # the digits' classes
    peers = ("peer0", "peer1")
    assert summary["encoder"] is None and not (run_dir / "encoder").exists()
    assert summary["encoders"] == {name: str(run_dir / name) for name in peers}
    for name in peers:
        assert (run_dir / name / "README.md").is_file()
        cfg = seedzoo.load(str(run_dir / name)).pretrained_cfg
        assert tuple(cfg["input_size"]) == (3, 16, 16)  # the training preprocessing
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert {"knn_top1_peer0", "knn_top1_peer1"} <= set().union(*rows)


def test_a_method_needing_labels_refuses_a_dataset_without_them(tmp_path, monkeypatch):
    unlabelled = ArrayImageDataset(np.zeros((32, 8, 8), np.uint8), np.full(32, -1), classes=[])
    monkeypatch.setattr("seedzoo.training.trainer.get_dataset", lambda *a, **k: unlabelled)
    with pytest.raises(SeedzooError, match="'toy_peers' trains on labels"):
        _run(tmp_path, "run", method={"name": "toy_peers"})


def test_weight_decay_and_lars_exclude_norms_and_biases():
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    decay, no_decay = param_groups(model, 0.1)
    assert [p.shape for p in decay["params"]] == [(3, 4)]
    assert no_decay["weight_decay"] == 0 and no_decay["lars_exclude"]
    assert len(no_decay["params"]) == 3  # linear bias, BN weight and bias

    weight, bias = torch.nn.Parameter(torch.full((2, 2), 2.0)), torch.nn.Parameter(torch.ones(2))
    weight.grad, bias.grad = torch.full((2, 2), 0.5), torch.full((2,), 0.5)
    optimizer = LARS([{"params": [weight], "weight_decay": 0.1},
                      {"params": [bias], "weight_decay": 0.0, "lars_exclude": True}],
                     lr=0.1, momentum=0.9, trust_coefficient=0.01)
    optimizer.step()
    update = 0.5 + 0.1 * 2.0                       # gradient + weight decay, per entry
    trust = 0.01 * 4.0 / (update * 2)              # eta * |w| / |update| (2x2 entries)
    torch.testing.assert_close(weight.detach(), torch.full((2, 2), 2.0 - 0.1 * trust * update))
    torch.testing.assert_close(bias.detach(), torch.full((2,), 1.0 - 0.1 * 0.5))  # plain SGD


@pytest.mark.parametrize("name, torch_optimizer, exact", [
    ("sgd", torch.optim.SGD, True), ("adamw", torch.optim.AdamW, False)])
def test_the_fused_optimisers_step_as_the_per_tensor_ones(name, torch_optimizer, exact):
    def trained(make_optimizer):
        torch.manual_seed(0)  # channels-last weights: fused kernels walk raw memory
        model = timm.create_model("test_resnet", num_classes=0).to(
            memory_format=torch.channels_last)
        optimizer = make_optimizer(model)
        generator = torch.Generator().manual_seed(0)
        for _ in range(3):  # the same gradients on both sides, whatever the weights
            for parameter in model.parameters():
                parameter.grad = torch.empty_like(parameter).normal_(generator=generator)
            optimizer.step()
        return model.state_dict()

    got = trained(lambda model: build_optimizer(name, model, lr=0.01, weight_decay=0.1))
    expected = trained(lambda model: torch_optimizer(param_groups(model, 0.1), lr=0.01,
                                                     **({"momentum": 0.9} if exact else {})))
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], msg=key,
                                   **({"rtol": 0, "atol": 0} if exact else {}))


def test_warmup_then_cosine_schedule():
    factors = [warmup_cosine(s, total_steps=10, warmup_steps=3, final_ratio=0.1)
               for s in range(10)]
    assert factors[:3] == pytest.approx([1 / 3, 2 / 3, 1.0])
    cosine = [0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * i / 7)) for i in range(7)]
    assert factors[3:] == pytest.approx(cosine)
    assert all(a >= b for a, b in zip(factors[2:], factors[3:], strict=False))

    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.6)
    schedule = WarmupCosineSchedule(optimizer, total_steps=10, warmup_steps=3, final_ratio=0.1)
    seen = []
    for _ in range(10):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    assert seen == pytest.approx([0.6 * f for f in factors])

    # Resuming into a longer recipe keeps the position and follows the new, longer schedule.
    longer = WarmupCosineSchedule(optimizer, total_steps=20, warmup_steps=3, final_ratio=0.1)
    longer.load_state_dict(schedule.state_dict())
    assert longer.last_epoch == 10
    assert optimizer.param_groups[0]["lr"] == pytest.approx(
        0.6 * warmup_cosine(10, total_steps=20, warmup_steps=3, final_ratio=0.1))


def test_weight_decay_follows_a_cosine_to_its_end_value_on_decayed_groups_only():
    weight, bias = torch.nn.Parameter(torch.zeros(2, 2)), torch.nn.Parameter(torch.zeros(2))
    optimizer = torch.optim.AdamW([{"params": [weight], "weight_decay": 0.04},
                                   {"params": [bias], "weight_decay": 0.0}], lr=0.1)
    schedule = WarmupCosineSchedule(optimizer, total_steps=4, warmup_steps=1,
                                    weight_decay_end=0.4)
    seen = []
    for _ in range(4):
        seen.append([group["weight_decay"] for group in optimizer.param_groups])
        optimizer.step()
        schedule.step()
    expected = [0.4 - 0.36 * 0.5 * (1 + math.cos(math.pi * i / 4)) for i in range(4)]
    assert [decayed for decayed, _ in seen] == pytest.approx(expected)  # 0.04, ..., no warm-up
    assert all(undecayed == 0.0 for _, undecayed in seen)

    # A resume restores the recipe's values, then the schedule's position.
    optimizer.param_groups[0]["weight_decay"] = 0.04
    resumed = WarmupCosineSchedule(optimizer, total_steps=4, warmup_steps=1,
                                   weight_decay_end=0.4)
    resumed.load_state_dict(schedule.state_dict())
    assert optimizer.param_groups[0]["weight_decay"] == pytest.approx(0.4)  # after step 4 of 4


def test_checkpoint_files_are_read_safely(tmp_path, uninterrupted):
    reference, _ = uninterrupted
    data = (reference / "checkpoint.pt").read_bytes()
    (tmp_path / "truncated.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="Cannot read training checkpoint"):
        load_checkpoint(tmp_path / "truncated.pt")
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a seedzoo training checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    # RNG states of a 2-process run are not forced onto 1 process (the trainer warns, reseeds).
    states = gather_rng_states(torch.device("cpu"))
    doubled = {name: torch.cat([rows, rows]) for name, rows in states.items()}
    assert restore_rng_states(states, torch.device("cpu"))
    assert not restore_rng_states(doubled, torch.device("cpu"))


@pytest.mark.parametrize("teacher", [None, "absent"])
def test_a_required_method_option_left_out_or_null_is_a_clear_error(tmp_path, teacher):
    method = {"name": "seed", "student": "test_resnet"}
    if teacher != "absent":
        method["teacher"] = teacher
    with pytest.raises(SeedzooError, match=r"Method 'seed' needs method\.teacher in the recipe"):
        _run(tmp_path, "run", method=method)
    assert not (tmp_path / "run").exists()


def test_a_state_that_is_not_finite_is_never_checkpointed_and_the_one_before_is_kept(tmp_path,
                                                                                   capsys):
    """A buffer turns infinite at step 5 while the loss stays finite: the checkpoint of step 6
    is not written; steps 4 (last) and 2 (the one before) are kept, and the run continues from
    the earlier one with --resume-from."""
    recipe = tmp_path / "inf.yaml"
    recipe.write_text(json.dumps(toy_recipe(method={"inf_state_at_call": 5})))
    run_dir = tmp_path / "run"
    assert cli_main(["train", "--config", str(recipe), "--out", str(run_dir)]) == 2
    message = capsys.readouterr().err
    assert "stopped at step 6" in message and "method.scale is not finite" in message
    assert "checkpoint.prev.pt (step 2, largest |value|" in message
    assert "checkpoint.pt (step 4, largest |value|" in message
    assert f"--resume-from {run_dir / 'checkpoint.prev.pt'}" in message
    assert load_checkpoint(run_dir / "checkpoint.pt")["progress"]["global_step"] == 4
    assert load_checkpoint(run_dir / "checkpoint.prev.pt")["progress"]["global_step"] == 2
    assert cli_main(["train", "--config", str(recipe), "--out", str(run_dir), "--resume-from",
                     str(run_dir / "checkpoint.prev.pt"),
                     "--set", "method.inf_state_at_call=null"]) == 0
    assert "from checkpoint.prev.pt at step 2" in capsys.readouterr().out


def test_resume_with_nothing_to_resume_is_refused(tmp_path):
    with pytest.raises(SeedzooError, match="Nothing to resume: .*checkpoint.pt does not exist"):
        _run(tmp_path, "fresh", resume=True)
    assert not (tmp_path / "fresh").exists()


def test_a_run_folder_in_use_by_another_training_is_refused(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from seedzoo.files import exclusive_lock\n"
        "with exclusive_lock(sys.argv[1], 'x'):\n"
        "    print('locked', flush=True); time.sleep(60)"), str(run_dir / ".lock")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(SeedzooError, match=r"The run folder .*run is in use by process "
                                               rf"{holder.pid}"):
            _run(tmp_path, "run")
        assert not (run_dir / "config.yaml").exists() and not (run_dir / "metrics.jsonl").exists()
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.parametrize("channels_last", [True, False])
def test_the_trainer_trains_in_the_memory_layout_the_recipe_asks(tmp_path, channels_last):
    config = config_from_dict(toy_recipe(train={"channels_last": channels_last}))
    trainer = Trainer(config, tmp_path / "run", torch.device("cpu"))
    layout = torch.channels_last if channels_last else torch.contiguous_format
    convolutions = [p for p in trainer.method.parameters() if p.ndim == 4]
    assert convolutions and all(p.is_contiguous(memory_format=layout) for p in convolutions)
    batch = next(iter(trainer.loader)).to(torch.device("cpu"), memory_format=trainer.memory_format)
    assert all(v.is_contiguous(memory_format=layout) for v in batch.views)
    assert batch.labels.shape == batch.indices.shape == (len(batch.views[0]),)
    trainer.train_step(batch)  # trains in that layout
    assert all(p.is_contiguous(memory_format=layout) for p in convolutions)


@pytest.mark.parametrize("mode", ["global", "per_parameter"])
def test_gradient_clipping_against_a_hand_computation(mode):
    big, small, frozen = (torch.nn.Parameter(torch.zeros(2)) for _ in range(3))
    big.grad, small.grad = torch.tensor([3.0, 4.0]), torch.tensor([0.6, 0.8])   # norms 5 and 1
    clip_gradients([big, small, frozen], 2.0, mode)
    if mode == "global":   # all scaled by 2 / sqrt(25 + 1)
        scale = 2.0 / math.sqrt(26.0)
        torch.testing.assert_close(big.grad, torch.tensor([3.0, 4.0]) * scale)
        torch.testing.assert_close(small.grad, torch.tensor([0.6, 0.8]) * scale)
    else:                  # each to at most 2 on its own: the small one is left alone
        torch.testing.assert_close(big.grad, torch.tensor([3.0, 4.0]) * 2.0 / (5.0 + 1e-6))
        torch.testing.assert_close(small.grad, torch.tensor([0.6, 0.8]))
    assert frozen.grad is None


def test_unknown_gradient_clipping_mode_is_refused():
    with pytest.raises(SeedzooError, match="train.grad_clip_mode.*per_parameter"):
        config_from_dict({"method": {"name": "simclr"},
                          "train": {"grad_clip": 3.0, "grad_clip_mode": "layer"}})
