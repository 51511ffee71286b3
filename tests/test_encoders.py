import json

import pytest
import timm
import torch

from seedzoo.errors import SeedzooError
from seedzoo.training.encoder_specs import build_encoder
from seedzoo.training.heads import mlp_head
from seedzoo.zoo.pretrained import feature_dim, load_pretrained_folder, save_pretrained


@pytest.mark.parametrize("arch", ["test_resnet", "resnet18", "test_efficientnet"])
def test_small_stem_keeps_resolution_and_survives_save_and_load(arch, tmp_path):
    plain = build_encoder(arch)
    small = build_encoder({"arch": arch, "small_stem": True,
                           "pretrained_cfg": {"input_size": [3, 32, 32]}})
    images = torch.randn(2, 3, 32, 32)
    plain_map = plain.eval().forward_features(images)
    small_map = small.eval().forward_features(images)
    assert small_map.shape[-1] > plain_map.shape[-1]
    folder = save_pretrained(small, tmp_path / arch)
    config = json.loads((folder / "config.json").read_text())
    assert config["seedzoo"] == {"small_stem": True}
    loaded = load_pretrained_folder(folder)
    assert torch.allclose(loaded(images), small(images), atol=1e-6)
    # Plain timm would build its own stem around the weights: it must refuse, not run.
    with pytest.raises(RuntimeError, match="seedzoo_small_stem"):
        timm.create_model(f"local-dir:{folder}", pretrained=True, num_classes=0)


def test_small_stem_refuses_other_families():
    with pytest.raises(SeedzooError, match="small_stem"):
        build_encoder({"arch": "test_vit", "small_stem": True})


def test_bad_encoder_spec_is_a_clear_error():
    with pytest.raises(SeedzooError, match="arch"):
        build_encoder({"architecture": "resnet18"})


def test_feature_dim_is_measured_not_read_from_num_features():
    model = build_encoder("mobilenetv3_small_100")
    assert model.num_features == 576 and feature_dim(model) == 1024
    assert model.training  # the mode is restored


def test_mlp_heads():
    head = mlp_head(16, 8, 32)
    assert [type(m).__name__ for m in head] == ["Linear", "ReLU", "Linear"]
    assert head(torch.randn(4, 16)).shape == (4, 8)
    simclr = mlp_head(16, 8, 32, batch_norm=True, num_layers=3)
    assert [type(m).__name__ for m in simclr] == ["Linear", "BatchNorm1d", "ReLU"] * 2 + ["Linear"]
    assert simclr[0].bias is None and simclr[-1].bias is not None
