"""The catalog: entries only from real runs, listing, loading by name, rebuild instructions."""

import json
from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard
from zoo_helpers import (  # noqa: F401
    HUB_TOKEN,
    evaluation_json,
    features,
    hf_cache,
    hub,
    run_summary,
    tiny_encoder,
    write_json,
)

import seedzoo
from seedzoo.cli import main
from seedzoo.errors import ModelNotFoundError, SeedzooError
from seedzoo.zoo import push, save_pretrained
from seedzoo.zoo.catalog import DEFAULT_CARDS_DIR, PACKAGE_CATALOG, add_entry

REPOSITORY = Path(__file__).resolve().parents[1]
FMNIST = {"knn_top1@20": 0.8125, "knn_top1@200": 0.8, "linear_top1": 0.8433}


@pytest.fixture
def catalog(tmp_path, monkeypatch):
    path = tmp_path / "catalog.json"
    path.write_text('{"models": []}\n')
    monkeypatch.setenv("SEEDZOO_CATALOG", str(path))
    return path


@pytest.fixture
def run(tmp_path):
    """A run folder as `seedzoo train` leaves it, plus the evaluation JSON of its encoder."""
    model = tiny_encoder()
    run = tmp_path / "runs/seed-tiny"
    save_pretrained(model, run / "encoder")
    write_json(run / "summary.json", run_summary())
    return model, run, write_json(tmp_path / "eval.json", evaluation_json("fashion-mnist", FMNIST))


def test_shipped_catalog_entries_have_real_figures_and_cards():
    entries = json.loads(PACKAGE_CATALOG.read_text())["models"]
    for entry in entries:
        assert entry["evaluations"] and all(entry["evaluations"].values()), entry["name"]
        assert entry["hub"]["revision"], entry["name"]
        card = REPOSITORY / DEFAULT_CARDS_DIR / entry["name"] / "README.md"
        assert card.is_file() and entry["card"] == str(card.relative_to(REPOSITORY)), entry["name"]
    listed = seedzoo.list_models()
    assert sorted(e.name for e in listed) == sorted(e["name"] for e in entries)
    order = [(e.architecture, -e.top1("fashion-mnist", "knn")) for e in listed]
    assert order == sorted(order)  # per architecture, best k-NN first


def test_empty_catalog_says_so(catalog, capsys):
    assert seedzoo.list_models() == []
    assert main(["list"]) == 0
    assert "The catalog is empty" in capsys.readouterr().out


