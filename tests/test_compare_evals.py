"""scripts/compare_evals.py: the main job's closing table and SEED's lift line."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

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
