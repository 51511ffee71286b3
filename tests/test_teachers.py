"""Teacher backbones from each published checkpoint layout, built here in that layout."""

import argparse

import pytest
import torch
from safetensors.torch import save_file

from seedzoo.errors import CheckpointError, ModelNotFoundError, SeedzooError
from seedzoo.training import load_backbone
from seedzoo.training.methods import build_method
from seedzoo.training.teachers import load_projection_head
from seedzoo.zoo.pretrained import create_encoder, save_classifier, save_pretrained

ARCH = "test_resnet"


def random_state(arch=ARCH, seed=0, **model_args):
    torch.manual_seed(seed)
    return {k: v.clone() for k, v in create_encoder(arch, **model_args).state_dict().items()}


def prefixed(prefix, state):
    return {prefix + k: v for k, v in state.items()}


def mlp_head(prefix, width=96):
    return {f"{prefix}0.weight": torch.randn(width, width), f"{prefix}0.bias": torch.randn(width),
            f"{prefix}2.weight": torch.randn(16, width), f"{prefix}2.bias": torch.randn(16)}


def assert_same_weights(model, state):
    own = model.state_dict()
    assert set(own) == set(state)
    assert all(torch.equal(own[k], state[k]) for k in own)


BACKBONE = random_state(seed=1)
OTHER = random_state(seed=2)


def moco_checkpoint():
    state = {**prefixed("module.encoder_q.", BACKBONE), **mlp_head("module.encoder_q.fc."),
             **prefixed("module.encoder_k.", OTHER), **mlp_head("module.encoder_k.fc."),
             "module.queue": torch.randn(16, 50), "module.queue_ptr": torch.zeros(1).long()}
    return {"epoch": 200, "arch": "resnet50", "state_dict": state, "optimizer": {"state": {}}}


def simclr_checkpoint():  # tonylins/simclr-converter: a torchvision ResNet with its fc
    return {"state_dict": {**BACKBONE, "fc.weight": torch.randn(1000, 96),
                           "fc.bias": torch.randn(1000)}}


def swav_checkpoint():
    return {**prefixed("module.", BACKBONE), **mlp_head("module.projection_head."),
            "module.prototypes.weight": torch.randn(300, 16)}


def dino_checkpoint():
    return {"teacher": {**prefixed("backbone.", BACKBONE), **mlp_head("head.mlp.")},
            "student": {**prefixed("module.backbone.", OTHER), **mlp_head("module.head.mlp.")},
            "epoch": 100, "args": argparse.Namespace(arch="resnet50", out_dim=65536)}


def seed_checkpoint():  # a SEED run: student (our arch) + frozen teacher (another arch) + queue
    state = {**prefixed("module.student.", BACKBONE), **mlp_head("module.student.fc."),
             **prefixed("module.teacher.", random_state("test_efficientnet")),
             "module.queue": torch.randn(16, 50), "module.queue_ptr": torch.zeros(1).long()}
    return {"epoch": 200, "arch": ARCH, "state_dict": state, "optimizer": {"state": {}}}


def seedzoo_run_checkpoint():  # seedzoo's own trainer checkpoint of a MoCo run
    method = {**prefixed("encoder.", BACKBONE), **mlp_head("head."),
              **prefixed("key_encoder.", OTHER), "queue.embeddings": torch.randn(50, 16),
              "queue.pointer": torch.zeros(1).long()}
    return {"format": "seedzoo-train", "version": 1, "method": method, "optimizer": {"state": {}}}


def torchvision_checkpoint():
    return {**BACKBONE, "fc.weight": torch.randn(1000, 96), "fc.bias": torch.randn(1000)}


FORMATS = {"moco": (moco_checkpoint, "encoder_k"), "simclr": (simclr_checkpoint, "fc.weight"),
           "swav": (swav_checkpoint, "module.prototypes.weight"),
           "dino": (dino_checkpoint, "head.mlp.0.weight"),
           "seed": (seed_checkpoint, "module.teacher.conv_stem.weight"),
           "seedzoo run": (seedzoo_run_checkpoint, "key_encoder.conv1.0.weight"),
           "torchvision": (torchvision_checkpoint, "fc.bias")}


