"""A classifier kept beside an encoder, scored as a classifier (`--protocol classifier`) and
exported with it (`seedzoo export --with-classifier`), on a tiny encoder at 16 px and digits."""

import json

import numpy as np
import pytest
import torch
from torch import nn

import seedzoo
from seedzoo.cli import main
from seedzoo.data.datasets import get_dataset
from seedzoo.data.subsets import subset_indices
from seedzoo.data.transforms import transform_for
from seedzoo.deploy import OrtEncoder
from seedzoo.evaluation import evaluate, load_encoder
from seedzoo.zoo import create_encoder, save_classifier, save_pretrained

pytestmark = pytest.mark.usefixtures("single_thread")

QUICK = ["--workers", "0", "--quiet", "--batch-size", "128"]
DIGITS = [str(d) for d in range(10)]


def _classifier_folder(folder, classes=DIGITS, features=96):
    """A random tiny encoder at 16 px with a random linear classifier of ``classes`` beside it."""
    torch.manual_seed(0)
    encoder = create_encoder("test_resnet", pretrained_cfg_overlay={"input_size": (3, 16, 16)})
    save_pretrained(encoder, folder)
    save_classifier(nn.Linear(features, len(classes)), folder, classes=classes)
    return folder


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    """A run folder whose encoder/ keeps a 10-class classifier, as a supervised run leaves it."""
    run = tmp_path_factory.mktemp("supervised")
    _classifier_folder(run / "encoder")
    return run


@pytest.fixture(scope="module")
def exported(run_folder, tmp_path_factory):
    """``seedzoo export --with-classifier`` of the run folder: the file and what it printed."""
    import contextlib
    import io

    out = tmp_path_factory.mktemp("onnx") / "classifier.onnx"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["export", "--model", str(run_folder), "--with-classifier", "--out", str(out),
                     "--validate-dataset", "digits"]) == 0
    return out, printed.getvalue()


def _direct_scores(folder, limit, seed=0):
    """Top-1 and top-5 of the folder's encoder and classifier on digits, computed by hand."""
    from seedzoo.zoo import load_classifier

    encoder, head = load_encoder(str(folder)), load_classifier(folder)
    images = get_dataset("digits", "test", transform=transform_for(encoder))
    rows = subset_indices(len(images), limit, seed)
    batch = torch.stack([images[int(i)][0] for i in rows])
    labels = torch.tensor([images[int(i)][1] for i in rows])
    with torch.inference_mode():
        best = head(encoder(batch)).topk(5, dim=1).indices
    return ((best[:, 0] == labels).double().mean().item(),
            (best == labels[:, None]).any(dim=1).double().mean().item())


def test_classifier_protocol_scores_the_head_as_a_direct_computation_does(run_folder, tmp_path):
    out = tmp_path / "classifier.json"
    assert main(["eval", "--model", str(run_folder), "--dataset", "digits", "--protocol",
                 "classifier", "--limit-test", "150", "--out", str(out), *QUICK]) == 0
    report = json.loads(out.read_text())
    top1, top5 = _direct_scores(run_folder / "encoder", 150)
    assert report["metrics"] == pytest.approx({"classifier_top1": top1, "classifier_top5": top5})
    assert top5 > top1
    config = report["config"]
    assert config["classifier"]["num_classes"] == 10 and config["test_size"] == 150
    assert config["protocols"] == ["classifier"] and "features" not in report["seconds"]
    assert config["feature_dim"] is None            # measured only by the frozen protocols
    encoder_sha = config["weights_sha256"]  # the encoder's, so the card accepts the figures
    from seedzoo.zoo.pretrained import weights_fingerprint
    assert encoder_sha == weights_fingerprint(load_encoder(str(run_folder)))
    assert config["classifier"]["weights_sha256"] != encoder_sha


