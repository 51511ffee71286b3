"""benchmarks/small_image_setting.py: which small-image settings plain timm rebuilds from
config.json, and which architectures offer them."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import torch

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))  # it imports reproduce's helpers
spec = importlib.util.spec_from_file_location("small_image_setting",
                                              BENCHMARKS / "small_image_setting.py")
small_image = importlib.util.module_from_spec(spec)
spec.loader.exec_module(small_image)


def test_plain_timm_rebuilds_output_stride_but_not_the_small_stem():
    torch.manual_seed(0)
    dilated, problem = small_image.build("test_resnet", "output_stride=8")
    assert problem is None and dilated.model_args == {"output_stride": 8}
    assert small_image.plain_timm_rebuilds(dilated) == "yes"
    stem, _ = small_image.build("test_resnet", "small_stem")
    assert small_image.plain_timm_rebuilds(stem).startswith("no: RuntimeError")


def test_an_architecture_without_the_setting_says_so():
    model, problem = small_image.build("mobilenetv3_small_050", "output_stride=16")
    assert model is None and "output_stride" in problem
    flops = small_image.params_and_flops(small_image.build("test_resnet", "plain")[0], (3, 32, 32))
    dilated = small_image.params_and_flops(small_image.build("test_resnet", "output_stride=8")[0],
                                           (3, 32, 32))
    assert dilated["params"] == flops["params"] and dilated["flops"] > flops["flops"]
