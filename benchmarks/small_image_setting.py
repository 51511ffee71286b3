"""What a small-image setting costs and gains for the study's students at 32 px.

    python benchmarks/small_image_setting.py
        [--students efficientnet_b0,mobilenetv3_large_100,resnet18] [--train resnet18]
        [--train-settings plain,output_stride=16,output_stride=8]
        [--teacher runs/study/teacher_simclrv2_resnet50/encoder] [--limit 10000] [--epochs 2]
        [--runs-dir runs/small_image] [--json benchmarks/results/small_image_setting.json]

timm's networks shrink a 32 px image to 1x1 (ResNet, EfficientNet, MobileNet: stride 32). Two
ways keep more of it: ``model_args`` that timm itself rebuilds from ``config.json``
(``output_stride`` 16 or 8: the last stages dilated instead of strided), and seedzoo's
``small_stem`` (3x3 stride-1 stem, no max-pool), which plain timm cannot load. For each student
and setting this prints parameters, FLOPs at 32 px, the encoder's forward+backward images/s at
batch 128 against the plain network (interleaved), and whether ``timm.create_model("local-dir:")``
rebuilds the saved folder with the same outputs. With ``--train``, those students are distilled
with SEED from the study's teacher at a short budget per setting and evaluated by k-NN top-1 @20
on the 20,000 / 5,000 subsets; each training resumes, a finished one is skipped.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import torch
from reproduce import execute, params_and_flops

from seedzoo.provenance import source_commit
from seedzoo.results import write_report

SETTINGS = {
    "plain": {},
    "output_stride=16": {"model_args": {"output_stride": 16}},
    "output_stride=8": {"model_args": {"output_stride": 8}},
    "small_stem": {"small_stem": True},
}
RECIPE = "configs/fmnist/seed/resnet50_to_resnet18.yaml"
INPUT_SIZE = (3, 32, 32)


def build(student: str, setting: str):
    """The student's encoder in ``setting``, or the reason timm cannot build it."""
    from seedzoo.training.encoder_specs import build_encoder

    try:
        return build_encoder({"arch": student, **SETTINGS[setting]}), None
    except TypeError as error:  # e.g. MobileNetV3 takes no output_stride
        return None, str(error)


def plain_timm_rebuilds(model) -> str:
    """Whether plain timm rebuilds the saved folder with the same outputs: 'yes', or why not."""
    import timm

    from seedzoo.zoo.pretrained import save_pretrained

    images = torch.randn(2, *INPUT_SIZE)
    with tempfile.TemporaryDirectory(prefix="seedzoo-small-image-") as tmp:
        folder = save_pretrained(model.eval(), Path(tmp) / "encoder")
        try:
            rebuilt = timm.create_model(f"local-dir:{folder}", pretrained=True).eval()
        except Exception as error:  # the reason is the measurement
            return f"no: {type(error).__name__}: {str(error).splitlines()[0][:120]}"
        with torch.inference_mode():
            same = torch.allclose(model(images), rebuilt(images), atol=1e-5)
    return "yes" if same else "no: the rebuilt network's features differ"


def step_images_per_s(models: dict, batch_size: int, budget_s: float) -> dict:
    """Median images/s of each model's forward+backward on one channels-last batch."""
    from seedzoo.deploy.latency import time_interleaved

    images = torch.randn(batch_size, *INPUT_SIZE).to(memory_format=torch.channels_last)

    def step(model):
        def run():
            model(images).sum().backward()
            model.zero_grad(set_to_none=True)
        return run

    runners = {name: step(model.train().to(memory_format=torch.channels_last))
               for name, model in models.items()}
    samples = time_interleaved(runners, budget_s=budget_s, min_iterations=3, warmup_s=0.0)
    return {name: batch_size / statistics.median(seconds) for name, seconds in samples.items()}


