"""Latency of an encoder in torch eager and ONNX Runtime, measured side by side in one run.

:func:`benchmark_latency` times, for each batch size, on the same input tensor and with the same
number of threads (``torch.set_num_threads`` and ORT's ``intra_op_num_threads``):

- ``torch``: the torch model in eager mode under ``torch.inference_mode``;
- ``onnxruntime`` fp32: seedzoo's :class:`~seedzoo.deploy.runtime.OrtEncoder` on the fp32
  file (torch tensor in, torch tensor out);
- ``onnxruntime-bare`` fp32: a bare ``InferenceSession.run`` on the same session with a NumPy
  view of the same input, so the ``seedzoo/bare`` ratio is exactly what seedzoo's wrapper adds;
- ``onnxruntime`` int8: the INT8 file through ``OrtEncoder``, when one is given.

Because the difference between the seedzoo and the bare call is microseconds, it is also
measured in isolation (:func:`wrapper_cost_us`), which stays precise on a loaded machine.

The backends are interleaved: after a warm-up, rounds run each backend in turn for a block of
about the same time (``budget_s / (backends x min_iterations)``, at least ``block_s``, at least
one call), so faster backends collect more samples, until the time budget is spent and every
backend has ``min_iterations`` calls. The order changes every round, and over a cycle of
rounds each backend runs directly after each other one equally often (:func:`balanced_orders`),
so none runs mostly right after torch (whose OpenMP threads keep spinning for a while after a
call). Load from
other processes then falls on all backends alike, which makes the ratios the robust figure on
a shared machine; the absolute milliseconds are only as quiet as the machine (the load
average is recorded at start and end).
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from seedzoo.data.transforms import data_config_for
from seedzoo.deploy.runtime import OrtEncoder, session_options
from seedzoo.errors import SeedzooError
from seedzoo.provenance import package_versions
from seedzoo.zoo.pretrained import weights_fingerprint

OVERHEAD_LIMIT = 1.05  # seedzoo's ORT path may add at most 5% over a bare session.run


def summarize(seconds: Sequence[float], batch_size: int) -> dict:
    """p50/p90/p99/mean latency in ms, throughput at the median, and the sample count."""
    ms = np.asarray(seconds, dtype=float) * 1e3
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    return {"p50_ms": float(p50), "p90_ms": float(p90), "p99_ms": float(p99),
            "mean_ms": float(ms.mean()), "images_per_s": float(batch_size * 1e3 / p50),
            "iterations": int(len(ms))}


def time_interleaved(runners: dict[object, Callable[[], object]], *, budget_s: float,
                     min_iterations: int = 5, warmup_s: float = 0.3, block_s: float = 0.02
                     ) -> dict[object, list[float]]:
    """Wall-clock seconds of each call of each runner, interleaved in blocks (see module doc)."""
    estimate = {}
    for name, run in runners.items():  # warm-up: at least two calls and warmup_s seconds
        calls, start = 0, time.perf_counter()
        while calls < 2 or time.perf_counter() - start < warmup_s:
            run()
            calls += 1
        estimate[name] = (time.perf_counter() - start) / calls
    # Each backend runs about the same time per round, sized so that the budget holds about
    # min_iterations rounds; a call longer than that is a block of one.
    span = max(block_s, budget_s / (len(runners) * max(min_iterations, 1)))
    block = {name: max(1, round(span / seconds)) for name, seconds in estimate.items()}
    samples: dict[object, list[float]] = {name: [] for name in runners}
    names, rounds, start = list(runners), 0, time.perf_counter()
    orders = balanced_orders(len(names))
    while (time.perf_counter() - start < budget_s
           or min(len(s) for s in samples.values()) < min_iterations):
        # Over a cycle of orders each backend directly follows each other one equally often,
        # so what one leaves behind (threads still spinning, warm caches) hits all alike.
        order = orders[rounds % len(orders)]
        rounds += 1
        for name in (names[i] for i in order):
            run = runners[name]
            for _ in range(block[name]):
                begin = time.perf_counter()
                run()
                samples[name].append(time.perf_counter() - begin)
    return samples


def balanced_orders(count: int) -> list[list[int]]:
    """Orders of ``range(count)`` in which each item directly follows each other item equally
    often (a Williams design: ``count`` orders, twice as many for an odd ``count``)."""
    first, low, high = [0], 1, count - 1
    while low <= high:
        first.append(low)
        low += 1
        if low <= high:
            first.append(high)
            high -= 1
    orders = [[(item + shift) % count for item in first] for shift in range(count)]
    return orders if count % 2 == 0 else orders + [order[::-1] for order in orders]


class _ReplaySession:
    """Stands in for an ``InferenceSession``: returns outputs computed beforehand."""

    def __init__(self, outputs):
        self.outputs = outputs

    def run(self, output_names, feed):
        return self.outputs


def wrapper_cost_us(encoder: OrtEncoder, images: torch.Tensor, calls: int = 1000) -> float:
    """Median microseconds that ``encoder(images)`` spends outside ``session.run``.

    The session is replaced by a replay of its own output for the measurement, so what is
    timed is the wrapper alone (tensor to NumPy, the call, NumPy to tensor): a figure that,
    unlike the difference of two noisy latencies, does not drown in a loaded machine's noise.
    """
    session = encoder.session
    encoder.session = _ReplaySession(
        session.run((encoder.output_name,), {encoder.input_name: images.numpy()}))
    try:
        seconds = []
        for _ in range(calls):
            begin = time.perf_counter()
            encoder(images)
            seconds.append(time.perf_counter() - begin)
    finally:
        encoder.session = session
    return float(np.median(seconds) * 1e6)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu_flags() -> list[str]:
    """The SIMD features that decide fp32 and INT8 kernel speed."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines()
                  if line.startswith("flags")), [])
    wanted = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8")
    return [flag for flag in wanted if flag in flags]


