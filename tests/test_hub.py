"""Publish and load with the real huggingface_hub client against a Hub server on 127.0.0.1."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from huggingface_hub import HfApi
from zoo_helpers import (  # noqa: F401
    HUB_TOKEN,
    INPUT_SIZE,
    features,
    hf_cache,
    hub,
    save_in_timm_format,
    tiny_encoder,
)

import seedzoo
from seedzoo.errors import CheckpointError, ModelNotFoundError, SeedzooError
from seedzoo.zoo import publish, publish_to_cache, push, save_pretrained
from seedzoo.zoo.card import write_card
from seedzoo.zoo.loading import check_published

PLAIN_TIMM = """
import sys, torch, timm
batch = torch.load(sys.argv[1])
outputs = {}
for spec in sys.argv[2:]:
    model = timm.create_model(spec, pretrained=True, num_classes=0).eval()
    with torch.inference_mode():
        outputs[spec] = model(batch)
assert "seedzoo" not in sys.modules
torch.save(outputs, sys.argv[1] + ".out")
"""


@pytest.fixture
def published(hub, tmp_path):
    """A tiny trained encoder saved with seedzoo, with its card, pushed to the test hub as
    org/tiny."""
    model = tiny_encoder()
    folder = save_pretrained(model, tmp_path / "tiny")
    write_card(folder, repo_id="org/tiny")
    info = push(folder, "org/tiny", endpoint=hub.url, token=HUB_TOKEN)
    return model, folder, info


def test_push_then_load_by_hub_id_gives_the_same_features(hub, published):
    model, _, info = published
    loaded = seedzoo.load("hf-hub:org/tiny", endpoint=hub.url)
    assert torch.equal(features(loaded), features(model))
    assert not loaded.training
    assert loaded.pretrained_cfg["hf_hub_id"] == f"org/tiny@{info.oid}"
    assert tuple(seedzoo.transform_for(loaded).transforms[-1].mean.tolist()) == \
        pytest.approx((0.3, 0.3, 0.3))
    sent = {(method, path.split("?")[0]) for method, path in hub.requests}
    assert ("POST", "/api/models/org/tiny/preupload/main") in sent
    assert ("POST", "/api/models/org/tiny/commit/main") in sent
    repo = hub.repos["org/tiny"].resolve("main")
    assert sorted(repo.files) == [".gitattributes", "README.md", "config.json",
                                  "model.safetensors"]


def test_plain_timm_loads_what_seedzoo_publishes(hub, published, hf_cache, tmp_path):
    model, folder, _ = published
    cached_only = tiny_encoder(seed=3)
    publish_to_cache(save_pretrained(cached_only, tmp_path / "local"), "org/local-only")
    batch = torch.randn(2, *INPUT_SIZE)
    torch.save(batch, tmp_path / "batch.pt")
    # The same thread count as here: convolutions split over other counts round differently.
    env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_HUB_CACHE": str(hf_cache),
           "OMP_NUM_THREADS": str(torch.get_num_threads())}
    subprocess.run([sys.executable, "-c", PLAIN_TIMM, str(tmp_path / "batch.pt"),
                    "hf-hub:org/tiny", f"local-dir:{folder}", "hf-hub:org/local-only"],
                   env=env, check=True, cwd=tmp_path, timeout=300)
    outputs = torch.load(tmp_path / "batch.pt.out")
    with torch.inference_mode():
        expected, expected_local = model(batch), cached_only(batch)
    assert torch.equal(outputs["hf-hub:org/tiny"], expected)
    assert torch.equal(outputs[f"local-dir:{folder}"], expected)
    assert torch.equal(outputs["hf-hub:org/local-only"], expected_local)


def test_a_pinned_revision_loads_the_older_weights_after_a_second_push(hub, published, tmp_path):
    first_model, _, first = published
    second_model = tiny_encoder(seed=7)
    second = push(save_pretrained(second_model, tmp_path / "v2"), "org/tiny",
                  endpoint=hub.url, token=HUB_TOKEN, commit_message="second")
    assert second.oid != first.oid
    assert torch.equal(features(seedzoo.load("hf-hub:org/tiny", endpoint=hub.url)),
                       features(second_model))
    pinned = seedzoo.load(f"hf-hub:org/tiny@{first.oid}", endpoint=hub.url)
    assert torch.equal(features(pinned), features(first_model))
    by_kwarg = seedzoo.load("hf-hub:org/tiny", revision=first.oid, endpoint=hub.url)
    assert torch.equal(features(by_kwarg), features(first_model))
    with pytest.raises(ModelNotFoundError, match="has no revision"):
        seedzoo.load("hf-hub:org/tiny@no-such-branch", endpoint=hub.url)


def test_push_to_a_branch_creates_it(hub, published, tmp_path):
    model, _, _ = published
    branch_model = tiny_encoder(seed=11)
    push(save_pretrained(branch_model, tmp_path / "exp"), "org/tiny", endpoint=hub.url,
         token=HUB_TOKEN, revision="experiment")
    assert torch.equal(features(seedzoo.load("hf-hub:org/tiny@experiment", endpoint=hub.url)),
                       features(branch_model))
    assert torch.equal(features(seedzoo.load("hf-hub:org/tiny", endpoint=hub.url)),
                       features(model))


def test_offline_loading_uses_the_cache(hub, published, monkeypatch):
    model, _, info = published
    seedzoo.load("hf-hub:org/tiny", endpoint=hub.url)  # fills the cache
    hub.stop()  # from here on, connections are refused
    for_sure = features(model)
    assert torch.equal(features(seedzoo.load("hf-hub:org/tiny", endpoint=hub.url)), for_sure)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # set after huggingface_hub was imported
    assert torch.equal(features(seedzoo.load("hf-hub:org/tiny")), for_sure)
    assert torch.equal(features(seedzoo.load(f"hf-hub:org/tiny@{info.oid}")), for_sure)


def test_a_model_that_is_not_cached_says_so_offline_and_with_the_hub_down(hub, monkeypatch):
    url = hub.url
    hub.stop()
    with pytest.raises(ModelNotFoundError) as down:
        seedzoo.load("hf-hub:org/absent", endpoint=url)
    message = str(down.value)
    assert "not in the local Hugging Face cache" in message
    assert f"the hub at {url} cannot be reached" in message
    assert "seedzoo pull hf-hub:org/absent" in message and "HF_HUB_OFFLINE" not in message
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError, match=r"not in the local Hugging Face cache .* "
                                                 r"offline mode is on \(HF_HUB_OFFLINE=1\)"
                                                 r".*or unset HF_HUB_OFFLINE"):
        seedzoo.load("hf-hub:org/absent")


def test_a_repo_the_hub_does_not_have(hub):
    with pytest.raises(ModelNotFoundError, match="has no repository org/nothing"):
        seedzoo.load("hf-hub:org/nothing", endpoint=hub.url)


def test_push_with_a_wrong_token_says_what_to_do(hub, tmp_path):
    folder = save_pretrained(tiny_encoder(), tmp_path / "tiny")
    with pytest.raises(SeedzooError, match="refused to publish org/tiny \\(HTTP 401\\).*token"):
        push(folder, "org/tiny", endpoint=hub.url, token="wrong")
    assert "org/tiny" not in hub.repos


def test_push_refuses_a_folder_whose_weights_do_not_fit_its_config(hub, tmp_path):
    folder = save_pretrained(tiny_encoder(), tmp_path / "tiny")
    save_pretrained(tiny_encoder("test_efficientnet"), tmp_path / "other")
    (folder / "model.safetensors").write_bytes((tmp_path / "other/model.safetensors").read_bytes())
    with pytest.raises(CheckpointError, match="do not fit architecture 'test_resnet'"):
        push(folder, "org/tiny", endpoint=hub.url, token=HUB_TOKEN)
    assert hub.requests == []


def _upload_raw(hub, repo_id: str, files: dict[str, bytes]) -> None:
    """Commit files as another tool might have, bypassing seedzoo's checks."""
    api = HfApi(endpoint=hub.url, token=HUB_TOKEN)
    api.create_repo(repo_id)
    from huggingface_hub import CommitOperationAdd

    api.create_commit(repo_id, [CommitOperationAdd(path, data) for path, data in files.items()],
                      commit_message="raw upload")


