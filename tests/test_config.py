"""Recipes: YAML sections, typed --set overrides, clear errors, the recipes shipped in configs/."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from seedzoo.errors import SeedzooError
from seedzoo.training.config import (
    apply_overrides,
    config_from_dict,
    load_config,
    run_config,
    save_config,
)
from seedzoo.training.trainer import check_method_options

CONFIGS_DIR = Path(__file__).parent.parent / "configs"
CONFIGS = sorted(CONFIGS_DIR.rglob("*.yaml"))


def _write(path: Path, values: dict) -> Path:
    path.write_text(yaml.safe_dump(values))
    return path


def test_overrides_are_typed_yaml_values(tmp_path):
    recipe = _write(tmp_path / "r.yaml", {"method": {"name": "seed", "queue_size": 4096},
                                          "train": {"epochs": 3}})
    config = load_config(recipe, ["train.lr=0.5", "data.limit=null", "train.sync_bn=true",
                                  "data.mean=[0.1, 0.2, 0.3]", "method.queue_size=128",
                                  "train.knn_monitor.every_epochs=2",
                                  "data.view_options.crop_scale=[0.5, 1.0]"])
    assert config.train.lr == 0.5 and config.data.limit is None and config.train.sync_bn is True
    assert config.data.mean == [0.1, 0.2, 0.3] and config.train.epochs == 3
    assert config.method_options == {"queue_size": 128}
    assert config.train.knn_monitor.every_epochs == 2
    assert config.data.view_options == {"crop_scale": [0.5, 1.0]}


def test_exponent_notation_is_a_number_in_recipes_and_overrides(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("method: {name: seed, teacher_temperature: 1e-4}\ntrain: {epochs: 1}\n")
    config = load_config(recipe, ["train.weight_decay=1e-5", "train.lr=2E-1"])
    assert config.method_options == {"teacher_temperature": 1e-4}
    assert config.train.weight_decay == 1e-5 and config.train.lr == 0.2
    config.method["teacher"] = {"source": "1e5"}  # a string that reads like a number
    save_config(config, tmp_path / "saved.yaml")
    assert load_config(tmp_path / "saved.yaml") == config


def test_linear_scaling_rule_unless_lr_is_given():
    config = config_from_dict({"method": {"name": "seed"}, "data": {"batch_size": 512},
                               "train": {"base_lr": 0.03}})
    assert config.peak_lr() == pytest.approx(0.06)
    config.train.lr = 0.2
    assert config.peak_lr() == 0.2


@pytest.mark.parametrize("values, message", [
    ({"method": {"name": "x"}, "train": {"lrr": 1}}, r"train\.lrr.*Valid keys of train: epochs"),
    ({"method": {"name": "x"}, "trian": {}}, r"Unknown key trian.*method, data, train"),
    ({"method": {"name": "x"}, "train": {"knn_monitor": {"every": 1}}},
     r"train\.knn_monitor\.every.*every_epochs"),
    ({"method": {"name": "x"}, "train": {"epochs": "ten"}}, r"train\.epochs must be int"),
    ({"method": {"name": "x"}, "train": {"sync_bn": 1}}, r"train\.sync_bn must be bool"),
    ({"method": {"name": "x"}, "train": {"optimizer": "adam"}}, r"sgd, adamw, lars"),
    ({"method": {"name": "x"}, "data": {"std": [0.5]}}, r"data\.std needs 3 values"),
    ({"method": {}}, r"method section needs a name"),
    ({"method": {"name": "x"}, "train": {"log_every_steps": 0}},
     r"train\.log_every_steps must be at least 1, got 0"),
    ({"method": {"name": "x"}, "train": {"max_steps": 0}}, r"train\.max_steps must be at least 1"),
    ({"method": {"name": "x"}, "train": {"checkpoint_every_steps": -5}},
     r"train\.checkpoint_every_steps must not be negative, got -5"),
    ({"method": {"name": "x"}, "train": {"knn_monitor": {"every_epochs": -1}}},
     r"train\.knn_monitor\.every_epochs must not be negative"),
    ({"method": {"name": "x"}, "train": {"grad_clip": -1.0}}, r"train\.grad_clip must be positive"),
    ({"method": {"name": "x"}, "train": {"weight_decay": 0.0, "weight_decay_end": 0.4}},
     r"train\.weight_decay_end schedules"),
    ({"method": {"name": "x"}, "data": {"std": [0.5, 0, 0.5]}}, r"data\.std positive"),
    ({"method": {"name": "x"}, "data": {"mean": [0.5, float("nan"), 0.5]}},
     r"data\.mean must be finite"),
    ({"method": {"name": "x"}, "train": {"lr": -0.1}}, r"train\.lr must be a finite number >= 0"),
    ({"method": {"name": "x"}, "train": {"weight_decay": -1e-4}}, r"train\.weight_decay must be"),
    ({"method": {"name": "x"}, "train": {"momentum": 1.5}}, r"train\.momentum must be in \[0, 1\)"),
    ({"method": {"name": "x"}, "train": {"betas": [0.9, 1.0]}}, r"train\.betas\[1\] must be in"),
    ({"method": {"name": "x"}, "train": {"betas": [0.9]}}, r"train\.betas needs 2 values"),
])
def test_bad_recipes_are_clear_errors(values, message):
    with pytest.raises(SeedzooError, match=message):
        config_from_dict(values)


def test_bad_override_syntax():
    with pytest.raises(SeedzooError, match="section.key=value"):
        apply_overrides({}, ["train.lr"])
    with pytest.raises(SeedzooError, match="is a value, not a section"):
        apply_overrides({"train": {"lr": 1}}, ["train.lr.x=2"])


def test_saved_config_round_trips_and_resume_reports_changes(tmp_path):
    recipe = _write(tmp_path / "r.yaml", {"method": {"name": "seed"}, "train": {"epochs": 3}})
    config, changes = run_config(recipe, [], tmp_path / "run", resume=False)
    assert changes == []
    (tmp_path / "run").mkdir()
    save_config(config, tmp_path / "run" / "config.yaml")
    assert load_config(tmp_path / "run" / "config.yaml") == config
    resumed, changes = run_config(None, ["train.epochs=5"], tmp_path / "run", resume=True)
    assert resumed.train.epochs == 5 and changes == ["train.epochs: 3 -> 5"]
    with pytest.raises(SeedzooError, match="--config"):
        run_config(None, [], tmp_path / "elsewhere", resume=True)


def test_configs_directory_has_the_recipes():
    names = {p.relative_to(CONFIGS_DIR).as_posix() for p in CONFIGS}
    assert {"fmnist/seed/resnet50_to_mobilenetv3_large_100.yaml",
            "fmnist/seed/resnet50_to_resnet18.yaml",
            "fmnist/main_job/teacher.yaml", "fmnist/main_job/student.yaml",
            "fmnist/main_job/scratch.yaml",
            "imagenet/seed/resnet50_to_efficientnet_b0.yaml",
            "fmnist/supervised/resnet50.yaml", "fmnist/kd/resnet50_to_resnet18.yaml",
            "imagenet/kd/resnet34_to_resnet18.yaml"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.relative_to(CONFIGS_DIR).as_posix())
def test_every_shipped_recipe_is_valid(path):
    config = load_config(path)
    check_method_options(config)
