"""`seedzoo eval` end to end on tiny models and digits, and its results JSON."""

import hashlib
import json
import subprocess
import sys

import pytest

from seedzoo.cli import main
from seedzoo.evaluation import read_report
from seedzoo.results import SCHEMA, format_report, make_report, write_report

pytestmark = pytest.mark.usefixtures("single_thread")


QUICK = ["--workers", "0", "--quiet", "--batch-size", "64"]


def test_eval_tiny_timm_model_all_protocols_writes_json(tmp_path, capsys):
    out = tmp_path / "results" / "tiny.json"
    code = main(["eval", "--model", "timm:test_resnet", "--dataset", "digits",
                 "--limit-train", "210", "--limit-test", "60", "--probe-epochs", "2",
                 "--probe-min-steps", "60", "--cache-dir", str(tmp_path / "cache"),
                 "--out", str(out), *QUICK])
    assert code == 0
    printed = capsys.readouterr().out
    assert "knn_top1@20" in printed and "fewshot_10pct_top1" in printed
    report = json.loads(out.read_text())
    assert report["schema"] == SCHEMA
    metrics = report["metrics"]
    for name in ("knn_top1@10", "knn_top5@10", "knn_top1@20", "knn_top5@20", "knn_top1@100",
                 "knn_top5@100", "knn_top1@200", "knn_top5@200", "linear_top1", "linear_top5",
                 "fewshot_1pct_top1", "fewshot_1pct_top5", "fewshot_10pct_top1",
                 "fewshot_10pct_top5"):
        assert 0.0 <= metrics[name] <= 1.0, name
    config = report["config"]
    assert config["model"] == "timm:test_resnet" and config["arch"] == "test_resnet"
    assert config["dataset"] == "digits" and config["backend"] == "torch"
    assert (config["train_size"], config["test_size"]) == (210, 60)
    assert config["feature_dim"] == 96 and len(config["weights_sha256"]) == 64
    assert config["knn"] == {"ks": [10, 20, 100, 200], "temperature": 0.07,
                             "weights": "distance", "metric": "cosine"}
    assert config["linear"]["weight_decay"] in config["linear"]["weight_decays"]
    assert 15 <= config["fewshot"]["10pct"]["train_size"] <= 25  # 10% of each class
    assert config["protocols"] == ["knn", "linear", "fewshot"]
    assert "Normalize" in config["transform"]
    assert {"torch", "timm", "python", "seedzoo"} <= set(report["versions"])
    assert report["timestamp"].endswith("+00:00")
    assert not list(out.parent.glob("*.tmp"))


def test_eval_pixels_knn_beats_chance_by_far_and_reuses_the_cache(tmp_path, capsys):
    args = ["eval", "--model", "pixels", "--dataset", "digits", "--protocol", "knn",
            "--knn-k", "1,5", "--cache-dir", str(tmp_path), *QUICK]
    assert main([*args, "--out", str(tmp_path / "a.json")]) == 0
    cached = sorted(tmp_path.glob("*.safetensors"))
    assert len(cached) == 2  # train and test features
    stamps = [p.stat().st_mtime_ns for p in cached]
    assert main([*args, "--out", str(tmp_path / "b.json")]) == 0
    assert [p.stat().st_mtime_ns for p in cached] == stamps  # read, not rewritten
    first, second = read_report(tmp_path / "a.json"), read_report(tmp_path / "b.json")
    assert first["metrics"] == second["metrics"]
    assert set(first["metrics"]) == {"knn_top1@1", "knn_top5@1", "knn_top1@5", "knn_top5@5"}
    assert first["metrics"]["knn_top1@5"] > 0.95  # raw-pixel k-NN on digits is ~98%
    assert first["config"]["feature_dim"] == 64 and first["config"]["arch"] is None