def test_add_from_a_run_then_list_and_load_by_name(catalog, run, hf_cache, tmp_path, capsys):
    model, run_dir, eval_json = run
    entry = add_entry("seed-tiny-fmnist", run_dir, [eval_json], cards_dir=tmp_path / "cards")
    assert [e.name for e in seedzoo.list_models()] == ["seed-tiny-fmnist"]
    listed = seedzoo.list_models("seed-*")[0]
    assert listed == entry
    assert listed.evaluations == {"fashion-mnist": FMNIST}
    assert listed.top1("fashion-mnist", "knn") == 0.8125
    assert listed.params == sum(p.numel() for p in model.parameters())
    assert listed.input_size == [3, 32, 32] and listed.method == "seed"
    assert listed.where == "not published on a public hub"
    assert listed.command.startswith("seedzoo train --config ")
    assert (tmp_path / "cards/seed-tiny-fmnist/recipe.yaml").is_file()
    card = ModelCard.load(tmp_path / "cards/seed-tiny-fmnist/README.md")
    assert {r.metric_name: r.metric_value for r in card.data.eval_results} == FMNIST
    assert torch.equal(features(seedzoo.load("seed-tiny-fmnist")), features(model))
    assert torch.equal(features(seedzoo.load(listed)), features(model))

    assert main(["list"]) == 0
    table = capsys.readouterr().out
    assert "seed-tiny-fmnist" in table and "0.812" in table and "0.843" in table
    assert main(["list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["evaluations"] == {"fashion-mnist": FMNIST}


def test_an_entry_s_repo_id_is_stored_bare(catalog, run, hf_cache, tmp_path):
    model, run_dir, eval_json = run
    entry = add_entry("seed-tiny", run_dir, [eval_json], cards_dir=tmp_path / "cards",
                      repo_id="hf-hub:org/tiny")
    assert entry.hub_spec.startswith("hf-hub:org/tiny@")
    assert torch.equal(features(seedzoo.load("seed-tiny")), features(model))
    with pytest.raises(SeedzooError, match="names a revision"):
        add_entry("seed-tiny", run_dir, [eval_json], cards_dir=tmp_path / "cards",
                  repo_id="org/tiny@dev")


def test_an_entry_not_in_the_cache_explains_how_to_rebuild_it(catalog, run, hf_cache, tmp_path,
                                                              monkeypatch, capsys):
    _, run_dir, eval_json = run
    add_entry("seed-tiny-fmnist", run_dir, [eval_json], cards_dir=tmp_path / "cards",
              command="bash scripts/main_job.sh")
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(ModelNotFoundError) as error:
        seedzoo.load("seed-tiny-fmnist")
    assert "not published on a public hub and is not in the local Hugging Face cache" in \
        str(error.value)
    assert "build it yourself with: bash scripts/main_job.sh" in str(error.value)
    assert main(["pull", "seed-tiny-fmnist"]) == 2
    assert "build it yourself with: bash scripts/main_job.sh" in capsys.readouterr().err


def test_a_public_entry_loads_from_its_hub_and_explains_when_it_cannot(catalog, run, hub,
                                                                       tmp_path, monkeypatch):
    model, run_dir, eval_json = run
    info = push(run_dir, "org/seed-tiny", endpoint=hub.url, token=HUB_TOKEN)
    add_entry("seed-tiny-fmnist", run_dir, [eval_json], repo_id="org/seed-tiny",
              revision=info.oid, endpoint=hub.url, public=True, cards_dir=tmp_path / "cards")
    entry = seedzoo.list_models()[0]
    assert entry.where == f"{hub.url}/org/seed-tiny @ {info.oid[:12]}"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError, match="cannot be reached.*Or build it yourself with: "
                                                 "seedzoo train --config"):
        seedzoo.load("seed-tiny-fmnist")
    monkeypatch.delenv("HF_HUB_OFFLINE")
    assert torch.equal(features(seedzoo.load("seed-tiny-fmnist")), features(model))
    hub.stop()  # a pinned revision in the cache needs no hub at all
    assert torch.equal(features(seedzoo.load("seed-tiny-fmnist")), features(model))


def test_unknown_name_suggests_the_closest_catalog_names(catalog, run, hf_cache, tmp_path):
    _, run_dir, eval_json = run
    add_entry("seed-tiny-fmnist", run_dir, [eval_json], cards_dir=tmp_path / "cards")
    with pytest.raises(ModelNotFoundError, match="Closest catalog names: seed-tiny-fmnist"):
        seedzoo.load("seed-tiny-fmnst")
    assert main(["pull", "seed-tiny-fmist"]) == 2


def test_no_entry_without_figures(catalog, run, tmp_path):
    _, run_dir, _ = run
    with pytest.raises(SeedzooError, match="needs real figures"):
        add_entry("seed-tiny", run_dir, [], cards_dir=tmp_path / "cards")
    with pytest.raises(SeedzooError, match="needs --repo-id and --revision"):
        add_entry("seed-tiny", run_dir, [evaluation_json("digits", {"knn_top1@20": 0.9})],
                  public=True, cards_dir=tmp_path / "cards")
    assert seedzoo.list_models() == []


def test_cli_catalog_add(catalog, run, hf_cache, tmp_path, capsys):
    _, run_dir, eval_json = run
    plot = tmp_path / "study.png"
    plot.write_bytes(b"\x89PNG\r\n\x1a\n")
    assert main(["catalog", "add", "seed-cli", str(run_dir), "--eval", str(eval_json),
                 "--cards", str(tmp_path / "cards"), "--plot", str(plot)]) == 0
    assert "seed-cli" in capsys.readouterr().out
    assert seedzoo.list_models()[0].name == "seed-cli"
    assert main(["list", "--markdown"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0] == ("| name | architecture | method | params | dataset | k-NN top-1 | "
                        "linear top-1 | ONNX ms |")
    assert table[2].startswith(f"| [`seed-cli`]({tmp_path / 'cards' / 'seed-cli' / 'README.md'})")
    card = tmp_path / "cards" / "seed-cli"
    assert (card / "study.png").read_bytes() == plot.read_bytes()
    assert "![This model among the other runs of its study](study.png)" in \
        (card / "README.md").read_text()


@pytest.mark.parametrize("change, message", [
    (lambda entry: entry.pop("recipe"), "entry 'seed-tiny': missing field 'recipe'"),
    (lambda entry: entry.update(license="mit"), "entry 'seed-tiny': unknown field 'license'"),
    (lambda entry: entry.pop("name"), "entry '#1': missing field 'name'"),
])
def test_a_catalog_entry_with_a_missing_or_unknown_field_is_named(catalog, run, hf_cache, tmp_path,
                                                                  capsys, change, message):
    _, run_dir, eval_json = run
    add_entry("seed-tiny", run_dir, [eval_json], cards_dir=tmp_path / "cards")
    models = json.loads(catalog.read_text())["models"]
    change(models[0])
    catalog.write_text(json.dumps({"models": models}))
    assert main(["list"]) == 2
    assert f"is not a seedzoo catalog ({message}" in capsys.readouterr().err
    with pytest.raises(SeedzooError, match="is not a seedzoo catalog"):
        add_entry("seed-other", run_dir, [eval_json], cards_dir=tmp_path / "cards")


def test_cards_go_to_model_cards_of_the_current_folder(catalog, run, hf_cache, tmp_path,
                                                        monkeypatch):
    _, run_dir, eval_json = run
    monkeypatch.chdir(tmp_path)
    entry = add_entry("seed-tiny", run_dir, [eval_json])
    assert entry.card == "model_cards/seed-tiny/README.md"
    assert (tmp_path / entry.card).is_file()


@pytest.mark.parametrize("name", ["../escaped", "a/b", "/abs", "..", ".hidden", ""])
def test_a_catalog_name_that_is_not_one_plain_word_is_refused(catalog, run, hf_cache, tmp_path,
                                                              name):
    _, run_dir, eval_json = run
    with pytest.raises(SeedzooError, match="A catalog name is one plain word"):
        add_entry(name, run_dir, [eval_json], cards_dir=tmp_path / "cards" / "inner")
    assert not (tmp_path / "cards").exists() and not (tmp_path / "escaped").exists()