def train_and_evaluate(student: str, setting: str, args) -> dict:
    """SEED from ``args.teacher`` into ``student`` in ``setting``: k-NN top-1 @20, wall time."""
    folder = args.runs_dir / f"{student}_{setting.replace('=', '')}"
    overrides = [f"method.student={json.dumps({'arch': student, **SETTINGS[setting]})}",
                 f"method.teacher.source={args.teacher}", f"data.limit={args.limit}",
                 f"train.epochs={args.epochs}"]
    command = ["seedzoo", "train", "--config", RECIPE, "--out", folder.as_posix()]
    for override in overrides:
        command += ["--set", override]
    if not (folder / "summary.json").exists():
        execute(command + (["--resume"] if (folder / "checkpoint.pt").exists() else []))
    evaluation = folder / "eval_knn.json"
    if not evaluation.exists():
        execute(["seedzoo", "eval", "--model", (folder / "encoder").as_posix(),
                 "--dataset", "fashion-mnist", "--protocol", "knn", "--knn-k", "20",
                 "--limit-train", "20000", "--limit-test", "5000", "--quiet",
                 "--out", evaluation.as_posix()])
    summary = json.loads((folder / "summary.json").read_text())
    return {"knn_top1@20": json.loads(evaluation.read_text())["metrics"]["knn_top1@20"],
            "train_wall_s": summary["wall_time_s"], "command": " ".join(command)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", default="efficientnet_b0,mobilenetv3_large_100,resnet18")
    parser.add_argument("--train", default="", help="students to distil in each setting")
    parser.add_argument("--train-settings", default="plain,output_stride=16,output_stride=8")
    parser.add_argument("--teacher", default="runs/study/teacher_simclrv2_resnet50/encoder")
    parser.add_argument("--limit", type=int, default=10000, help="training images")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--runs-dir", type=Path, default=Path("runs/small_image"))
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--budget-s", type=float, default=20.0, help="timing seconds per student")
    parser.add_argument("--json", type=Path,
                        default=Path("benchmarks/results/small_image_setting.json"))
    args = parser.parse_args(argv)
    unknown = set(args.train_settings.split(",")) - set(SETTINGS)
    if unknown:
        parser.error(f"unknown settings {sorted(unknown)}; choose among {sorted(SETTINGS)}")

    rows = []
    print(f"{'student':<24}{'setting':<18}{'params':>9}{'MFLOPs':>9}{'step x':>8}"
          f"{'knn@20':>8}  plain timm rebuilds")
    for student in args.students.split(","):
        built = {setting: build(student, setting) for setting in SETTINGS}
        models = {setting: model for setting, (model, _) in built.items() if model is not None}
        speed = step_images_per_s(models, args.batch_size, args.budget_s)
        for setting, (model, problem) in built.items():
            row = {"student": student, "setting": setting, **SETTINGS[setting]}
            if model is None:
                rows.append({**row, "unavailable": problem})
                print(f"{student:<24}{setting:<18}  not available: {problem}")
                continue
            row |= params_and_flops(model, INPUT_SIZE)
            row |= {"step_images_per_s": speed[setting],
                    "step_speed_vs_plain": speed[setting] / speed["plain"],
                    "plain_timm_rebuilds": plain_timm_rebuilds(model)}
            if student in args.train.split(",") and setting in args.train_settings.split(","):
                row |= train_and_evaluate(student, setting, args)
            rows.append(row)
            knn = f"{row['knn_top1@20'] * 100:.1f}" if "knn_top1@20" in row else "-"
            print(f"{student:<24}{setting:<18}{row['params'] / 1e6:>8.1f}M"
                  f"{row['flops'] / 1e6:>9.0f}{row['step_speed_vs_plain']:>8.2f}{knn:>8}  "
                  f"{row['plain_timm_rebuilds']}")
    from seedzoo.deploy.latency import machine_info

    result = {"benchmark": "small_image_setting", "commit": source_commit(),
              "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
              "machine": machine_info(), "threads": torch.get_num_threads(),
              "input_size": list(INPUT_SIZE), "batch_size": args.batch_size,
              "training": {"recipe": RECIPE, "teacher": args.teacher, "limit": args.limit,
                           "epochs": args.epochs} if args.train else None,
              "rows": rows}
    write_report(result, args.json)
    print(f"Wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