@pytest.mark.parametrize("name", FORMATS)
def test_each_published_layout_loads_the_backbone_and_reports_what_it_skipped(name, tmp_path):
    make, skipped_example = FORMATS[name]
    path = tmp_path / f"{name}.pth.tar"
    torch.save(make(), path)
    model, report = load_backbone(str(path), arch=ARCH)
    assert_same_weights(model, BACKBONE)
    assert not model.training and model.num_classes == 0
    assert len(report.loaded) == len(BACKBONE)
    assert any(skipped_example in key for key in report.skipped), report.skipped
    assert report.source in report.summary()


def test_report_names_the_format_and_the_reason_of_each_skip(tmp_path):
    path = tmp_path / "moco.pth"
    torch.save(moco_checkpoint(), path)
    _, report = load_backbone(str(path), arch=ARCH)
    assert report.format == "moco"
    assert report.skipped["module.encoder_q.fc.0.weight"] == "classifier/projection head"
    assert "encoder_q" in report.skipped["module.encoder_k.conv1.0.weight"]
    assert "encoder_q" in report.skipped["module.queue"]
    assert "skipped" in report.summary()


def test_safetensors_file_and_model_folder(tmp_path):
    save_file(BACKBONE, str(tmp_path / "weights.safetensors"))
    model, _ = load_backbone(str(tmp_path / "weights.safetensors"), arch=ARCH)
    assert_same_weights(model, BACKBONE)
    trained = create_encoder(ARCH)
    trained.load_state_dict(BACKBONE)
    folder = save_pretrained(trained, tmp_path / "teacher")
    model, report = load_backbone(str(folder))
    assert_same_weights(model, BACKBONE)
    assert len(report.loaded) == len(BACKBONE)


def test_prefixes_are_removed_as_prefixes_not_character_sets(tmp_path):
    # str.lstrip("backbone.") would also eat the "b" and "n" of "bn1.weight".
    state = random_state("resnet18")
    assert "bn1.weight" in state
    path = tmp_path / "dino_resnet.pth"
    torch.save({**prefixed("backbone.", state), **mlp_head("head.mlp.", 512)}, path)
    model, report = load_backbone(str(path), arch="resnet18")
    assert_same_weights(model, state)
    assert report.format == "dino"


def test_a_wrong_architecture_fails_clearly(tmp_path):
    path = tmp_path / "moco.pth"
    torch.save(moco_checkpoint(), path)
    with pytest.raises(CheckpointError, match="No tensor .* 'test_efficientnet'"):
        load_backbone(str(path), arch="test_efficientnet")


def test_a_partial_match_never_leaves_weights_random_silently(tmp_path):
    partial = {k: v for k, v in BACKBONE.items() if not k.startswith("layer4.")}
    path = tmp_path / "partial.pth"
    torch.save({"state_dict": prefixed("module.encoder_q.", partial)}, path)
    with pytest.raises(CheckpointError, match=r"missing \(\d+\): layer4\."):
        load_backbone(str(path), arch=ARCH)


def test_unknown_extra_tensors_are_errors(tmp_path):
    path = tmp_path / "extra.pth"
    torch.save({**BACKBONE, "adapter.weight": torch.randn(3)}, path)
    with pytest.raises(CheckpointError, match=r"unexpected \(1\): adapter.weight"):
        load_backbone(str(path), arch=ARCH)


def test_missing_batch_counters_are_tolerated(tmp_path):
    state = {k: v for k, v in BACKBONE.items() if not k.endswith("num_batches_tracked")}
    path = tmp_path / "old.pth"
    torch.save(state, path)
    model, _ = load_backbone(str(path), arch=ARCH)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())


PICKLE_RAN = []


class _Payload:
    def __reduce__(self):
        return PICKLE_RAN.append, ("code ran",)


