"""`seedzoo report`: a small synthetic study summary becomes report.md, a self-contained
report.html and PNG plots; malformed summaries are refused with a clear message."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from seedzoo.cli import main
from seedzoo.errors import SeedzooError
from seedzoo.report import build_report, read_study
from seedzoo.report.content import baseline_of, images_to_reach, lift
from seedzoo.report.figures import pareto_front
from seedzoo.report.study import training_log

BUDGET = {"images_seen": 30000, "epochs": 3, "wall_s": 600.0, "machine": "cpu-2core"}


def row(name, architecture, method, knn, linear, *, teacher=None, labels=0.0, latency=None,
        **extra):
    """A study row with the budget above; ``latency`` the ONNX fp32 batch-1 ms."""
    return {"name": name, "architecture": architecture, "method": method, "teacher": teacher,
            "label_fraction": labels, **BUDGET,
            "metrics": {"knn_top1@20": knn, "linear_top1": linear},
            **({"latency_ms": {"onnx_fp32_b1": latency}} if latency else {}), **extra}


def summary(rows):
    return {"schema": "seedzoo-study/1", "dataset": "fashion-mnist", "commit": "0123456789abcdef",
            "machine": {"cpu": "test", "cores": 2, "cpu_flags": ["avx2"],
                        "versions": {"torch": "2.14.1"}},
            "pixels": {"knn_top1@20": 0.75}, "rows": rows}


def full_study(folder: Path) -> Path:
    """Two students, a teacher, a run without a same-budget baseline, a training log and a
    curve."""
    log = folder / "runs" / "seed_r18" / "metrics.jsonl"
    log.parent.mkdir(parents=True)
    log.write_text("".join(json.dumps(r) + "\n" for r in [
        {"step": 5, "epoch": 0.5, "loss": 6.0, "lr": 0.1, "img_per_s": 80.0},
        {"step": 10, "epoch": 1.0, "loss": 5.0, "lr": 0.1, "img_per_s": 80.0},
        {"step": 10, "epoch": 1, "knn_top1": 61.0}]) + '{"step": 15, "ep')
    rows = [
        row("moco_r18", "resnet18", "moco", 0.716, 0.722, latency=0.9, params=11.2e6),
        row("seed_r18", "resnet18", "seed", 0.738, 0.741, teacher="moco_r50", latency=0.9,
            params=11.2e6, metrics_jsonl="runs/seed_r18/metrics.jsonl"),
        row("kd_r18", "resnet18", "kd", 0.821, 0.825, teacher="sup_r50", labels=1.0,
            latency=0.95, params=11.2e6, curve=[{"images_seen": 10000, "knn_top1@20": 0.7},
                                                {"images_seen": 30000, "knn_top1@20": 0.821}]),
        row("moco_mbv3", "mobilenetv3_large_100", "moco", 0.555, 0.568, latency=0.9,
            metrics={"knn_top1@20": 0.555, "linear_top1": 0.568, "knn_top1@10": 0.56,
                     "knn_top5@20": 0.9, "transfer_digits_linear_top1": 0.91}),
        row("seed_mbv3", "mobilenetv3_large_100", "seed", 0.678, 0.730, teacher="moco_r50",
            latency=0.75),
        {**row("crd_mbv3", "mobilenetv3_large_100", "crd", 0.690, 0.695, teacher="sup_r50",
               labels=1.0, variant="CRD+KD+CE", latency=0.8), "images_seen": 20000},
        row("moco_r50", "resnet50", "moco", 0.713, 0.717, latency=2.6),
    ]
    path = folder / "summary.json"
    path.write_text(json.dumps(summary(rows)))
    return path


def table_under(markdown: str, heading: str) -> list[list[str]]:
    """The cells of the first table after ``heading`` (header row first, rule dropped)."""
    after = markdown[markdown.index(heading + "\n") + len(heading):].lstrip("\n").split("\n\n")
    table = next(block for block in after if block.startswith("|"))
    lines = [line for line in table.splitlines() if not line.startswith("| ---")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]


def test_the_report_has_runs_best_first_with_pixels_and_the_lifts_by_hand(tmp_path, capsys):
    full_study(tmp_path / "study")
    assert main(["report", "--study", str(tmp_path / "study"), "--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out.split()
    names = {Path(p).name for p in printed}
    assert names == {"report.md", "report.html", "accuracy_latency.png", "student_bars.png",
                     "training_curves.png"}
    for png in (tmp_path / "out").glob("*.png"):
        assert Image.open(png).size[0] > 500
    markdown = (tmp_path / "out" / "report.md").read_text()
    assert "commit 0123456789ab, machine: cpu test, cores 2." in markdown

    resnet18 = table_under(markdown, "### resnet18")
    assert resnet18[0][:5] == ["method", "teacher", "labels", "k-NN@20", "linear"]
    assert "params (M)" in resnet18[0] and "ONNX fp32 ms" in resnet18[0]
    assert "GFLOPs" not in resnet18[0]  # no row has FLOPs
    assert [r[0] for r in resnet18[1:]] == ["kd", "raw pixels (reference)", "seed", "moco"]
    assert resnet18[3][:5] == ["seed", "moco_r50", "none", "73.8", "74.1"]
    mobilenet = table_under(markdown, "### mobilenetv3_large_100")
    assert [r[0] for r in mobilenet[1:]] == ["raw pixels (reference)", "crd (CRD+KD+CE)", "seed",
                                             "moco"]
    assert mobilenet[0] == ["method", "teacher", "labels", "k-NN@20", "linear", "digits linear",
                            "ONNX fp32 ms"]  # no k-NN@10 nor top-5 column, no params

    lifts = markdown[markdown.index("## Lift over"):markdown.index("## Against the papers")]
    # seed_r18 - moco_r18: 73.8 - 71.6 = +2.2 k-NN, 74.1 - 72.2 = +1.9 linear;
    # kd_r18: 82.1 - 71.6 = +10.5, 82.5 - 72.2 = +10.3; seed_mbv3: 67.8 - 55.5, 73.0 - 56.8.
    assert table_under(lifts, "### resnet18")[1:] == [
        ["kd", "sup_r50", "100%", "moco", "+10.5", "+10.3"],
        ["seed", "moco_r50", "none", "moco", "+2.2", "+1.9"]]
    assert table_under(lifts, "### mobilenetv3_large_100")[1:] == [
        ["seed", "moco_r50", "none", "moco", "+12.3", "+16.2", "-"]]  # no digits figure
    assert "No same-budget from-scratch run for crd_mbv3." in lifts

    papers = table_under(markdown, "## Against the papers' claims")
    by_student = {r[0]: r for r in papers[1:]}
    assert by_student["resnet18"][3:] == ["72.2 → 74.1 (linear, moco_r50 teacher)", "+1.9",
                                          "same"]
    assert by_student["efficientnet_b0"][3] == "not run"
    assert "resnet18, moco_r50 teacher: SEED gained 1.9 points of linear over moco" in markdown

    latency = table_under(markdown, "## Latency by architecture")
    assert latency[1:] == [["mobilenetv3_large_100", "-", "0.80 (0.75-0.90, n=3)"],
                           ["resnet18", "-", "0.90 (0.90-0.95, n=3)"],
                           ["resnet50", "-", "2.60 (2.60-2.60, n=1)"]]

    budget = table_under(markdown, "## Training budget")
    assert budget[1] == ["crd_mbv3", "mobilenetv3_large_100", "crd (CRD+KD+CE)", "20,000", "3",
                         "10.0", "33", "cpu-2core"]


def test_lift_and_baseline_by_hand(tmp_path):
    study = read_study(full_study(tmp_path))
    runs = {run.name: run for run in study.runs}
    assert baseline_of(runs["seed_r18"], study.runs) is runs["moco_r18"]
    assert baseline_of(runs["crd_mbv3"], study.runs) is None  # 20,000 images, not 30,000
    assert lift(runs["seed_mbv3"], runs["moco_mbv3"], "linear_top1") == pytest.approx(16.2)
    assert lift(runs["seed_mbv3"], runs["moco_mbv3"], "fewshot_1pct_top1") is None


def test_pareto_front_keeps_the_points_nothing_beats_fastest_first():
    points = [(1.0, 70.0), (2.0, 80.0), (1.5, 65.0), (3.0, 80.0), (0.5, 50.0), (2.0, 80.0),
              (1.0, 69.0)]
    # (1.5, 65) loses to (1, 70); (3, 80) to (2, 80); (1, 69) to (1, 70); equal points both stay.
    assert pareto_front(points) == [4, 0, 1, 5]
    assert pareto_front([(1.0, 60.0)]) == [0]


def test_the_training_log_is_placed_by_images_seen_and_a_cut_line_skipped(tmp_path):
    study = read_study(full_study(tmp_path))
    seed = next(run for run in study.runs if run.name == "seed_r18")
    log = training_log(seed)
    assert [r["images_seen"] for r in log] == [5000, 10000, 10000]  # epoch x 30,000 / 3
    assert training_log(next(run for run in study.runs if run.name == "moco_r18")) == []


def test_missing_optional_fields_leave_out_their_columns_and_plots(tmp_path):
    bare = {"name": "moco_r18", "architecture": "resnet18", "method": "moco",
            "label_fraction": 0, **BUDGET, "metrics": {"knn_top1@20": 0.7},
            "metrics_jsonl": "runs/gone/metrics.jsonl"}
    (tmp_path / "summary.json").write_text(json.dumps(
        {"schema": "seedzoo-study/1", "dataset": "digits", "rows": [bare]}))
    written = build_report(tmp_path)
    assert set(written) == {"markdown", "html", "student_bars"}
    markdown = written["markdown"].read_text()
    assert table_under(markdown, "### resnet18") == [
        ["method", "teacher", "labels", "k-NN@20"], ["moco", "-", "none", "70.0"]]
    assert "commit not recorded, machine: not recorded" in markdown
    assert "accuracy_latency.png" not in markdown and "training_curves.png" not in markdown


@pytest.mark.parametrize(("document", "message"), [
    ({"rows": []}, r"'schema' is None, not 'seedzoo-study/1'[\s\S]*'rows' is missing or empty"),
    (summary([row("a", "resnet18", "moco", 71.6, 0.7)]),
     r"rows\[0\] \(a\): 'metrics' \['knn_top1@20'\] is 71.6, not a fraction in \[0, 1\] "
     r"\(percent given\?"),
    (summary([row("a", "resnet18", "moco", 0.7, 0.7)] * 2), "the name 'a' is given to 2 rows"),
    (summary([{k: v for k, v in row("a", "resnet18", "moco", 0.7, 0.7).items()
               if k != "images_seen"}]), r"rows\[0\] \(a\): 'images_seen' is missing"),
    (summary([row("a", "resnet18", "moco", 0.7, 0.7, curve=[{"knn_top1@20": 0.5}])]),
     r"'curve' \[0\] has no positive images_seen"),
])
def test_a_malformed_summary_lists_what_is_wrong_and_what_to_do(tmp_path, document, message):
    (tmp_path / "summary.json").write_text(json.dumps(document))
    with pytest.raises(SeedzooError, match=message) as raised:
        read_study(tmp_path)
    assert "Regenerate it with `python benchmarks/reproduce.py`" in str(raised.value)


def test_unreadable_or_absent_summaries_say_so_on_the_command_line(tmp_path, capsys):
    assert main(["report", "--study", str(tmp_path)]) == 2
    assert "No study summary at" in capsys.readouterr().err
    (tmp_path / "summary.json").write_text("{not json")
    assert main(["report", "--study", str(tmp_path / "summary.json")]) == 2
    assert "is not valid JSON" in capsys.readouterr().err


def test_the_html_needs_no_other_file_nor_the_network(tmp_path):
    written = build_report(full_study(tmp_path))
    page = written["html"].read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.IGNORECASE)
    assert not re.search(r"url\(|@import|<link|<script", page, re.IGNORECASE)
    sources = re.findall(r'<img src="([^"]*)"', page)
    assert len(sources) == 3 and all(s.startswith("data:image/png;base64,") for s in sources)
    # the headline, 3 results, 2 lifts (resnet50 has its baseline alone), the papers' claims,
    # the label-free runs against pixels, latency by architecture, the budget
    assert page.count("<table>") == 10


def test_importing_and_building_the_report_imports_no_torch(tmp_path):
    code = ("import sys; from seedzoo.report import build_report\n"
            f"build_report({str(full_study(tmp_path))!r})\n"
            "assert 'torch' not in sys.modules, 'the report imported torch'")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


CHROMIUM = shutil.which("chromium")


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium (Debian package `chromium`) is "
                    "not installed; scripts/install.sh installs it")
def test_the_html_renders_its_tables_and_images_in_headless_chromium(tmp_path):
    page = build_report(full_study(tmp_path), tmp_path / "out")["html"]
    probe = tmp_path / "probe.html"  # the page, plus a script recording what the browser drew
    probe.write_text(page.read_text().replace("</body>", (
        "<script>addEventListener('load', () => { document.body.dataset.widths = "
        "Array.from(document.images, i => i.naturalWidth).join(','); "
        "document.body.dataset.rows = document.querySelectorAll('tbody tr').length; });"
        "</script></body>")))
    browser = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
               f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*browser, "--virtual-time-budget=5000", "--dump-dom", probe.as_uri()],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    widths = re.search(r'data-widths="([^"]*)"', dom).group(1).split(",")
    assert len(widths) == 3 and all(int(w) > 500 for w in widths)
    assert int(re.search(r'data-rows="(\d+)"', dom).group(1)) > 20

    shot = tmp_path / "shot.png"
    subprocess.run([*browser, f"--screenshot={shot}", "--window-size=1200,2000", page.as_uri()],
                   capture_output=True, timeout=60, check=True)
    image = Image.open(shot).convert("RGB")
    assert image.size == (1200, 2000)
    pixels = np.asarray(image).reshape(-1, 3).astype(int)
    inked = (pixels.min(axis=1) < 200).mean()  # text, rules, plots: not white
    coloured = (pixels.max(axis=1) - pixels.min(axis=1) > 80).mean()  # the plots' colours
    assert inked > 0.05 and coloured > 0.03, (inked, coloured)


def test_images_to_reach_extrapolates_the_log_linear_trend_by_hand():
    curve = [(1e3, 50.0), (1e4, 60.0), (1e5, 70.0)]          # +10 points per decade
    assert images_to_reach(curve, 15.0) == pytest.approx(1e5 * 10 ** 1.5)
    assert images_to_reach(curve[:2], 15.0) is None           # too few points to call a trend
    assert images_to_reach([(1e3, 60.0), (1e4, 60.0), (1e5, 59.0)], 5.0) is None   # not rising


def test_label_free_runs_below_pixels_get_the_images_their_trend_needs(tmp_path):
    curve = [{"images_seen": n, "knn_top1@20": v}
             for n, v in ((300, 0.50), (3000, 0.60), (30000, 0.70))]
    rising = row("simclr_r18", "resnet18", "simclr", 0.70, 0.72, curve=curve)
    labelled = row("sup_r18", "resnet18", "supervised", 0.90, 0.90, labels=1.0)
    path = tmp_path / "summary.json"
    path.write_text(json.dumps(summary([rising, labelled])))     # pixels 75.0
    markdown = build_report(path)["markdown"].read_text()
    heading = "## Label-free runs against raw pixels (k-NN@20 75.0)"
    assert table_under(markdown, heading)[1] == [
        "simclr_r18", "resnet18", "simclr", "70.0", "-5.0", "30,000", "~94,868"]  # 30,000 x 10^0.5
    against_pixels = markdown[markdown.index(heading):markdown.index("## Training budget")]
    assert "sup_r18" not in against_pixels


def test_a_label_free_run_above_pixels_is_named(tmp_path):
    path = tmp_path / "summary.json"
    path.write_text(json.dumps(summary([row("seed_r18", "resnet18", "seed", 0.80, 0.81)])))
    markdown = build_report(path)["markdown"].read_text()
    assert "Above raw pixels: seed_r18 80.0." in markdown


def test_the_headline_fills_the_readme_block_with_seeds_lift_and_the_targets(tmp_path):
    full_study(tmp_path / "study")
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- study -->\nold\n<!-- /study -->\nafter\n")
    written = build_report(tmp_path / "study", readme=readme)
    assert written["readme"] == readme
    text = readme.read_text()
    assert text.startswith("intro\n<!-- study -->\n") and text.endswith("<!-- /study -->\nafter\n")
    assert "old" not in text
    table = table_under(text, "<!-- study -->")
    assert table[0][:4] == ["student", "from scratch k-NN@20", "SEED k-NN@20", "SEED lift"]
    # Only architectures with a SEED run; seed_mbv3 67.8 - moco_mbv3 55.5 = +12.3.
    # latency: the median of the architecture's runs (0.9, 0.75, 0.8), not seed_mbv3's 0.75
    assert table[1] == ["mobilenetv3_large_100", "55.5", "67.8", "+12.3", "67.8: seed", "-",
                        "69.5: crd (CRD+KD+CE)", "-", "0.80"]
    assert table[2] == ["resnet18", "71.6", "73.8", "+2.2", "73.8: seed", "-", "82.5: kd",
                        "11.2", "0.90"]
    # The best label-free network, 73.8, against pixels' 75.0 k-NN@20; no linear for pixels.
    assert "Best linear top-1 without the full labels: seed_r18 (resnet18) 74.1." in text
    assert "Best label-free k-NN@20: seed_r18 (resnet18) 73.8, -1.2 points against raw pixels' " \
        "75.0." in text
    assert "![" in text and "(study/accuracy_latency.png)" in text
    assert "[study/report.md](study/report.md)" in text
    (tmp_path / "other.md").write_text("no markers\n")
    with pytest.raises(SeedzooError, match="<!-- study -->"):
        build_report(tmp_path / "study", readme=tmp_path / "other.md")


def test_a_cards_plot_rings_its_model(tmp_path):
    from seedzoo.report.figures import accuracy_latency

    study = read_study(full_study(tmp_path))
    ringed = accuracy_latency(study, tmp_path / "card.png", highlight="seed_r18")
    assert ringed.caption.endswith("ringed: seed_r18.") and Image.open(ringed.path).size[0] > 500
    plain = accuracy_latency(study, tmp_path / "plain.png", highlight="no_such_run")
    assert "ringed" not in plain.caption
