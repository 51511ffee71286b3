"""The latency engine: interleaving, statistics and the JSON it writes (no timing assertions)."""

from __future__ import annotations

import json
import time
from collections import Counter

import numpy as np
import pytest
import torch
from onnx_helpers import exported

from seedzoo.deploy.latency import (
    balanced_orders,
    benchmark_latency,
    format_latency_table,
    summarize,
    time_interleaved,
    wrapper_cost_us,
)
from seedzoo.deploy.runtime import OrtEncoder
from seedzoo.errors import SeedzooError


def _sleeper(calls: list, name: str, seconds: float):
    def run():
        calls.append(name)
        time.sleep(seconds)
    return run


@pytest.mark.parametrize("count", [2, 3, 4, 5])
def test_balanced_orders_let_each_runner_follow_each_other_equally_often(count):
    orders = balanced_orders(count)
    assert all(sorted(order) == list(range(count)) for order in orders)
    follows = Counter((a, b) for order in orders for a, b in zip(order, order[1:], strict=False))
    assert len(follows) == count * (count - 1) and len(set(follows.values())) == 1


def test_runners_take_turns_in_balanced_order_until_each_has_min_iterations():
    calls = []
    runners = {name: _sleeper(calls, name, 0.002) for name in "abc"}
    samples = time_interleaved(runners, budget_s=0.0, min_iterations=4, warmup_s=0.0,
                               block_s=0.0)
    assert "".join(calls[:6]) == "aabbcc"  # two warm-up calls each
    assert "".join(calls[6:]) == "abcbcacabcba"  # one-call blocks, balanced orders
    assert [len(s) for s in samples.values()] == [4, 4, 4]
    assert min(min(s) for s in samples.values()) >= 0.002


def test_faster_runners_get_longer_blocks_and_more_samples():
    calls = []
    runners = {"slow": _sleeper(calls, "slow", 0.008), "fast": _sleeper(calls, "fast", 0.001)}
    samples = time_interleaved(runners, budget_s=0.08, min_iterations=4, warmup_s=0.0)
    assert len(samples["slow"]) >= 4 and len(samples["fast"]) > 2 * len(samples["slow"])


def test_wrapper_cost_runs_the_model_once_then_times_the_wrapper_alone(tmp_path_factory):
    _, report = exported("test_efficientnet", tmp_path_factory)
    encoder = OrtEncoder(report.path)
    session, runs = encoder.session, []
    session.run = lambda outputs, feed: runs.append(1) or [np.zeros((2, 256), np.float32)]
    cost = wrapper_cost_us(encoder, torch.randn(2, 3, 160, 160), calls=50)
    assert len(runs) == 1  # the outputs to replay; the 50 timed calls never reach ORT
    assert encoder.session is session  # restored afterwards
    assert cost > 0


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
    assert set(result["ratios"][0]) == {"batch_size", "ort_fp32/torch", "seedzoo/bare",
                                        "seedzoo_wrapper_us", "seedzoo/bare_from_wrapper_cost"}
    assert all(0 < r["seedzoo_wrapper_us"] < 1e5 for r in result["ratios"])
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


@pytest.mark.parametrize("settings, message", [({"min_iterations": 0}, "min_iterations"),
                                               ({"budget_s": -1.0}, "time budget")])
def test_benchmark_refuses_settings_that_time_nothing(tmp_path, settings, message):
    with pytest.raises(SeedzooError, match=message):  # before the model or file is touched
        benchmark_latency(torch.nn.Identity(), tmp_path / "unused.onnx", **settings)