def test_eval_onnx_backend_end_to_end(tmp_path, tmp_path_factory, capsys):
    from onnx_helpers import exported

    _, exported_model = exported("test_resnet", tmp_path_factory)
    out = tmp_path / "ort.json"
    assert main(["eval", "--onnx", str(exported_model.path), "--dataset", "digits",
                 "--protocol", "knn", "--knn-k", "10", "--limit-train", "100", "--limit-test",
                 "40", "--no-cache", "--threads", "1", "--out", str(out), *QUICK]) == 0
    report = read_report(out)
    config = report["config"]
    assert config["backend"] == "onnxruntime" and config["onnx"] == str(exported_model.path)
    assert config["model"] == str(exported_model.path) and config["feature_dim"] == 96
    assert config["weights_sha256"] == hashlib.sha256(exported_model.path.read_bytes()).hexdigest()
    assert 0.0 <= report["metrics"]["knn_top1@10"] <= 1.0


def test_eval_user_errors_exit_2_with_a_message(tmp_path, capsys):
    assert main(["eval", "--model", "pixels", "--dataset", "nope", *QUICK]) == 2
    assert "Unknown dataset 'nope'" in capsys.readouterr().err
    assert main(["eval", "--model", "pixels", "--dataset", "digits", "--protocol", "knn,svm",
                 *QUICK]) == 2
    assert "svm" in capsys.readouterr().err
    assert main(["eval", "--dataset", "digits", *QUICK]) == 2
    assert "--model" in capsys.readouterr().err
    assert main(["eval", "--backend", "onnxruntime", "--model", "pixels", "--dataset", "digits",
                 *QUICK]) == 2
    assert "--onnx" in capsys.readouterr().err
    assert main(["eval", "--model", str(tmp_path / "weights.pt"), "--dataset", "digits",
                 *QUICK]) == 2
    capsys.readouterr()


@pytest.mark.parametrize("option, value, message", [
    ("--probe-lr", "0", "must be a positive number"),
    ("--probe-lr", "nan", "must be a positive number"),
    ("--probe-lr", "-0.05", "must be a positive number"),
    ("--knn-temperature", "0", "must be a positive number"),
    ("--workers", "-1", "must be an integer >= 0"),
    ("--weight-decays", "", "expected comma-separated numbers >= 0"),
    ("--weight-decays", "1e-4,-1", "must be a number >= 0"),
])
def test_eval_bad_option_values_are_refused_by_the_parser(option, value, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", "--model", "pixels", "--dataset", "digits", option, value])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert f"argument {option}: {message}" in error and "Traceback" not in error


def test_eval_help_explains_itself():
    result = subprocess.run([sys.executable, "-m", "seedzoo", "eval", "--help"],
                            capture_output=True, text=True, check=True)
    for phrase in ("k-NN", "linear probe", "few-shot", "--protocol", "--onnx", "examples:"):
        assert phrase in result.stdout


def test_report_round_trip_and_table(tmp_path):
    report = make_report({"knn_top1@20": 0.8459, "linear_top1": 0.84},
                         {"model": "pixels", "dataset": "fashion-mnist", "train_size": 60000,
                          "test_size": 10000, "feature_dim": 784}, {"knn": 1.234})
    path = write_report(report, tmp_path / "r.json")
    assert read_report(path) == report
    table = format_report(report)
    assert "pixels on fashion-mnist" in table and "84.59" in table
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(Exception, match="not a seedzoo evaluation results file"):
        read_report(tmp_path / "bad.json")


def test_a_corrupt_image_read_by_a_loader_worker_is_one_message_naming_the_file(tmp_path, capsys):
    from PIL import Image

    for split in ("train", "test"):
        for cls in ("a", "b"):
            (tmp_path / split / cls).mkdir(parents=True)
            for i in range(3):
                Image.new("RGB", (8, 8), (i * 50, 0, 0)).save(tmp_path / split / cls / f"{i}.png")
    (tmp_path / "train" / "a" / "bad.png").write_bytes(b"not an image")
    code = main(["eval", "--model", "pixels", "--dataset", f"imagefolder:{tmp_path}",
                 "--protocol", "knn", "--workers", "1", "--no-cache", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert err.startswith(f"seedzoo eval: error: {tmp_path / 'train' / 'a' / 'bad.png'} is not a "
                          "readable image")