def machine_info() -> dict:
    """CPU, cores, load and library versions, for the JSON of a benchmark."""
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "cpu": _cpu_model(), "cpu_flags": _cpu_flags(), "logical_cores": os.cpu_count(),
        "usable_cores": affinity, "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": package_versions(),
    }


def load_average() -> list[float] | None:
    """1, 5 and 15 minute load averages (None where the OS has none)."""
    return [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None


def _ort_settings(threads: int) -> dict:
    options = session_options(threads)
    return {"intra_op_num_threads": options.intra_op_num_threads,
            "inter_op_num_threads": options.inter_op_num_threads,
            "execution_mode": str(options.execution_mode),
            "graph_optimization_level": str(options.graph_optimization_level),
            "enable_cpu_mem_arena": options.enable_cpu_mem_arena,
            "enable_mem_pattern": options.enable_mem_pattern,
            "allow_spinning": options.get_session_config_entry("session.intra_op.allow_spinning")
            == "1"}


def _check_same_model(model: nn.Module, encoder: OrtEncoder) -> bool:
    """Refuse a file of another architecture or input size; say whether the weights match."""
    arch = model.pretrained_cfg.get("architecture")
    if encoder.metadata.get("architecture") != arch:
        raise SeedzooError(f"{encoder.path} holds {encoder.metadata.get('architecture')!r}, not "
                           f"{arch!r}; benchmark a file exported from this model.")
    if tuple(encoder.pretrained_cfg["input_size"]) != tuple(data_config_for(model)["input_size"]):
        raise SeedzooError(f"{encoder.path} takes input {encoder.pretrained_cfg['input_size']}, "
                           f"the model {data_config_for(model)['input_size']}.")
    return encoder.metadata.get("weights_sha256") == weights_fingerprint(model)


def _findings(ratios: list[dict]) -> list[str]:
    """Plain statements about what was measured, the unflattering ones included."""
    notes = []
    for r in ratios:
        b, ort = r["batch_size"], r["ort_fp32/torch"]
        notes.append(f"batch {b}: ONNX Runtime fp32 is {1 / ort:.2f}x as fast as torch eager"
                     if ort <= 1 else f"batch {b}: ONNX Runtime fp32 is SLOWER than torch eager "
                     f"({ort:.2f}x the time)")
        if "ort_int8/ort_fp32" in r:
            q = r["ort_int8/ort_fp32"]
            notes.append(f"batch {b}: INT8 is {1 / q:.2f}x as fast as fp32 ONNX Runtime"
                         if q <= 1 else f"batch {b}: INT8 is SLOWER than fp32 on this CPU "
                         f"({q:.2f}x the time); deploy fp32 here")
        interleaved, isolated = r["seedzoo/bare"], r["seedzoo/bare_from_wrapper_cost"]
        if isolated > OVERHEAD_LIMIT:
            notes.append(f"batch {b}: seedzoo's ORT wrapper costs {r['seedzoo_wrapper_us']:.0f} "
                         f"us per call, {isolated - 1:.1%} of a bare session.run (over the 5% "
                         "limit)")
        elif interleaved > OVERHEAD_LIMIT:
            notes.append(f"batch {b}: seedzoo's ORT path measured {interleaved:.3f}x a bare "
                         f"session.run side by side, but the wrapper itself costs "
                         f"{r['seedzoo_wrapper_us']:.0f} us ({isolated - 1:.2%}): the rest is "
                         "the noise of this machine")
    return notes


def benchmark_latency(model: nn.Module, onnx_path: str | os.PathLike, *,
                      int8_path: str | os.PathLike | None = None,
                      batch_sizes: Sequence[int] = (1, 8, 32), threads: int | None = None,
                      budget_s: float = 5.0, min_iterations: int = 5, seed: int = 0) -> dict:
    """Time ``model`` in torch and its ONNX file(s) in ORT; returns a JSON-ready dict.

    ``results`` has one row per batch size and backend (``backend`` torch, onnxruntime or
    onnxruntime-bare; ``precision`` fp32 or int8) with p50/p90/p99 ms and images/s; ``ratios``
    one row per batch size. ``budget_s`` is the measuring time per batch size (after warm-up),
    shared by all backends; ``threads`` defaults to torch's current thread count.
    """
    if not batch_sizes or min(batch_sizes) < 1:
        raise SeedzooError(f"Batch sizes must be positive integers, got {list(batch_sizes)}.")
    if min_iterations < 1:
        raise SeedzooError(f"min_iterations must be at least 1 (every backend needs a timed "
                           f"call), got {min_iterations}.")
    if not budget_s >= 0:
        raise SeedzooError(f"The time budget must be >= 0 seconds, got {budget_s}.")
    threads = int(threads or torch.get_num_threads())
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    load_start, wall_start = load_average(), time.perf_counter()
    try:
        model = model.eval()
        fp32 = OrtEncoder(onnx_path, threads)
        same_weights = _check_same_model(model, fp32)
        int8 = OrtEncoder(int8_path, threads) if int8_path is not None else None
        if int8 is not None:
            _check_same_model(model, int8)
        input_size = tuple(data_config_for(model)["input_size"])
        generator = torch.Generator().manual_seed(seed)
        results, ratios = [], []
        for batch_size in batch_sizes:
            images = torch.randn(batch_size, *input_size, generator=generator)
            array = images.numpy()  # the same memory, for the bare session
            feed, outputs = {fp32.input_name: array}, (fp32.output_name,)
            # Each runner binds this batch size's input (default arguments), as it is timed
            # within this iteration.
            runners = {("torch", "fp32"): lambda x=images: model(x),
                       ("onnxruntime", "fp32"): lambda x=images: fp32(x),
                       ("onnxruntime-bare", "fp32"):
                           lambda o=outputs, f=feed: fp32.session.run(o, f)}
            if int8 is not None:
                runners[("onnxruntime", "int8")] = lambda x=images: int8(x)
            with torch.inference_mode():
                samples = time_interleaved(runners, budget_s=budget_s,
                                           min_iterations=min_iterations)
                wrapper_us = wrapper_cost_us(fp32, images)
            p50 = {}
            for (backend, precision), seconds in samples.items():
                row = {"batch_size": batch_size, "backend": backend, "precision": precision,
                       "input_size": list(input_size), **summarize(seconds, batch_size)}
                p50[backend, precision] = row["p50_ms"]
                results.append(row)
            for row in results[-len(samples):]:
                row["vs_torch"] = row["p50_ms"] / p50["torch", "fp32"]
            ratio = {"batch_size": batch_size,
                     "ort_fp32/torch": p50["onnxruntime", "fp32"] / p50["torch", "fp32"],
                     "seedzoo/bare": p50["onnxruntime", "fp32"] / p50["onnxruntime-bare", "fp32"],
                     "seedzoo_wrapper_us": wrapper_us,
                     "seedzoo/bare_from_wrapper_cost":
                         1 + wrapper_us / 1e3 / p50["onnxruntime-bare", "fp32"]}
            if int8 is not None:
                ratio["ort_int8/torch"] = p50["onnxruntime", "int8"] / p50["torch", "fp32"]
                ratio["ort_int8/ort_fp32"] = p50["onnxruntime", "int8"] / p50["onnxruntime", "fp32"]
            ratios.append(ratio)
    finally:
        torch.set_num_threads(previous_threads)
    files = {"fp32": {"path": str(fp32.path), "sha256": fp32.fingerprint,
                      "same_weights_as_torch_model": same_weights}}
    if int8 is not None:
        files["int8"] = {"path": str(int8.path), "sha256": int8.fingerprint,
                         "quantization": int8.metadata.get("quantization")}
    return {
        "model": {"architecture": model.pretrained_cfg.get("architecture"),
                  "model_id": fp32.metadata.get("model_id"), "input_size": list(input_size),
                  "weights_sha256": weights_fingerprint(model)},
        "files": files,
        "threads": threads,
        "settings": {"threads_applied_to": "torch.set_num_threads and ORT intra_op_num_threads",
                     "torch_interop_threads": torch.get_num_interop_threads(),
                     "ort_session": _ort_settings(threads), "batch_sizes": list(batch_sizes),
                     "budget_s_per_batch_size": budget_s, "min_iterations": min_iterations,
                     "input": f"torch.randn seed {seed}, the same tensor for every backend",
                     "method": "interleaved blocks after warm-up; ratios are of p50s; "
                               "onnxruntime-bare is session.run on the same session"},
        "machine": machine_info(),
        "load_average": {"start": load_start, "end": load_average()},
        "wall_s": time.perf_counter() - wall_start,
        "results": results,
        "ratios": ratios,
        "findings": _findings(ratios),
    }


def format_latency_table(result: dict) -> str:
    """A readable table of one :func:`benchmark_latency` result."""
    header = (f"{'batch':>5}  {'backend':<16} {'p50 ms':>9} {'p90 ms':>9} {'p99 ms':>9} "
              f"{'img/s':>9} {'vs torch':>9} {'n':>5}")
    lines = [f"{result['model']['architecture']} {tuple(result['model']['input_size'])}, "
             f"{result['threads']} threads, {result['machine']['cpu']}", header,
             "-" * len(header)]
    for ratio in result["ratios"]:
        for row in (r for r in result["results"] if r["batch_size"] == ratio["batch_size"]):
            label = f"{row['backend'].replace('onnxruntime', 'ORT')} {row['precision']}"
            lines.append(f"{row['batch_size']:>5}  {label:<16} {row['p50_ms']:>9.2f} "
                         f"{row['p90_ms']:>9.2f} {row['p99_ms']:>9.2f} {row['images_per_s']:>9.1f} "
                         f"{row['vs_torch']:>8.2f}x {row['iterations']:>5}")
        lines.append(f"{'':>5}  seedzoo ORT path / bare session.run: {ratio['seedzoo/bare']:.3f} "
                     f"side by side; the wrapper alone costs {ratio['seedzoo_wrapper_us']:.0f} us "
                     f"({ratio['seedzoo/bare_from_wrapper_cost'] - 1:+.2%})")
    lines.append(f"load average start {result['load_average']['start']}, "
                 f"end {result['load_average']['end']}")
    lines.extend(result["findings"])
    return "\n".join(lines)
