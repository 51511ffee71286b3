"""scripts/compare_evals.py: the main job's closing table and SEED's lift line."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from seedzoo.errors import SeedzooError
from seedzoo.results import make_report, write_report

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "compare_evals.py"


@pytest.fixture(scope="module")
def compare_evals():
    spec = importlib.util.spec_from_file_location("compare_evals", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_table_and_lift_in_points(compare_evals, tmp_path, capsys):
    seed = write_report(make_report({"knn_top1@20": 0.651, "knn_top5@20": 0.9}, {}),
                        tmp_path / "seed.json")
    scratch = write_report(make_report({"knn_top1@20": 0.553, "linear_top1": 0.7}, {}),
                           tmp_path / "scratch.json")
    assert compare_evals.main([f"seed={seed}", f"scratch={scratch}", "--lift", "seed:scratch"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split(" | ")[1:] == ["knn_top1@20"]          # shared top-1 metrics only
    assert lines[1].split(" | ")[1].strip() == "65.1"
    assert lines[-1] == "seed over scratch: +9.8 points of knn_top1@20"


def test_lift_names_an_unknown_result(compare_evals, tmp_path):
    path = write_report(make_report({"knn_top1@20": 0.5}, {}), tmp_path / "a.json")
    with pytest.raises(SystemExit, match="no result named 'b'"):
        compare_evals.main([f"a={path}", "--lift", "a:b"])


def test_readme_block_gets_the_markdown_table(compare_evals, tmp_path):
    seed = write_report(make_report({"knn_top1@20": 0.651}, {}), tmp_path / "seed.json")
    scratch = write_report(make_report({"knn_top1@20": 0.553}, {}), tmp_path / "scratch.json")
    readme = tmp_path / "README.md"
    readme.write_text("before\n<!-- main-job -->\nold\n<!-- /main-job -->\nafter\n")
    compare_evals.main([f"SEED student={seed}", f"scratch={scratch}",
                        "--lift", "SEED student:scratch", "--readme", str(readme)])
    assert readme.read_text() == (
        "before\n<!-- main-job -->\n| encoder | knn_top1@20 |\n|---|---:|\n"
        "| SEED student | 65.1 |\n| scratch | 55.3 |\n\n"
        "SEED student over scratch: +9.8 points of knn_top1@20.\n<!-- /main-job -->\nafter\n")


def test_readme_without_the_markers_is_refused(compare_evals, tmp_path):
    path = write_report(make_report({"knn_top1@20": 0.5}, {}), tmp_path / "a.json")
    (tmp_path / "README.md").write_text("no markers\n")
    with pytest.raises(SeedzooError, match="<!-- main-job -->"):
        compare_evals.main([f"a={path}", "--readme", str(tmp_path / "README.md")])
