"""A cached model is complete only when every cached file matches the hash its blob is named by."""

from __future__ import annotations

import pytest
from zoo_helpers import HUB_TOKEN, hf_cache, hub, tiny_encoder  # noqa: F401

import seedzoo
from seedzoo.cli import main
from seedzoo.errors import ModelNotFoundError
from seedzoo.zoo import publish_to_cache, push, save_pretrained


def _truncate(path) -> None:
    target = path.resolve()
    target.write_bytes(target.read_bytes()[:-100])


def test_a_truncated_file_in_the_local_cache_is_not_a_complete_model(hf_cache, tmp_path, capsys):
    folder = save_pretrained(tiny_encoder(), tmp_path / "tiny")
    publication = publish_to_cache(folder, "org/tiny")
    snapshot = next(hf_cache.glob("models--org--tiny/snapshots/*"))
    _truncate(snapshot / "model.safetensors")
    assert main(["pull", publication.spec]) == 2
    assert "the cached model.safetensors does not match its hash" in capsys.readouterr().err
    with pytest.raises(ModelNotFoundError, match="pull .* --force"):
        seedzoo.load(publication.spec, offline=True)


def test_a_file_truncated_after_a_hub_download_is_noticed_and_force_repairs_it(hub, hf_cache,
                                                                              tmp_path, capsys):
    folder = save_pretrained(tiny_encoder(), tmp_path / "tiny")
    info = push(folder, "org/tiny", endpoint=hub.url, token=HUB_TOKEN)
    spec = f"hf-hub:org/tiny@{info.oid}"
    seedzoo.load(spec, endpoint=hub.url)  # fills the cache; blobs named by git's sha1
    _truncate(next(hf_cache.glob("models--org--tiny/snapshots/*")) / "config.json")
    with pytest.raises(ModelNotFoundError, match="config.json does not match"):
        seedzoo.load(spec, endpoint=hub.url)
    assert main(["pull", spec, "--endpoint", hub.url, "--force"]) == 0
    seedzoo.load(spec, endpoint=hub.url)