def test_files_needing_arbitrary_pickle_are_refused_without_running_them(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": BACKBONE, "payload": _Payload()}, path)
    PICKLE_RAN.clear()
    with pytest.raises(CheckpointError, match="needs arbitrary pickled objects.*never unpickles"):
        load_backbone(str(path), arch=ARCH)
    assert PICKLE_RAN == []


def test_not_a_state_dict_and_missing_arch_are_clear_errors(tmp_path):
    path = tmp_path / "list.pth"
    torch.save([torch.ones(1)], path)
    with pytest.raises(CheckpointError, match="not a state dict"):
        load_backbone(str(path), arch=ARCH)
    with pytest.raises(ModelNotFoundError, match="architecture"):
        load_backbone(str(path))


def test_a_timm_name_gives_a_random_teacher_with_a_warning():
    with pytest.warns(UserWarning, match="random weights"):
        model, report = load_backbone(f"timm:{ARCH}")
    assert report.format == "random initialisation" and not model.training


def swav_head_checkpoint():
    head = {"module.projection_head.0.weight": torch.randn(32, 96),
            "module.projection_head.0.bias": torch.randn(32),
            "module.projection_head.1.weight": torch.rand(32) + 0.5,
            "module.projection_head.1.bias": torch.randn(32),
            "module.projection_head.1.running_mean": torch.randn(32),
            "module.projection_head.1.running_var": torch.rand(32) + 0.5,
            "module.projection_head.3.weight": torch.randn(16, 32),
            "module.projection_head.3.bias": torch.randn(16)}
    return {**prefixed("module.", BACKBONE), **head,
            "module.prototypes.weight": torch.randn(30, 16)}


@pytest.mark.parametrize("make, prefix", [(moco_checkpoint, "module.encoder_q.fc."),
                                          (seedzoo_run_checkpoint, "head."),
                                          (swav_head_checkpoint, "module.projection_head.")])
def test_projection_heads_are_rebuilt_with_their_weights(make, prefix, tmp_path):
    checkpoint = make()
    path = tmp_path / "with_head.pth"
    torch.save(checkpoint, path)
    head = load_projection_head(str(path)).eval()
    stored = checkpoint.get("state_dict") or checkpoint.get("method") or checkpoint
    params = {k[len(prefix):]: v for k, v in stored.items() if k.startswith(prefix)}
    x = torch.randn(5, 96)
    if "1.running_mean" in params:  # Linear - BatchNorm1d - ReLU - Linear
        hidden = x @ params["0.weight"].T + params["0.bias"]
        hidden = ((hidden - params["1.running_mean"]) / torch.sqrt(params["1.running_var"] + 1e-5)
                  * params["1.weight"] + params["1.bias"])
        expected = hidden.relu() @ params["3.weight"].T + params["3.bias"]
    else:  # Linear - ReLU - Linear
        hidden = (x @ params["0.weight"].T + params["0.bias"]).relu()
        expected = hidden @ params["2.weight"].T + params["2.bias"]
    torch.testing.assert_close(head(x), expected)


def test_a_classifier_or_a_folder_is_not_a_projection_head(tmp_path):
    path = tmp_path / "simclr.pth"
    torch.save(simclr_checkpoint(), path)  # its fc is a single linear classifier
    with pytest.raises(CheckpointError, match="no MLP projection head"):
        load_projection_head(str(path))
    trained = create_encoder(ARCH)
    folder = save_pretrained(trained, tmp_path / "encoder")
    with pytest.raises(CheckpointError, match="checkpoint file"):
        load_projection_head(str(folder))


def test_a_teacher_folder_of_another_architecture_than_the_recipe_says_is_refused(tmp_path):
    folder = save_pretrained(create_encoder(ARCH), tmp_path / "teacher")
    with pytest.raises(ModelNotFoundError, match=f"is a {ARCH}, but the recipe says arch "
                                                 "resnet50"):
        load_backbone(str(folder), arch="resnet50")
    assert load_backbone(str(folder), arch=ARCH)[0].pretrained_cfg["architecture"] == ARCH


@pytest.mark.parametrize("method, options", [
    ("seed", {}), ("kd", {"num_classes": 10}), ("crd", {"dataset_size": 64, "nce_k": 8})])
def test_teacher_model_args_that_are_not_a_mapping_are_a_clear_error(method, options, tmp_path):
    folder = str(save_pretrained(create_encoder(ARCH), tmp_path / "teacher"))
    with pytest.raises(SeedzooError, match=r"method\.teacher\.model_args are timm\.create_model "
                                           r"arguments.*got 'window_size=7'"):
        build_method(method, student=ARCH, **options,
                     teacher={"source": folder, "model_args": "window_size=7"})


def test_model_args_for_a_teacher_folder_say_that_it_records_its_own(tmp_path):
    folder = save_pretrained(create_encoder(ARCH), tmp_path / "teacher")
    save_classifier(torch.nn.Linear(96, 10), folder)
    with pytest.raises(ModelNotFoundError, match="records its own in its config.json"):
        build_method("kd", student=ARCH, num_classes=10,
                     teacher={"source": str(folder), "model_args": {"drop_rate": 0.1}})
