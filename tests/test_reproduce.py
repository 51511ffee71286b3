"""benchmarks/reproduce.py: every planned run is a valid recipe, finished work is skipped, and
summary.json is gathered from the result JSONs alone."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from seedzoo.training.config import load_config
from seedzoo.training.trainer import check_method_options

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "reproduce.py"
spec = importlib.util.spec_from_file_location("reproduce", SCRIPT)
reproduce = importlib.util.module_from_spec(spec)
sys.modules["reproduce"] = reproduce    # dataclasses look their module up
spec.loader.exec_module(reproduce)

CPU_RUNS = reproduce.plan(reproduce.BUDGETS["cpu"], Path("runs/study"))


@pytest.mark.parametrize("budget", sorted(reproduce.BUDGETS))
@pytest.mark.parametrize("index", range(len(CPU_RUNS)), ids=[run.name for run in CPU_RUNS])
def test_every_planned_run_is_a_valid_recipe(budget, index):
    run = reproduce.plan(reproduce.BUDGETS[budget], Path("runs/study"))[index]
    config = load_config(reproduce.ROOT / run.recipe, list(run.overrides))
    check_method_options(config)
    assert config.method["name"] == run.method
    for need in run.needs:   # the folders it reads are those of earlier runs
        assert any(need in override for override in run.overrides)


def test_plan_covers_every_student_and_method():
    students = {(run.method, arch) for run in CPU_RUNS if not run.is_teacher
                for arch in run.networks.values()}
    for arch in reproduce.STUDENTS:
        for method in ("moco", "seed", "kd", "crd", "dogo", "simclrv2_distill", "supervised"):
            assert (method, arch) in students
    names = [run.name for run in CPU_RUNS]
    assert len(names) == len(set(names))
    for position, run in enumerate(CPU_RUNS):
        assert all(names.index(need) < position for need in run.needs)


def fake_training(study, run) -> None:
    (study.runs_dir / run.name).mkdir(parents=True)
    (study.runs_dir / run.name / "summary.json").write_text("{}")


def fake_results(study, run, top1: float, weights: str = "trained") -> None:
    train = {"steps": 10, "world_size": 1, "wall_time_s": 12.5, "command": "seedzoo train ...",
             "config": {"data": {"batch_size": 8}, "train": {"epochs": 2}}}
    (study.results / f"train_{run.name}.json").write_text(json.dumps(train))
    for network in run.networks:
        for kind in ("eval", "finetune", "transfer_digits"):
            (study.results / f"{kind}_{run.name}_{network}.json").write_text(json.dumps(
                {"metrics": {"knn_top1@20": top1}, "config": {"weights_sha256": weights}}))
        (study.results / f"deploy_{run.name}_{network}.json").write_text(json.dumps(
            {"row": {"params": 7, "latency_ms": {"onnx_fp32_b1": 1.5}},
             "latency": {"model": {"weights_sha256": weights}}}))


def test_finished_runs_are_skipped_unless_a_later_run_needs_their_folder(tmp_path):
    study = reproduce.Study(reproduce.BUDGETS["cpu"], tmp_path / "runs", tmp_path / "results",
                            threads=1)
    study.results.mkdir()
    seed = study.by_name["seed_resnet18"]
    teacher = study.by_name[reproduce.TEACHER]
    assert [run.name for run in study.needed([seed])] == [teacher.name, seed.name]
    fake_results(study, teacher, 0.7)
    assert [run.name for run in study.needed([teacher])] == []
    fake_training(study, teacher)
    assert [run.name for run in study.needed([seed])] == [seed.name]
    fake_results(study, seed, 0.75)
    assert study.needed([seed]) == []
    # a catalog entry publishes the weights: a run whose folder is gone is retrained
    assert [run.name for run in study.needed([seed], folders=[seed])] == [seed.name]
    fake_training(study, seed)
    assert study.needed([seed], folders=[seed]) == []


def test_results_measured_on_former_weights_are_measured_again(tmp_path, monkeypatch):
    study = reproduce.Study(reproduce.BUDGETS["cpu"], tmp_path / "runs", tmp_path / "results",
                            threads=1)
    study.results.mkdir()
    run = study.by_name["seed_resnet18"]
    measured = {"eval": "former", "transfer_digits": "current"}
    for kind, weights in measured.items():
        (study.results / f"{kind}_{run.name}_encoder.json").write_text(
            json.dumps({"metrics": {}, "config": {"weights_sha256": weights}}))
    zero_head = {"weights_sha256": "current", "finetune": {"classifier_init": "zeros"}}
    (study.results / f"finetune_{run.name}_encoder.json").write_text(   # another protocol
        json.dumps({"metrics": {}, "config": zero_head}))
    (study.results / f"deploy_{run.name}_encoder.json").write_text(
        json.dumps({"row": {}, "latency": {"model": {"weights_sha256": "former"}}}))
    commands, deployed = [], []
    monkeypatch.setattr(study, "fingerprint", lambda name, network: "current")
    monkeypatch.setattr(reproduce, "execute", commands.append)
    monkeypatch.setattr(reproduce, "deployment_figures",
                        lambda folder, threads: deployed.append(folder) or {})
    monkeypatch.setattr("seedzoo.zoo.pretrained.has_classifier", lambda folder: False)
    study.evaluate(run, "encoder")
    assert [command[command.index("--out") + 1] for command in commands] == [
        (study.results / f"{kind}_{run.name}_encoder.json").as_posix()
        for kind in ("eval", "finetune")]
    assert commands[1][commands[1].index("--finetune-head-init") + 1] == "probe"
    assert deployed == [(study.runs_dir / run.name / "encoder").as_posix()]


def test_summary_rows_come_from_the_result_jsons(tmp_path):
    study = reproduce.Study(reproduce.BUDGETS["cpu"], tmp_path / "runs", tmp_path / "results",
                            threads=1)
    study.results.mkdir()
    run = study.by_name["dogo_mobilenetv3_large_100_resnet18"]
    fake_results(study, run, 0.6)
    for network in run.networks:   # an older eval_ file with fine-tuning figures of its own
        eval_file = study.results / f"eval_{run.name}_{network}.json"
        old = json.loads(eval_file.read_text())
        old["metrics"]["finetune_1pct_top1"] = 0.2
        eval_file.write_text(json.dumps(old))
        (study.results / f"finetune_{run.name}_{network}.json").unlink()
    rows = study.summary()["rows"]
    assert [row["name"] for row in rows] == [
        "dogo_mobilenetv3_large_100_resnet18/resnet18",
        "dogo_mobilenetv3_large_100_resnet18/mobilenetv3_large_100"]
    row = rows[0]
    assert row["architecture"] == "resnet18" and row["method"] == "dogo"
    assert row["images_seen"] == 80 and row["epochs"] == 2 and row["label_fraction"] == 0
    assert row["metrics"] == {"knn_top1@20": 0.6, "transfer_digits_knn_top1@20": 0.6}
    assert row["params"] == 7 and row["latency_ms"] == {"onnx_fp32_b1": 1.5}


def test_the_catalog_gets_the_trained_teachers_and_seed_and_simclrv2_10pct_students(
        tmp_path, monkeypatch):
    study = reproduce.Study(reproduce.BUDGETS["cpu"], tmp_path / "runs", tmp_path / "results",
                            threads=1)
    study.results.mkdir()
    monkeypatch.setattr(study, "fingerprint", lambda name, network: "trained")
    for name in (reproduce.TEACHER, "moco_resnet18", "seed_resnet18", "simclrv2_1pct_resnet18",
                 "simclrv2_10pct_resnet18"):
        fake_results(study, study.by_name[name], 0.7)
    (study.results / "eval_seed_resnet18_encoder.json").unlink()   # not finished
    (study.results / f"finetune_{reproduce.TEACHER}_encoder.json").unlink()   # not shown in cards
    for name in (reproduce.TEACHER, "moco_resnet18", "seed_resnet18", "simclrv2_1pct_resnet18"):
        fake_training(study, study.by_name[name])   # simclrv2_10pct's weights are gone
    assert [run.name for run in study.catalog_runs()] == [reproduce.TEACHER]
    fake_training(study, study.by_name["simclrv2_10pct_resnet18"])
    fake_results(study, study.by_name["simclrv2_10pct_resnet18"], 0.7, weights="former")
    assert [run.name for run in study.catalog_runs()] == [reproduce.TEACHER]  # retrained since
    fake_results(study, study.by_name["simclrv2_10pct_resnet18"], 0.7)
    assert [run.name for run in study.catalog_runs()] == [reproduce.TEACHER,
                                                          "simclrv2_10pct_resnet18"]


def test_transfer_datasets_name_their_files_and_metrics(tmp_path):
    assert reproduce.transfer_name("digits") == "digits"
    assert reproduce.transfer_name("imagefolder:/data/Flowers_102/") == "flowers-102"
    study = reproduce.Study(reproduce.BUDGETS["cpu"], tmp_path / "runs", tmp_path / "results",
                            threads=1, transfers=("digits", "imagefolder:/data/Flowers_102"))
    study.results.mkdir()
    run = study.by_name["moco_resnet18"]
    assert {path.name for path in study.result_paths(run)} == {
        "train_moco_resnet18.json", "eval_moco_resnet18_encoder.json",
        "finetune_moco_resnet18_encoder.json",
        "transfer_digits_moco_resnet18_encoder.json",
        "transfer_flowers-102_moco_resnet18_encoder.json", "deploy_moco_resnet18_encoder.json"}
    fake_results(study, run, 0.7)
    (study.results / "transfer_flowers-102_moco_resnet18_encoder.json").write_text(
        json.dumps({"metrics": {"linear_top1": 0.5}}))
    # an older eval_ file with (50-step) fine-tuning figures: the finetune_ file's count
    (study.results / "eval_moco_resnet18_encoder.json").write_text(
        json.dumps({"metrics": {"knn_top1@20": 0.7, "finetune_1pct_top1": 0.27}}))
    (study.results / "finetune_moco_resnet18_encoder.json").write_text(
        json.dumps({"metrics": {"finetune_1pct_top1": 0.68}}))
    (row,) = study.rows(run)
    assert row["metrics"]["finetune_1pct_top1"] == 0.68
    assert row["metrics"]["transfer_flowers-102_linear_top1"] == 0.5
    assert row["metrics"]["transfer_digits_knn_top1@20"] == 0.7
