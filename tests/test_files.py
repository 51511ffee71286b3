"""Atomic writes: the old file survives a failed write, and no temporary file is left."""

import pytest

from seedzoo.files import atomic_write_path, write_text_atomic


def test_write_replaces_the_file_and_creates_missing_folders(tmp_path):
    path = tmp_path / "new" / "folder" / "report.json"
    assert write_text_atomic(path, "first") == path
    write_text_atomic(path, "second")
    assert path.read_text() == "second"
    assert [p.name for p in path.parent.iterdir()] == ["report.json"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary_file(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_text("validated")
    with pytest.raises(ValueError, match="validation failed"):
        with atomic_write_path(path) as tmp:
            tmp.write_text("half written")
            raise ValueError("validation failed")
    assert path.read_text() == "validated"
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]


def test_the_temporary_file_sits_beside_the_target(tmp_path):
    with atomic_write_path(tmp_path / "config.json") as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith("config.json.")
        tmp.write_text("{}")
    assert (tmp_path / "config.json").read_text() == "{}"