def test_truncated_weights_on_the_hub_end_in_one_clear_error(hub, tmp_path):
    folder = save_pretrained(tiny_encoder(), tmp_path / "tiny")
    weights = (folder / "model.safetensors").read_bytes()
    _upload_raw(hub, "org/truncated", {"config.json": (folder / "config.json").read_bytes(),
                                       "model.safetensors": weights[: len(weights) // 2]})
    with pytest.raises(CheckpointError, match="truncated or corrupted"):
        seedzoo.load("hf-hub:org/truncated", endpoint=hub.url)


def test_config_and_weights_of_different_architectures_end_in_one_clear_error(hub, tmp_path):
    resnet = save_pretrained(tiny_encoder(), tmp_path / "resnet")
    effnet = save_pretrained(tiny_encoder("test_efficientnet"), tmp_path / "effnet")
    _upload_raw(hub, "org/mixed",
                {"config.json": (resnet / "config.json").read_bytes(),
                 "model.safetensors": (effnet / "model.safetensors").read_bytes()})
    with pytest.raises(CheckpointError, match=r"do not fit architecture 'test_resnet': missing"):
        seedzoo.load("hf-hub:org/mixed", endpoint=hub.url)


def test_only_safetensors_are_read_from_a_hub(hub, tmp_path):
    folder = save_pretrained(tiny_encoder(), tmp_path / "tiny")
    _upload_raw(hub, "org/pickled", {"config.json": (folder / "config.json").read_bytes(),
                                     "pytorch_model.bin": b"not even a pickle"})
    with pytest.raises(ModelNotFoundError, match="has no model.safetensors.*never pickled"):
        seedzoo.load("hf-hub:org/pickled", endpoint=hub.url)
    assert not any("pytorch_model.bin" in path for _, path in hub.requests if "resolve" in path)


def test_publish_goes_to_the_hub_only_with_endpoint_and_token(hub, hf_cache, tmp_path):
    model = tiny_encoder()
    folder = save_pretrained(model, tmp_path / "tiny")
    local = publish(folder, "org/auto", endpoint=hub.url)  # no token: local cache
    assert local.location == "local cache" and "org/auto" not in hub.repos
    assert Path(local.url).is_relative_to(hf_cache)
    check_published(local, folder)
    remote = publish(folder, "org/auto", endpoint=hub.url, token=HUB_TOKEN)
    assert remote.location == "hub"
    assert remote.revision == hub.repos["org/auto"].branches["main"]
    check_published(remote, folder, endpoint=hub.url)


def test_check_published_notices_different_features(hf_cache, tmp_path):
    folder = save_pretrained(tiny_encoder(), tmp_path / "tiny")
    publication = publish_to_cache(folder, "org/tiny")
    save_pretrained(tiny_encoder(seed=5), folder)
    with pytest.raises(SeedzooError, match="does not reproduce"):
        check_published(publication, folder)


def test_cli_push_auto_then_pull(hub, hf_cache, tmp_path, capsys, monkeypatch):
    from seedzoo.cli import main

    folder = save_pretrained(tiny_encoder(), tmp_path / "tiny")
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    assert main(["push", str(folder), "org/cli", "--to", "auto", "--check"]) == 0
    out = capsys.readouterr().out
    assert "publishing to the local cache" in out and "same features" in out
    assert main(["push", str(folder), "org/cli", "--to", "auto", "--endpoint", hub.url,
                 "--token", HUB_TOKEN, "--check"]) == 0
    out = capsys.readouterr().out
    assert "published org/cli to the hub" in out and "same features" in out
    commit = hub.repos["org/cli"].branches["main"]
    assert main(["pull", f"hf-hub:org/cli@{commit}", "--endpoint", hub.url,
                 "--out", str(tmp_path / "pulled")]) == 0
    assert json.loads((tmp_path / "pulled/config.json").read_text())["architecture"] == \
        "test_resnet"
    assert main(["pull", "hf-hub:org/none", "--endpoint", hub.url]) == 2
    assert "has no repository org/none" in capsys.readouterr().err


def test_a_hub_repo_in_timm_own_format_loads_as_an_encoder(hub, tmp_path):
    classifier, folder = save_in_timm_format(tmp_path / "timm", model_args=False)
    _upload_raw(hub, "timm/test_resnet", {name: (folder / name).read_bytes()
                                          for name in ("config.json", "model.safetensors")})
    loaded = seedzoo.load("hf-hub:timm/test_resnet", endpoint=hub.url)
    classifier.reset_classifier(0)
    assert torch.equal(features(loaded), features(classifier))


def test_publish_targets_take_the_hf_hub_prefix_and_refuse_a_revision(hub, hf_cache, tmp_path,
                                                                      capsys):
    from seedzoo.cli import main

    folder = save_pretrained(tiny_encoder(), tmp_path / "tiny")
    info = push(folder, "hf-hub:org/tiny", endpoint=hub.url, token=HUB_TOKEN)
    assert hub.repos["org/tiny"].branches["main"] == info.oid
    cached = publish_to_cache(folder, "hf-hub:org/cached")
    assert cached.spec.startswith("hf-hub:org/cached@")
    seedzoo.load(cached.spec, offline=True)
    assert main(["push", str(folder), "hf-hub:org/cli", "--to", "cache"]) == 0
    assert 'seedzoo.load("hf-hub:org/cli@' in capsys.readouterr().out
    requests = len(hub.requests)
    for publish_to in (lambda repo_id: push(folder, repo_id, endpoint=hub.url, token=HUB_TOKEN),
                       lambda repo_id: publish_to_cache(folder, repo_id)):
        with pytest.raises(SeedzooError, match=r"names a revision.*revision='dev' "
                                               r"\(CLI: --revision dev\)"):
            publish_to("org/tiny@dev")
        for bad in ("org/-tiny", "org/a..b"):
            with pytest.raises(ModelNotFoundError, match="is not a hub id"):
                publish_to(bad)
    assert len(hub.requests) == requests
    assert main(["pull", "hf-hub:org/-tiny", "--endpoint", hub.url]) == 2
    assert "is not a hub id" in capsys.readouterr().err


def test_a_weights_file_given_as_the_folder_names_the_folder(hf_cache, tmp_path):
    folder = save_pretrained(tiny_encoder(), tmp_path / "tiny")
    with pytest.raises(ModelNotFoundError, match=f"model.safetensors is a file: give the encoder "
                                                 f"folder .* \\({folder}\\)"):
        publish_to_cache(folder / "model.safetensors", "org/tiny")
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        publish_to_cache(tmp_path / "absent", "org/tiny")
