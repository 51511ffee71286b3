"""The finetune protocol: the whole encoder and a linear classifier trained on the few-shot label
subsets (and all labels) of digits, on a tiny encoder at 16 px."""

import itertools
import json
import random

import pytest
import torch

from seedzoo.cli import main
from seedzoo.errors import SeedzooError
from seedzoo.evaluation import evaluate, load_encoder
from seedzoo.evaluation.finetune import FineTuneOptions, fine_tune, finetune_scores
from seedzoo.zoo import create_encoder, save_pretrained

pytestmark = pytest.mark.usefixtures("single_thread")

QUICK = ["--workers", "0", "--quiet", "--batch-size", "128"]


@pytest.fixture(scope="module")
def encoder_folder(tmp_path_factory):
    """A random tiny encoder at 16 px whose BatchNorm statistics are those of digits (as a
    trained encoder's are of its data), saved as an encoder folder."""
    from seedzoo.data.datasets import get_dataset
    from seedzoo.data.transforms import transform_for

    torch.manual_seed(0)
    model = create_encoder("test_resnet", pretrained_cfg_overlay={"input_size": (3, 16, 16)})
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for norm in norms:
        norm.momentum = None  # a cumulative average over the batches below
    images = get_dataset("digits", "train", transform=transform_for(model))
    loader = torch.utils.data.DataLoader(images, batch_size=64)
    with torch.no_grad():
        model.train()
        for batch, _ in itertools.islice(loader, 10):
            model(batch)
    for norm in norms:
        norm.momentum = 0.1
    return save_pretrained(model.eval(), tmp_path_factory.mktemp("finetune") / "encoder")


