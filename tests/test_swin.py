"""Swin in the zoo: EsViT's and DINO's checkpoints, and Swin in the Swin Transformer
repository's own key names, built here from a tiny timm Swin, load in one line with timm's
features; a tiny Swin saves in timm's layout and exports to a validated ONNX file."""

import argparse
import json
import re
from pathlib import Path

import pytest
import timm
import torch
from zoo_helpers import tiny_encoder

import seedzoo
from seedzoo.cli import main
from seedzoo.deploy import OrtEncoder, export_onnx
from seedzoo.errors import CheckpointError, SeedzooError
from seedzoo.training import load_backbone
from seedzoo.training.methods import build_method
from seedzoo.zoo import create_encoder, save_pretrained
from seedzoo.zoo.pretrained import weights_fingerprint

pytestmark = pytest.mark.usefixtures("single_thread")

SWIN = "swin_tiny_patch4_window7_224"
# Three stages (two patch mergings), two blocks each (the second one shifted, with its mask).
TINY = {"embed_dim": 16, "depths": [2, 2, 2], "num_heads": [1, 2, 4], "window_size": 4,
        "patch_size": 2, "img_size": 32}
CONVERSION = "timm.models.swin_transformer.checkpoint_filter_fn"


@pytest.fixture(scope="module")
def swin():
    return tiny_encoder(SWIN, **TINY)


def microsoft_layout(model) -> dict[str, torch.Tensor]:
    """``model``'s weights in the Swin Transformer repository's names, written here rather than
    by inverting timm's code: its patch merging closes stage i where timm's opens stage i+1, and
    it saves its ``relative_position_index`` and ``attn_mask`` buffers."""
    state = {}
    for key, value in model.state_dict().items():
        merging = re.fullmatch(r"layers\.(\d+)\.downsample\.(.+)", key)
        state[f"layers.{int(merging[1]) - 1}.downsample.{merging[2]}" if merging else key] = value
    buffers = {key: value for key, value in model.named_buffers()
               if key.endswith(("relative_position_index", "attn_mask"))}
    assert any(key.endswith("attn_mask") for key in buffers)
    return {**state, **buffers}


def dino_head(prefix: str, width: int = 64) -> dict[str, torch.Tensor]:
    """DINO's head: an MLP, then a weight-normalised last layer."""
    return {f"{prefix}mlp.0.weight": torch.randn(32, width), f"{prefix}mlp.0.bias": torch.randn(32),
            f"{prefix}mlp.2.weight": torch.randn(8, 32), f"{prefix}mlp.2.bias": torch.randn(8),
            f"{prefix}last_layer.weight_g": torch.ones(100, 1),
            f"{prefix}last_layer.weight_v": torch.randn(100, 8)}


def prefixed(prefix: str, state: dict) -> dict:
    return {prefix + key: value for key, value in state.items()}


def training_state() -> dict:
    return {"optimizer": {"state": {}, "param_groups": [{"lr": 5e-4, "params": [0, 1]}]},
            "epoch": 300, "args": argparse.Namespace(arch="swin_tiny", out_dim=100),
            "dino_loss": {"center": torch.zeros(1, 100)}}


def esvit_checkpoint(teacher, student) -> dict:
    """EsViT's Swin: the network itself carries the view-level ``head`` and the region-level
    ``head_dense``; the student is wrapped by DistributedDataParallel."""
    network = {"teacher": {**teacher, **dino_head("head."), **dino_head("head_dense.")},
               "student": prefixed("module.", {**student, **dino_head("head."),
                                               **dino_head("head_dense.")})}
    return {**network, **training_state()}


def dino_checkpoint(teacher, student, teacher_wrapper="") -> dict:
    """DINO's MultiCropWrapper (``backbone.`` + ``head.``); DistributedDataParallel's
    ``module.`` on the student, and on the teacher when it has batch norms."""
    network = {"teacher": prefixed(teacher_wrapper, {**prefixed("backbone.", teacher),
                                                     **dino_head("head.")}),
               "student": prefixed("module.", {**prefixed("backbone.", student),
                                               **dino_head("head.")})}
    return {**network, **training_state()}


LAYOUTS = {"esvit": esvit_checkpoint, "dino": dino_checkpoint,
           "dino, wrapped teacher": lambda t, s: dino_checkpoint(t, s, "module.")}


def saved(tmp_path: Path, layout: str, swin) -> Path:
    path = tmp_path / "checkpoint.pth"
    other = tiny_encoder(SWIN, seed=1, **TINY)
    torch.save(LAYOUTS[layout](microsoft_layout(swin), microsoft_layout(other)), path)
    return path


def images() -> torch.Tensor:
    return torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def assert_same_features(model, reference):
    with torch.inference_mode():
        assert torch.equal(model(images()), reference(images()))


@pytest.mark.parametrize("layout", LAYOUTS)
def test_released_checkpoints_load_in_one_line_with_the_features_of_timm(layout, swin,
                                                                         tmp_path):
    model = seedzoo.load(saved(tmp_path, layout, swin), arch=SWIN, model_args=TINY)
    assert_same_features(model, swin)
    report = model.load_report
    assert report.format == layout.split(",")[0] and report.conversion == CONVERSION
    assert len(report.loaded) == len(swin.state_dict())
    reasons = set(report.skipped.values())
    assert {"projection head", "buffer the model recomputes",
            "the student network (the teacher is loaded)", "training state or settings"} <= reasons
    assert ("region-level projection head" in reasons) == (layout == "esvit")
    assert any(key.endswith("attn_mask") for key in report.skipped)
    assert "converted by" in report.summary() and "student network" in report.summary()


