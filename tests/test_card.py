"""Model cards from run summary, evaluation and benchmark JSONs, parsed back by the Hub client."""

import pytest
from huggingface_hub import ModelCard, hf_hub_download
from zoo_helpers import (  # noqa: F401
    HUB_TOKEN,
    evaluation_json,
    hf_cache,
    hub,
    run_summary,
    tiny_encoder,
    write_json,
)

from seedzoo.errors import SeedzooError
from seedzoo.zoo import push, save_pretrained, write_card
from seedzoo.zoo.pretrained import weights_fingerprint

FMNIST = {"knn_top1@20": 0.8125, "knn_top5@20": 0.9875, "knn_top1@200": 0.79,
          "linear_top1": 0.8433, "fewshot_1pct_top1": 0.61, "fewshot_10pct_top1": 0.7402}
DIGITS = {"knn_top1@20": 0.9311, "linear_top1": 0.95}
BENCH = {"model": {"weights_sha256": weights_fingerprint(tiny_encoder())},
         "threads": 2, "machine": {"cpu": "Test CPU @ 2.0GHz", "logical_cores": 2},
         "results": [{"backend": "torch", "precision": "fp32", "batch_size": 1, "p50_ms": 4.2},
                     {"backend": "onnxruntime", "precision": "fp32", "batch_size": 1,
                      "p50_ms": 1.7},
                     {"backend": "onnxruntime-bare", "precision": "fp32", "batch_size": 1,
                      "p50_ms": 1.6},
                     {"backend": "onnxruntime", "precision": "int8", "batch_size": 1,
                      "p50_ms": 2.5},
                     {"backend": "onnxruntime", "precision": "fp32", "batch_size": 8,
                      "p50_ms": 9.9}]}


def _metrics_by_dataset(card: ModelCard) -> dict[str, dict[str, float]]:
    found: dict[str, dict[str, float]] = {}
    for result in card.data.eval_results:
        found.setdefault(result.dataset_name, {})[result.metric_name] = result.metric_value
    return found


def test_card_front_matter_round_trips_through_modelcard_load(tmp_path):
    subsets = evaluation_json("fashion-mnist", FMNIST)
    subsets["config"].update(limit_train=20000, limit_test=5000)
    evaluations = [write_json(tmp_path / "fmnist.json", subsets), evaluation_json("digits", DIGITS)]
    folder = save_pretrained(tiny_encoder(), tmp_path / "enc")
    write_card(folder, name="seed-tiny", repo_id="org/seed-tiny", run=run_summary(),
               evaluations=evaluations, bench=write_json(tmp_path / "bench.json", BENCH))
    card = ModelCard.load(folder / "README.md")
    assert card.data.library_name == "timm"
    assert card.data.pipeline_tag == "image-feature-extraction"
    assert {"timm", "seedzoo", "seed", "distillation", "test_resnet"} <= set(card.data.tags)
    assert card.data.datasets == ["zalando-datasets/fashion_mnist", "digits"]
    assert card.data.model_name == "seed-tiny"
    assert _metrics_by_dataset(card) == {"fashion-mnist": FMNIST, "digits": DIGITS}
    split = {r.dataset_split for r in card.data.eval_results}
    assert split == {"test"}
    text = card.text
    assert 'seedzoo.load("hf-hub:org/seed-tiny")' in text
    assert 'timm.create_model("hf-hub:org/seed-tiny", pretrained=True, num_classes=0)' in text
    assert "frozen teacher `runs/teacher/encoder (resnet50)`" in text
    assert "| fewshot_10pct_top1 | 74.02 | - |" in text
    assert "2 thread(s), on Test CPU @ 2.0GHz" in text
    assert "| ONNX Runtime fp32 | 1.70 |" in text and "| ONNX Runtime INT8 | 2.50 |" in text
    assert "| torch eager | 4.20 |" in text
    assert "queue_size: 4096" in text  # the resolved recipe, to train it again
    assert "5.2 min" in text and "Intended use and limits" in text and "apache-2.0" in text
    assert ("on fashion-mnist: a seeded 5,000 images of the test split, training only on a "
            "seeded 20,000 images of the train split; digits: the test split, training only on "
            "the train split.") in text


def test_card_without_inputs_says_what_is_missing(tmp_path):
    folder = save_pretrained(tiny_encoder(), tmp_path / "enc")
    assert not (folder / "README.md").exists()  # the card is written on its own
    write_card(folder)
    card = ModelCard.load(folder / "README.md")
    assert card.data.library_name == "timm"
    assert not card.data.eval_results
    assert "Not evaluated yet." in card.text and "recipe is not recorded" in card.text


def test_a_card_shows_a_plot_given_as_a_relative_link(tmp_path):
    folder = save_pretrained(tiny_encoder(), tmp_path / "enc")
    assert "![" not in write_card(folder).read_text()
    text = write_card(folder, plot="study/accuracy_latency.png",
                      evaluations=[evaluation_json("digits", DIGITS)]).read_text()
    results = text[text.index("## Results"):text.index("## Reproduce")]
    assert "](study/accuracy_latency.png)" in results


def test_run_summary_is_found_in_the_run_folder(tmp_path):
    run = tmp_path / "run"
    save_pretrained(tiny_encoder(), run / "encoder")
    write_json(run / "summary.json", run_summary())
    card = ModelCard.load(write_card(run, evaluations=[evaluation_json("digits", DIGITS)]))
    assert "seed" in card.data.tags and "312.4" not in card.text and "5.2 min" in card.text


