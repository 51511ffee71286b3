"""`seedzoo export` and `seedzoo bench` end to end on a tiny model, and their errors."""

from __future__ import annotations

import contextlib
import io
import json

import pytest

from seedzoo.cli import main
from seedzoo.deploy.onnx_export import read_onnx_metadata

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def exported_files(tmp_path_factory):
    """``seedzoo export --int8 --knn-dataset`` once; its files and what it printed."""
    out = tmp_path_factory.mktemp("cli") / "model.onnx"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(["export", "--model", "timm:test_efficientnet", "--out", str(out),
                     "--validate-dataset", "digits", "--int8", "--calib-dataset", "digits",
                     "--calib-size", "16", "--knn-dataset", "digits", "--knn-train", "100",
                     "--knn-test", "50"])
    assert code == 0
    return out, out.with_suffix(".int8.onnx"), printed.getvalue()


def test_export_writes_validated_fp32_and_int8_files(exported_files):
    fp32, int8, printed = exported_files
    assert fp32.is_file() and int8.is_file()
    assert "onnx.checker: passed" in printed
    assert "Validation against torch on digits test images: batch 1:" in printed
    assert "batch 8:" in printed
    assert "INT8 ->" in printed and "k-NN top-1 (k=20) on digits" in printed
    meta = read_onnx_metadata(fp32)
    assert meta["model_id"] == "timm:test_efficientnet" and meta["input_size"] == [3, 160, 160]
    assert "quantization" in read_onnx_metadata(int8)


def test_bench_prints_a_table_and_writes_json(exported_files, tmp_path, capsys):
    fp32, int8, _ = exported_files
    out = tmp_path / "bench.json"
    code = main(["bench", "--model", "timm:test_efficientnet", "--onnx", str(fp32), "--int8",
                 str(int8), "--batch-sizes", "1,2", "--threads", "1", "--budget", "0.1",
                 "--min-iterations", "2", "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "ORT int8" in printed and "torch fp32" in printed and f"Wrote {out}" in printed
    result = json.loads(out.read_text())
    backends = {(r["backend"], r["precision"]) for r in result["results"]}
    assert backends == {("torch", "fp32"), ("onnxruntime", "fp32"), ("onnxruntime-bare", "fp32"),
                        ("onnxruntime", "int8")}
    assert {"ort_int8/torch", "ort_int8/ort_fp32"} <= set(result["ratios"][0])
    assert any("INT8" in line for line in result["findings"])
    assert result["arguments"]["batch_sizes"] == [1, 2] and result["threads"] == 1
    assert result["files"]["int8"]["quantization"].startswith("static QDQ")


@pytest.mark.parametrize("argv, message", [
    (["export", "--model", "timm:no_such_net_xyz", "--out", "{tmp}/m.onnx"], "no architecture"),
    (["export", "--model", "timm:test_resnet", "--out", "{tmp}/m.onnx", "--knn-dataset",
      "digits"], "add --int8"),
    (["export", "--model", "timm:test_resnet", "--out", "{tmp}/m.onnx", "--opset", "11"],
     "Opset 11 is too old"),
    (["bench", "--model", "timm:test_resnet", "--onnx", "{tmp}/missing.onnx"], "does not exist"),
    (["bench", "--model", "timm:test_resnet", "--onnx", "{tmp}/m.onnx", "--threads", "0"],
     "--threads must be at least 1"),
])
def test_user_errors_end_in_one_message(argv, message, tmp_path, capsys):
    code = main([part.replace("{tmp}", str(tmp_path)) for part in argv])
    assert code == 2
    error = capsys.readouterr().err
    assert message in error and "Traceback" not in error
    assert not (tmp_path / "m.onnx").exists()


def test_bad_batch_sizes_are_rejected_by_the_parser(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "--model", "timm:test_resnet", "--batch-sizes", "1,0"])
    assert exit_info.value.code == 2
    assert "batch sizes must be positive" in capsys.readouterr().err


@pytest.mark.parametrize("option, value, message", [
    ("--min-iterations", "0", "must be a positive integer"),
    ("--budget", "-1", "must be a number >= 0"),
    ("--budget", "nan", "must be a number >= 0"),
])
def test_bad_bench_settings_are_rejected_by_the_parser(option, value, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "--model", "timm:test_resnet", option, value])
    assert exit_info.value.code == 2
    assert f"argument {option}: {message}" in capsys.readouterr().err


@pytest.mark.parametrize("option", ["--calib-size", "--knn-train", "--knn-test"])
def test_bad_int8_sizes_are_rejected_before_any_export(option, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["export", "--model", "timm:test_resnet", "--out", str(tmp_path / "m.onnx"),
              "--int8", option, "0"])
    assert exit_info.value.code == 2
    assert f"argument {option}: must be a positive integer" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("command, options", [
    ("export", ["--validate-dataset", "--opset", "--int8", "--calib-dataset", "--calib-size",
                "--knn-dataset", "dynamo", "metadata"]),
    ("bench", ["--onnx", "--int8", "--batch-sizes", "--threads", "--budget", "--out",
               "p50/p90/p99", "bare"]),
])
def test_help_explains_every_option(command, options, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for option in options:
        assert option in text