def test_a_released_checkpoint_is_a_teacher(swin, tmp_path):
    teacher, report = load_backbone(str(saved(tmp_path, "esvit", swin)), SWIN, model_args=TINY)
    assert_same_features(teacher, swin)
    assert report.format == "esvit" and not teacher.training


@pytest.mark.parametrize("method, options", [
    ("seed", {"queue_size": 8, "hidden_dim": 16}), ("crd", {"dataset_size": 64, "nce_k": 8})])
def test_a_released_checkpoint_is_a_distillation_teacher_given_its_model_args(method, options,
                                                                            swin, tmp_path):
    teacher = {"source": str(saved(tmp_path, "esvit", swin)), "arch": SWIN, "model_args": TINY}
    built = build_method(method, student={"arch": "test_resnet"}, teacher=teacher, **options)
    assert_same_features(built.teacher, swin)
    assert built.teacher_report.format == "esvit"


def test_seedzoo_eval_evaluates_the_same_weights_and_says_what_it_skipped(swin, tmp_path,
                                                                           capsys):
    out = tmp_path / "eval.json"
    code = main(["eval", "--model", str(saved(tmp_path, "esvit", swin)), "--arch", SWIN,
                 "--model-args", json.dumps(TINY), "--dataset", "digits", "--protocol", "knn",
                 "--limit-train", "60", "--limit-test", "20", "--no-cache", "--workers", "0",
                 "--quiet", "--out", str(out)])
    assert code == 0
    assert "(esvit): loaded" in capsys.readouterr().err
    config = json.loads(out.read_text())["config"]
    assert config["weights_sha256"] == weights_fingerprint(swin)
    assert config["model_args"] == TINY


def test_a_checkpoint_that_does_not_fill_the_backbone_lists_what_is_missing(swin, tmp_path):
    state = {k: v for k, v in microsoft_layout(swin).items() if not k.startswith("layers.1.")}
    path = tmp_path / "truncated.pth"
    torch.save(esvit_checkpoint(state, state), path)
    with pytest.raises(CheckpointError, match=rf"\(esvit, converted by {CONVERSION}\) does not "
                                              r"fit .* missing \(\d+\): layers\.1\."):
        seedzoo.load(path, arch=SWIN, model_args=TINY)
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="not a readable torch weights file"):
        seedzoo.load(path, arch=SWIN, model_args=TINY)


def test_a_checkpoint_with_pickled_arguments_says_how_to_keep_its_weights(swin, tmp_path):
    path = tmp_path / "checkpoint.pth"
    checkpoint = esvit_checkpoint(microsoft_layout(swin), microsoft_layout(swin))
    torch.save({**checkpoint, "args": argparse.Namespace(output_dir=Path("/runs/esvit"))}, path)
    with pytest.raises(CheckpointError, match=r"needs arbitrary pickled objects \(pathlib\.") \
            as refused:
        seedzoo.load(path, arch=SWIN, model_args=TINY)
    command = re.search(r'python -c "(.+?)"', str(refused.value))[1]
    exec(command)  # the conversion the message gives, as a user would run it
    converted = path.with_name("checkpoint.weights.pth")
    assert str(converted) in str(refused.value)
    assert_same_features(seedzoo.load(converted, arch=SWIN, model_args=TINY), swin)


def test_a_small_swin_saves_in_timm_layout_and_plain_timm_rebuilds_it(swin, tmp_path):
    folder = save_pretrained(swin, tmp_path / "swin")
    config = json.loads((folder / "config.json").read_text())
    assert config["model_args"] == TINY and config["pretrained_cfg"]["input_size"] == [3, 32, 32]
    assert_same_features(timm.create_model(f"local-dir:{folder}", pretrained=True).eval(), swin)
    assert_same_features(seedzoo.load(folder), swin)


def test_img_size_sets_the_input_size_and_a_contradiction_is_refused():
    assert create_encoder(SWIN, **TINY).pretrained_cfg["input_size"] == (3, 32, 32)
    with pytest.raises(SeedzooError, match="img_size 32 but its pretrained_cfg input_size is "
                                           r"\(3, 64, 64\)"):
        create_encoder(SWIN, pretrained_cfg_overlay={"input_size": (3, 64, 64)}, **TINY)


def test_a_small_swin_exports_to_a_validated_onnx_file(tmp_path):
    # One stage keeps the export short; its second block has the shifted windows and the mask.
    swin = tiny_encoder(SWIN, **{**TINY, "depths": [2], "num_heads": [1]})
    report = export_onnx(swin, tmp_path / "swin.onnx", validate_dataset="digits")
    assert [check.batch_size for check in report.validation.checks] == [1, 8]
    assert report.validation.min_cosine > 0.9999
    with torch.inference_mode():
        torch.testing.assert_close(OrtEncoder(report.path)(images()), swin(images()),
                                   atol=1e-4, rtol=1e-4)