def test_run_may_be_given_as_the_run_folder(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    write_json(run / "summary.json", run_summary())
    folder = save_pretrained(tiny_encoder(), tmp_path / "elsewhere")
    assert "5.2 min" in write_card(folder, run=run).read_text()
    with pytest.raises(SeedzooError, match="has no run summary"):
        write_card(save_pretrained(tiny_encoder(), tmp_path / "other"), run=tmp_path / "elsewhere")


def test_fine_tuning_and_classifier_figures_are_described_and_named(tmp_path):
    from seedzoo.zoo.card import WIDER_TASK_NAME

    trained = {"finetune_1pct_top1": 0.52, "finetune_100pct_top1": 0.88, "classifier_top1": 0.9}
    folder = save_pretrained(tiny_encoder(), tmp_path / "enc")
    write_card(folder, evaluations=[evaluation_json("digits", {**DIGITS, **trained})])
    card = ModelCard.load(folder / "README.md")
    assert {r.task_name for r in card.data.eval_results} == {WIDER_TASK_NAME}
    assert _metrics_by_dataset(card) == {"digits": {**DIGITS, **trained}}
    assert "the whole encoder fine-tuned with a linear classifier" in card.text
    assert "the classifier its run trained beside it" in card.text
    assert "| finetune_100pct_top1 | 88.00 |" in card.text


@pytest.mark.parametrize("bad, message", [
    ({"metrics": {}}, "not a seedzoo evaluation JSON"),
    ({"metrics": {"knn_top1@20": 0.5}, "config": {}}, "config.dataset"),
])
def test_evaluation_json_without_figures_is_refused(tmp_path, bad, message):
    folder = save_pretrained(tiny_encoder(), tmp_path / "enc")
    with pytest.raises(SeedzooError, match=message):
        write_card(folder, evaluations=[bad])
    with pytest.raises(SeedzooError, match="Cannot read results file .*missing.json"):
        write_card(folder, evaluations=[tmp_path / "missing.json"])


def test_benchmark_json_without_an_onnx_batch_1_result_is_refused(tmp_path):
    folder = save_pretrained(tiny_encoder(), tmp_path / "enc")
    bench = {"results": [{"backend": "torch", "batch_size": 1, "p50_ms": 3.0}]}
    with pytest.raises(SeedzooError, match="no ONNX Runtime fp32 result at batch size 1"):
        write_card(folder, bench=bench)


def test_published_card_renders_with_the_evaluation_metrics(hub, tmp_path):
    folder = save_pretrained(tiny_encoder(), tmp_path / "enc")
    write_card(folder, repo_id="org/carded", evaluations=[evaluation_json("fashion-mnist", FMNIST)])
    info = push(folder, "org/carded", endpoint=hub.url, token=HUB_TOKEN)
    readme = hf_hub_download("org/carded", "README.md", revision=info.oid, endpoint=hub.url)
    assert _metrics_by_dataset(ModelCard.load(readme)) == {"fashion-mnist": FMNIST}


def test_a_small_stem_encoder_is_published_with_a_warning_and_a_card_that_says_so(tmp_path):
    from seedzoo.zoo import publish_to_cache
    from seedzoo.zoo.stems import small_stem

    folder = save_pretrained(small_stem(tiny_encoder()), tmp_path / "enc")
    write_card(folder, repo_id="org/stem")
    text = ModelCard.load(folder / "README.md").text
    assert "timm cannot rebuild: load it with `seedzoo.load`" in text
    assert "timm.create_model" not in text
    with pytest.warns(UserWarning, match="not with plain timm.create_model"):
        publish_to_cache(folder, "org/stem", cache_dir=tmp_path / "cache")


@pytest.mark.parametrize("other", ["another encoder", "the pixel baseline", "no fingerprint"])
def test_figures_of_another_model_are_refused(tmp_path, other):
    folder = save_pretrained(tiny_encoder(), tmp_path / "enc")
    evaluation = evaluation_json("fashion-mnist", FMNIST, model=tiny_encoder(seed=1))
    if other == "the pixel baseline":
        evaluation["config"].update(model="pixels", weights_sha256="ab" * 32, arch=None)
    elif other == "no fingerprint":
        del evaluation["config"]["weights_sha256"]
    with pytest.raises(SeedzooError, match=r"measured .*its figures are not this encoder's\. "
                                           r"Measure this one: seedzoo eval --model"):
        write_card(folder, evaluations=[evaluation])
    with pytest.raises(SeedzooError, match="not this encoder's"):
        write_card(folder, bench={**BENCH, "model": {"weights_sha256": "cd" * 32}})
    assert not (folder / "README.md").exists()


def test_an_onnx_evaluation_counts_for_the_weights_its_file_was_exported_from(tmp_path):
    folder = save_pretrained(tiny_encoder(), tmp_path / "enc")
    evaluation = evaluation_json("fashion-mnist", FMNIST)
    evaluation["config"].update(backend="onnxruntime", weights_sha256="ef" * 32,
                                source_weights_sha256=weights_fingerprint(tiny_encoder()))
    assert "fashion-mnist" in write_card(folder, evaluations=[evaluation]).read_text()