@pytest.mark.parametrize("classes, message", [
    (["0", "1", "2"], "The classifier has 3 classes, but digits has 10"),
    ([*DIGITS[:9], "nine"], "calls class 9 'nine', but digits calls it '9'"),
])
def test_a_classifier_of_other_classes_is_refused(tmp_path, capsys, classes, message):
    folder = _classifier_folder(tmp_path / "other", classes=classes)
    assert main(["eval", "--model", str(folder), "--dataset", "digits", "--protocol",
                 "knn,classifier", *QUICK]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("model", ["folder without classifier", "timm:test_resnet", "pixels"])
def test_models_without_a_classifier_are_refused_before_any_work(tmp_path, capsys, model):
    if model == "folder without classifier":
        model = str(save_pretrained(create_encoder("test_resnet"), tmp_path / "plain"))
    assert main(["eval", "--model", model, "--dataset", "digits", "--protocol",
                 "knn,classifier", "--cache-dir", str(tmp_path / "cache"), *QUICK]) == 2
    error = capsys.readouterr().err
    assert "classifier" in error and ("supervised" in error or "kd" in error)
    assert not (tmp_path / "cache").exists()  # nothing was extracted


def test_export_with_classifier_gives_the_torch_logits_and_says_so(run_folder, exported):
    from seedzoo.zoo import EncoderClassifier, classifier_for

    path, printed = exported
    assert "logits of 10 classes" in printed and "onnx.checker: passed" in printed
    session = OrtEncoder(path)
    assert session.metadata["output"] == "logits" and session.num_classes == 10
    assert session.classes == DIGITS and session.session.get_outputs()[0].name == "logits"
    model = EncoderClassifier(load_encoder(str(run_folder)), classifier_for(run_folder))
    images = get_dataset("digits", "test", transform=transform_for(model))
    batch = torch.stack([images[i][0] for i in range(0, 400, 50)])
    with torch.inference_mode():
        expected = model(batch)
    np.testing.assert_allclose(session(batch).numpy(), expected.numpy(), rtol=1e-4, atol=1e-4)


def test_the_exported_classifier_is_scored_by_the_classifier_protocol_not_fine_tuned(
        run_folder, exported, capsys):
    path, _ = exported
    onnx_report = evaluate(OrtEncoder(path), "digits", spec=str(path), protocols=["classifier"],
                           limit_test=150, progress=False)
    top1, _ = _direct_scores(run_folder / "encoder", 150)
    assert abs(onnx_report["metrics"]["classifier_top1"] - top1) <= 1 / 150
    assert main(["eval", "--onnx", str(path), "--dataset", "digits", "--protocol", "finetune",
                 *QUICK]) == 2
    error = capsys.readouterr().err
    assert "is an ONNX file" in error and "no weights to fine-tune" in error
    assert "Fine-tune the torch model it was exported from" in error


def test_export_with_classifier_of_a_model_without_one_is_refused_before_loading(tmp_path,
                                                                                  capsys):
    assert main(["export", "--model", "timm:test_resnet", "--with-classifier", "--out",
                 str(tmp_path / "x.onnx")]) == 2
    assert "timm:test_resnet keeps no classifier" in capsys.readouterr().err
    assert not (tmp_path / "x.onnx").exists()


def test_the_classifier_pairs_with_the_encoder_s_measured_output_width():
    """timm's MobileNet-v3 returns its head_hidden_size features, more than num_features: the
    classifier is checked against (and fine-tuning builds it for) what the encoder outputs."""
    from seedzoo.zoo import EncoderClassifier
    from seedzoo.zoo.pretrained import feature_dim

    encoder = create_encoder("mobilenetv3_small_050",
                             pretrained_cfg_overlay={"input_size": (3, 32, 32)})
    width = int(encoder.eval()(torch.zeros(1, 3, 32, 32)).shape[1])
    assert width != encoder.num_features and feature_dim(encoder) == width
    model = EncoderClassifier(encoder, nn.Linear(width, 3))
    assert model.num_features == width and model(torch.zeros(2, 3, 32, 32)).shape == (2, 3)
    with pytest.raises(seedzoo.errors.CheckpointError, match="do not belong together"):
        EncoderClassifier(encoder, nn.Linear(encoder.num_features, 3))
