"""The methods added beside SEED train to the end under torchrun (two processes, gloo on CPU),
through the CLI, and export networks that load (tiny models, 64 digits at 16 px)."""

from __future__ import annotations

import pytest
import torch
import yaml
from torch import nn
from trainer_helpers import tiny_swin, torchrun_train

import seedzoo
from seedzoo.training.encoder_specs import build_encoder
from seedzoo.zoo.layout import network_folders
from seedzoo.zoo.pretrained import save_classifier, save_pretrained

TINY = {"arch": "test_resnet"}


def classifier_teacher(folder) -> str:
    """A tiny encoder with a 10-class classifier beside it, as a supervised run on digits writes."""
    torch.manual_seed(0)
    encoder = build_encoder(TINY)
    save_pretrained(encoder, folder)
    save_classifier(nn.Linear(encoder.num_features, 10), folder)
    return str(folder)


METHODS = {
    "supervised": lambda tmp: {"encoder": TINY},
    "kd": lambda tmp: {"student": TINY, "teacher": classifier_teacher(tmp / "teacher")},
    "crd": lambda tmp: {"student": TINY, "teacher": {"source": "timm:test_resnet"},
                        "feat_dim": 8, "nce_k": 16},
    "esvit": lambda tmp: {"encoder": tiny_swin(16), "out_dim": 32, "hidden_dim": 16,
                          "bottleneck_dim": 8},
    "dogo": lambda tmp: {"peers": [TINY, {"arch": "test_efficientnet"}], "dim": 8,
                         "hidden_dim": 16, "peer_weights": [100, 1]},
}


@pytest.mark.filterwarnings("ignore:Teacher timm:UserWarning")
@pytest.mark.parametrize("name", sorted(METHODS))
def test_the_method_trains_under_torchrun_and_exports_loadable_networks(name, tmp_path):
    recipe = {"method": {"name": name, **METHODS[name](tmp_path)},
              "data": {"dataset": "digits", "image_size": 16, "batch_size": 16, "limit": 64,
                       "workers": 0},
              "train": {"epochs": 1, "lr": 0.05, "sync_bn": True}}
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    torchrun_train(path, tmp_path / "run")
    folders = network_folders(tmp_path / "run")
    assert [f.name for f in folders] == (["peer0", "peer1"] if name == "dogo" else ["encoder"])
    for folder in folders:
        assert seedzoo.load(str(folder))(torch.randn(2, 3, 16, 16)).shape[0] == 2
