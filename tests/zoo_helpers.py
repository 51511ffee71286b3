"""Fixtures and builders shared by the zoo tests: a test hub, a private HF cache, tiny encoders.

Import the fixtures into a test module (``from zoo_helpers import hf_cache, hub``) to use them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hub_server import HubServer

HUB_TOKEN = "test-write-token"
INPUT_SIZE = (3, 32, 32)


@pytest.fixture
def hf_cache(tmp_path, monkeypatch) -> Path:
    """A fresh Hugging Face cache for this test; offline mode off, no token in the environment."""
    from huggingface_hub import constants

    cache = tmp_path / "hf-cache"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    return cache


@pytest.fixture
def hub(hf_cache):
    """A Hub-protocol server on 127.0.0.1 that accepts writes with ``HUB_TOKEN``."""
    server = HubServer(token=HUB_TOKEN).start()
    yield server
    server.stop()
    assert not server.unknown_requests, \
        f"the client sent requests the test hub does not know: {server.unknown_requests}"


def tiny_encoder(arch: str = "test_resnet", seed: int = 0, **model_args) -> torch.nn.Module:
    """A tiny timm encoder (built with ``model_args``) whose weights are moved away from timm's
    initialisation, as training would, and whose BatchNorm statistics are not the defaults; the
    same ``seed``, the same weights."""
    from seedzoo.zoo import create_encoder

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = create_encoder(arch, pretrained_cfg_overlay={"input_size": INPUT_SIZE,
                                                             "mean": (0.3, 0.3, 0.3),
                                                             "std": (0.2, 0.2, 0.2)},
                               **model_args)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if tensor.is_floating_point():
                tensor.add_(0.05 * torch.randn(tensor.shape, generator=generator))
                if name.endswith("running_var"):
                    tensor.abs_()
    return model.eval()


def save_in_timm_format(folder: Path, *, model_args: bool = True) -> tuple[torch.nn.Module, Path]:
    """A timm classifier (``test_resnet``, 1000 classes) saved as timm publishes one, and the
    folder: timm's ``save_for_hf`` (``num_classes`` in ``model_args``), or with ``model_args=False``
    the layout of timm's hub repos (``num_classes: 1000``, no ``model_args``). Both hold
    ``fc.*``."""
    import timm
    from timm.models import save_for_hf

    model = timm.create_model("test_resnet", pretrained_cfg_overlay={"input_size": INPUT_SIZE})
    folder.mkdir(parents=True)
    save_for_hf(model, folder, safe_serialization=True)
    config = json.loads((folder / "config.json").read_text())
    assert config["model_args"]["num_classes"] == 1000
    if not model_args:
        write_json(folder / "config.json", {k: v for k, v in config.items() if k != "model_args"})
    return model.eval(), folder


def features(model: torch.nn.Module, seed: int = 1) -> torch.Tensor:
    """The model's output on a fixed random batch."""
    batch = torch.randn(3, *INPUT_SIZE, generator=torch.Generator().manual_seed(seed))
    with torch.inference_mode():
        return model.eval()(batch)


def evaluation_json(dataset: str, metrics: dict[str, float], model=None) -> dict:
    """An evaluation result in the layout `seedzoo eval --out` writes, of ``model`` (default
    :func:`tiny_encoder`)."""
    from seedzoo.results import make_report
    from seedzoo.zoo.pretrained import weights_fingerprint

    model = model if model is not None else tiny_encoder()
    return make_report(metrics, {"model": "runs/student/encoder", "dataset": dataset,
                                 "arch": model.pretrained_cfg["architecture"],
                                 "weights_sha256": weights_fingerprint(model),
                                 "train_split": "train", "test_split": "test", "seed": 0,
                                 "protocols": ["knn", "linear", "fewshot"]})


def run_summary(teacher: str = "runs/teacher/encoder") -> dict:
    """A run summary in the layout `seedzoo train` writes."""
    return {"finished": True, "method": "seed", "epochs": 3, "wall_time_s": 312.4,
            "config": {"method": {"name": "seed",
                                  "teacher": {"source": teacher, "arch": "resnet50"},
                                  "student": {"arch": "test_resnet"}, "queue_size": 4096},
                       "data": {"dataset": "fashion-mnist", "image_size": 32, "batch_size": 128},
                       "train": {"epochs": 3, "optimizer": "sgd", "base_lr": 0.03}}}


def write_json(path: Path, payload: dict) -> Path:
    path.write_text(json.dumps(payload))
    return path
