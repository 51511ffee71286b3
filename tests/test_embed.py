"""`seedzoo embed` and `seedzoo.evaluation.embedding`: one feature row per image file, with its
path, through torch or ONNX Runtime, in .npz and .csv."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import seedzoo
from seedzoo.cli import main
from seedzoo.errors import DatasetNotFoundError, SeedzooError
from seedzoo.evaluation.embedding import embed_folder, read_embeddings, write_embeddings

pytestmark = pytest.mark.usefixtures("single_thread")

QUICK = ["--workers", "0", "--quiet", "--batch-size", "3"]
FILES = ["a.png", "cats/b.jpg", "cats/deep/c.png", "dogs/d.bmp", "dogs/e.png"]


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Five images of different sizes and modes, in nested class folders, and a non-image."""
    folder = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for i, name in enumerate(FILES):
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, (20 + 3 * i, 24, 3), dtype=np.uint8)
        image = Image.fromarray(pixels)
        (image.convert("L") if i == 2 else image).save(path)
    (folder / "cats" / "notes.txt").write_text("not an image")
    return folder


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return seedzoo.load("timm:test_resnet")


def test_each_image_file_gives_the_row_of_its_own_forward_pass(photos, model):
    paths, features = embed_folder(model, photos, batch_size=2, progress=False)
    assert paths == FILES  # relative, sorted, the text file left out
    transform = seedzoo.transform_for(model)
    with torch.no_grad():
        expected = torch.cat([model(transform(Image.open(photos / p))[None]) for p in paths])
    np.testing.assert_allclose(features, expected.numpy(), rtol=1e-4, atol=1e-5)
    assert features.dtype == np.float32 and features.shape == (5, model.num_features)


@pytest.mark.parametrize("suffix", [".npz", ".csv"])
def test_rows_round_trip_in_both_formats(tmp_path, suffix):
    features = np.random.default_rng(1).normal(size=(3, 4)).astype(np.float32)
    paths = ["x.png", "sub/y, with comma.png", "z.png"]
    written = write_embeddings(tmp_path / f"feats{suffix}", paths, features)
    got_paths, got = read_embeddings(written)
    assert got_paths == paths
    np.testing.assert_array_equal(got, features)  # exact, the CSV too
    if suffix == ".csv":
        header = written.read_text().splitlines()[0]
        assert header == "path,f0,f1,f2,f3"


def test_cli_writes_torch_and_onnx_rows_that_agree(tmp_path, tmp_path_factory, photos, capsys):
    from onnx_helpers import exported

    torch_model, export = exported("test_resnet", tmp_path_factory)
    assert main(["embed", "--onnx", str(export.path), str(photos), "--out",
                 str(tmp_path / "ort.npz"), "--threads", "1", *QUICK]) == 0
    assert "5 images x 96 features written" in capsys.readouterr().out
    paths, onnx_rows = read_embeddings(tmp_path / "ort.npz")
    expected_paths, expected = embed_folder(torch_model, photos, progress=False)
    assert paths == expected_paths
    np.testing.assert_allclose(onnx_rows, expected, rtol=1e-3, atol=1e-4)


def test_cli_torch_model_to_csv(tmp_path, photos, capsys):
    out = tmp_path / "feats.csv"
    assert main(["embed", "--model", "timm:test_resnet", str(photos), "--out", str(out),
                 "--device", "cpu", *QUICK]) == 0
    paths, rows = read_embeddings(out)
    assert paths == FILES and rows.shape == (5, 96) and np.isfinite(rows).all()


def test_mistakes_are_clear_errors(tmp_path, photos, model, capsys):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetNotFoundError, match="holds no image files"):
        embed_folder(model, tmp_path / "empty", progress=False)
    with pytest.raises(DatasetNotFoundError, match="is not a folder"):
        embed_folder(model, tmp_path / "missing", progress=False)
    with pytest.raises(SeedzooError, match=r"\.npz or \.csv"):
        write_embeddings(tmp_path / "feats.parquet", ["a"], np.zeros((1, 2), np.float32))
    assert main(["embed", "--model", "timm:test_resnet", str(photos), "--out",
                 str(tmp_path / "feats.txt"), *QUICK]) == 2
    assert "a .npz or .csv file" in capsys.readouterr().err
    assert main(["embed", str(photos), "--out", str(tmp_path / "f.npz"), *QUICK]) == 2
    assert "--model" in capsys.readouterr().err
    (photos / "broken.png").write_bytes(b"not a png")
    try:
        assert main(["embed", "--model", "timm:test_resnet", str(photos), "--out",
                     str(tmp_path / "f.npz"), *QUICK]) == 2
        assert "broken.png is not a readable image" in capsys.readouterr().err
    finally:
        (photos / "broken.png").unlink()