def test_finetune_beats_chance_on_the_few_shot_subsets_and_records_its_settings(
        encoder_folder, tmp_path, capsys):
    out = tmp_path / "finetune.json"
    code = main(["eval", "--model", str(encoder_folder), "--dataset", "digits",
                 "--protocol", "fewshot,finetune", "--limit-train", "600", "--limit-test", "200",
                 "--seed", "3",
                 "--probe-epochs", "1", "--probe-min-steps", "10",
                 "--finetune-fractions", "0.01,0.1,1", "--finetune-epochs", "2",
                 "--finetune-min-steps", "20", "--finetune-lr", "0.05",
                 "--finetune-batch-size", "32", "--finetune-weight-decay", "0.0001",
                 "--no-finetune-augment", "--no-cache", "--out", str(out), *QUICK])
    assert code == 0
    assert "finetune_100pct_top1" in capsys.readouterr().out
    report = json.loads(out.read_text())
    metrics, config = report["metrics"], report["config"]
    for fraction in ("1pct", "10pct", "100pct"):
        assert 0 <= metrics[f"finetune_{fraction}_top1"] <= metrics[f"finetune_{fraction}_top5"]
    assert metrics["finetune_100pct_top1"] > 0.5  # chance is 0.1
    tuned = config["finetune"]
    assert {key: tuned[key] for key in ("fractions", "epochs", "min_steps", "lr", "batch_size",
                                        "weight_decay", "augment")} == {
        "fractions": [0.01, 0.1, 1.0], "epochs": 2, "min_steps": 20, "lr": 0.05,
        "batch_size": 32, "weight_decay": 0.0001, "augment": False}
    assert config["seed"] == 3 and config["protocols"] == ["fewshot", "finetune"]
    assert "RandomResizedCrop" not in tuned["transform"]
    for fraction in ("1pct", "10pct"):  # the few-shot probes' subsets, image for image
        assert tuned[fraction]["subset_sha256"] == config["fewshot"][fraction]["subset_sha256"]
        assert tuned[fraction]["train_size"] == config["fewshot"][fraction]["train_size"]
    assert tuned["100pct"]["train_size"] == config["train_size"] == 600
    assert tuned["1pct"]["steps"] == 20 and tuned["100pct"]["steps"] == 2 * (600 // 32)
    assert config["test_size"] == tuned["test_size"] == 200
    assert report["seconds"]["finetune"] > 0


def test_finetune_is_deterministic_for_a_seed(encoder_folder):
    model = load_encoder(str(encoder_folder))
    options = FineTuneOptions(fractions=[0.1], epochs=1, min_steps=8, batch_size=16)

    def run(seed):
        return finetune_scores(model, "digits", spec="tiny", options=options, seed=seed,
                               limit_test=100, progress=False)

    first, second, other = run(0), run(0), run(1)
    assert first == second
    assert first[1]["10pct"]["final_loss"] != other[1]["10pct"]["final_loss"]
    assert "RandomResizedCrop" in first[1]["transform"]  # augmented by default


def test_fine_tune_leaves_the_encoder_and_the_global_generators_alone(encoder_folder):
    from torch.utils.data import TensorDataset

    model = load_encoder(str(encoder_folder))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    images = TensorDataset(torch.randn(12, 3, 16, 16), torch.arange(12) % 3)
    random.seed(11)
    torch.manual_seed(11)
    python_state, torch_state = random.getstate(), torch.get_rng_state()
    tuned, trained = fine_tune(model, images, 3, options=FineTuneOptions(min_steps=3),
                               progress=False)
    assert random.getstate() == python_state and torch.equal(torch.get_rng_state(), torch_state)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not tuned.training and tuned.num_classes == 3 and trained["steps"] == 5
    assert any(not torch.equal(before[k], v) for k, v in tuned.encoder.state_dict().items())


@pytest.mark.parametrize("option, value", [("fractions", [0.0]), ("fractions", []),
                                           ("lr", 0.0), ("epochs", 0), ("weight_decay", -1.0),
                                           ("head_init", "random")])
def test_bad_finetune_options_are_refused_before_any_work(option, value):
    with pytest.raises(SeedzooError, match=f"fine-tuning option {option} must be"):
        evaluate(load_encoder("pixels"), "no-such-dataset", spec="pixels", protocols=["knn"],
                 finetune_options={option: value})


def test_pixels_are_refused_with_what_to_use_instead(capsys):
    assert main(["eval", "--model", "pixels", "--dataset", "digits", "--protocol",
                 "knn,finetune", *QUICK]) == 2
    error = capsys.readouterr().err
    assert "no weights to fine-tune" in error and "frozen protocols (knn, linear, fewshot)" in error


@pytest.mark.parametrize("flag, value", [("--finetune-fractions", "0.5,1.5"),
                                         ("--finetune-fractions", "0"),
                                         ("--finetune-lr", "0"), ("--finetune-epochs", "0")])
def test_cli_refuses_bad_finetune_values(flag, value, capsys):
    with pytest.raises(SystemExit):
        main(["eval", "--model", "pixels", "--dataset", "digits", flag, value])
    assert flag in capsys.readouterr().err


def test_the_probe_head_starts_where_the_few_shot_probe_ends(encoder_folder):
    """With head_init="probe", the classifier folded from the probe gives the probe's logits on
    the raw features, and fine-tuning starts from it: at a learning rate that barely moves the
    weights it scores as the few-shot probe does."""
    from seedzoo.evaluation.finetune import probe_head
    from seedzoo.evaluation.linear import LinearProbe

    features = torch.randn(60, 8) * 3 + 1
    labels = (torch.arange(60) % 4 + 2).numpy()  # classes 2..5 of 7: 0, 1 and 6 never seen
    probe = LinearProbe(weight_decays=[1e-4], epochs=5).fit(features, labels)
    head = probe_head(probe, 7)
    logits = head(features)
    torch.testing.assert_close(logits[:, 2:6], probe.decision_function(features))
    assert not head.weight[[0, 1, 6]].any() and not head.bias[[0, 1, 6]].any()

    model = load_encoder(str(encoder_folder))
    for head_init in ("zeros", "probe"):  # the probe's figures last
        options = FineTuneOptions(fractions=[0.1], epochs=1, min_steps=0, batch_size=16,
                                  lr=1e-9, head_init=head_init, augment=False)
        metrics, settings = finetune_scores(model, "digits", spec="tiny", options=options,
                                            limit_train=400, limit_test=200, progress=False,
                                            probe_options={"epochs": 2, "min_steps": 20})
        assert settings["classifier_init"] == head_init
        assert ("probe_weight_decay" in settings["10pct"]) == (head_init == "probe")
    few_shot = evaluate(model, "digits", spec="tiny", protocols=["fewshot"], limit_train=400,
                        limit_test=200, use_cache=False, progress=False,
                        probe_options={"epochs": 2, "min_steps": 20})["metrics"]
    assert metrics["finetune_10pct_top1"] == pytest.approx(few_shot["fewshot_10pct_top1"],
                                                           abs=0.03)


def test_without_the_disk_cache_each_split_is_still_extracted_once(encoder_folder, tmp_path,
                                                                   extractions):
    """The frozen protocols and fine-tuning's probe share the train features in memory."""
    model = load_encoder(str(encoder_folder))
    evaluate(model, "digits", spec="tiny", protocols=["knn", "finetune"], limit_train=300,
             limit_test=100, use_cache=False, cache_dir=tmp_path / "cache", progress=False,
             probe_options={"epochs": 2, "min_steps": 20},
             finetune_options={"fractions": [0.1], "epochs": 1, "min_steps": 0,
                               "batch_size": 16, "augment": False})
    assert extractions.count("digits train") == extractions.count("digits test") == 1
    assert not (tmp_path / "cache").exists()
