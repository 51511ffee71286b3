"""The latency engine: interleaving, statistics and the JSON it writes (no timing assertions)."""

from __future__ import annotations

import json
import time

import pytest
import torch

from onnx_helpers import exported
from seedzoo.errors import SeedzooError
from seedzoo.evaluation.latency import (benchmark_latency, format_latency_table, summarize,
                                       time_interleaved)


def test_runners_are_interleaved_until_each_has_min_iterations():
    calls = []

    def runner(name, seconds):
        def run():
            calls.append(name)
            time.sleep(seconds)
        return run

    samples = time_interleaved({"slow": runner("slow", 0.008), "fast": runner("fast", 0.001)},
                               budget_s=0.08, min_iterations=4, warmup_s=0.0, block_s=0.0)
    assert calls[:4] == ["slow", "slow", "fast", "fast"]  # two warm-up calls each
    runs = [name for i, name in enumerate(calls[4:]) if i == 0 or calls[3 + i] != name]
    assert runs == ["slow", "fast"] * (len(runs) // 2)  # blocks alternate, round after round
    assert len(samples["slow"]) >= 4 and len(samples["fast"]) > len(samples["slow"])
    assert min(samples["slow"]) >= 0.008 and min(samples["fast"]) >= 0.001


def test_summary_percentiles_and_throughput():
    stats = summarize([0.001 * i for i in range(1, 101)], batch_size=4)
    assert stats["p50_ms"] == pytest.approx(50.5)
    assert stats["p90_ms"] == pytest.approx(90.1)
    assert stats["p99_ms"] == pytest.approx(99.01)
    assert stats["images_per_s"] == pytest.approx(4 / 0.0505)
    assert stats["iterations"] == 100


def test_benchmark_reports_every_backend_side_by_side(tmp_path_factory):
    model, report = exported("test_efficientnet", tmp_path_factory)
    before = torch.get_num_threads()
    result = benchmark_latency(model, report.path, batch_sizes=(1, 2), threads=1, budget_s=0.1,
                       min_iterations=3)
    assert torch.get_num_threads() == before
    json.dumps(result)  # JSON-ready
    rows = {(r["batch_size"], r["backend"], r["precision"]) for r in result["results"]}
    assert rows == {(b, backend, "fp32") for b in (1, 2)
                    for backend in ("torch", "onnxruntime", "onnxruntime-bare")}
    assert all(r["iterations"] >= 3 and r["p50_ms"] <= r["p90_ms"] <= r["p99_ms"]
               for r in result["results"])
    assert [r["batch_size"] for r in result["ratios"]] == [1, 2]
    assert set(result["ratios"][0]) == {"batch_size", "ort_fp32/torch", "seedzoo/bare"}
    assert result["threads"] == 1 and result["settings"]["ort_session"]["intra_op_num_threads"] == 1
    assert result["files"]["fp32"]["same_weights_as_torch_model"] is True
    assert result["machine"]["versions"]["onnxruntime"]
    assert len(result["load_average"]["start"]) == 3
    assert any("ONNX Runtime fp32" in line for line in result["findings"])
    table = format_latency_table(result)
    assert "ORT-bare fp32" in table and "seedzoo ORT path / bare session.run" in table


def test_benchmark_refuses_another_architecture_and_bad_batch_sizes(tmp_path_factory):
    import seedzoo

    _, report = exported("test_efficientnet", tmp_path_factory)
    with pytest.raises(SeedzooError, match="holds 'test_efficientnet', not 'test_resnet'"):
        benchmark_latency(seedzoo.load("timm:test_resnet"), report.path, threads=1)
    model, _ = exported("test_efficientnet", tmp_path_factory)
    with pytest.raises(SeedzooError, match="Batch sizes must be positive"):
        benchmark_latency(model, report.path, batch_sizes=(0,))
