"""The trainer's SEED step against its networks' bare work, per student (issue 16).

For each student, at the distillation study's setting (``--recipe``, default
configs/fmnist/seed/resnet50_to_resnet18.yaml with the student replaced: 32 px, batch 128, the
ResNet-50 teacher's pooled features, queue 4,096, SGD; random weights, digits images: speed
only), three sides are timed on the same batch, interleaved (``distill_step.interleaved``):

- the trainer: the loop's per-step work, the batch moved to the trainer's layout
  (``train.channels_last``, default on) and ``Trainer.train_step`` (teacher and student forward,
  head, loss against the queue, enqueue, metric reduction, loss check, backward, SGD, schedule);
- SEED alone: the method's forward (teacher, student, head, loss against the queue) and
  backward, without the trainer (no optimiser, no metric reduction);
- the bare networks in channels-last and in contiguous layout: the teacher's forward and the
  student encoder's forward and backward (``distill_step.bare_networks``), on images already
  in that layout.

Each student's block ends with ``trainer / fastest bare`` (target: at least 0.9) and splits the
difference into SEED's own work (SEED alone - fastest bare: the head, the scores against the
queue and their backward) and the trainer's (trainer - SEED alone: the optimiser, the metrics,
the batch's layout); the last lines repeat the ratio per student. The data loader's
augmentation is not timed (it runs in workers).

    python benchmarks/trainer_speed.py [--students efficientnet_b0,mobilenetv3_large_100,resnet18]
        [--recipe configs/fmnist/seed/resnet50_to_resnet18.yaml] [--teacher resnet50]
        [--repeats 10] [--warmup 2] [--json FILE]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import tempfile
from contextlib import nullcontext
from pathlib import Path

import torch
from distill_step import bare_networks, interleaved

from seedzoo.provenance import source_commit

STUDENTS = "efficientnet_b0,mobilenetv3_large_100,resnet18"


def random_teacher_folder(arch: str, folder: Path) -> Path:
    """A random ``arch`` encoder saved as a run exports it (the recipe's teacher source)."""
    from seedzoo.zoo.pretrained import create_encoder, save_pretrained

    return save_pretrained(create_encoder(arch), folder / f"teacher_{arch}")


def contiguous_copy(module: torch.nn.Module) -> torch.nn.Module:
    return copy.deepcopy(module).to(memory_format=torch.contiguous_format)


def time_student(student: str, teacher: Path, args) -> dict:
    from seedzoo.training import distributed
    from seedzoo.training.config import load_config
    from seedzoo.training.trainer import Trainer

    config = load_config(args.recipe, [
        f"method.student.arch={student}", f"method.teacher.source={teacher}",
        "data.dataset=digits", "data.limit=null", "data.workers=0", "train.epochs=1",
        "train.knn_monitor.every_epochs=0"])
    device = distributed.init_from_env(use_cuda=torch.cuda.is_available())
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(config, Path(tmp) / "run", device)
        method = trainer.method.train()
        batch = next(iter(trainer.loader))  # as collated: contiguous, on the CPU
        autocast = (torch.autocast(device.type, dtype=trainer.autocast_dtype)
                    if trainer.autocast_dtype is not None else nullcontext())

        def trainer_step():
            trainer.train_step(batch.to(device, non_blocking=True,
                                        memory_format=trainer.memory_format))

        moved = batch.to(device, memory_format=trainer.memory_format)

        def seed_alone():
            with autocast:
                loss = method(moved)["loss"]
            loss.backward()
            method.finish_step()
            method.zero_grad(set_to_none=True)

        images = batch.views[0].to(device)
        sides = {
            "trainer": trainer_step,
            "seed_alone": seed_alone,
            "bare_channels_last": bare_networks(
                method.teacher, method.encoder,
                images.contiguous(memory_format=torch.channels_last), autocast),
            "bare_contiguous": bare_networks(
                contiguous_copy(method.teacher), contiguous_copy(method.encoder),
                images.contiguous(), autocast),
        }
        times = dict(zip(sides, interleaved(*sides.values(), device=device, args=args),
                         strict=True))
    medians = {side: statistics.median(seconds) for side, seconds in times.items()}
    fastest = min(("bare_channels_last", "bare_contiguous"), key=medians.get)
    batch_size = config.data.batch_size
    return {
        "student": student, "teacher": args.teacher, "image_size": config.data.image_size,
        "batch_size": batch_size, "channels_last": config.train.channels_last,
        "precision": config.train.precision, "device": str(device),
        "images_per_s": {side: batch_size / seconds for side, seconds in medians.items()},
        "fastest_bare": fastest, "ratio": medians[fastest] / medians["trainer"],
        "median_s": medians, "times_s": times,
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--students", default=STUDENTS, help="comma-separated timm archs")
    parser.add_argument("--recipe", default="configs/fmnist/seed/resnet50_to_resnet18.yaml",
                        help="the SEED recipe (its student is replaced; data: digits)")
    parser.add_argument("--teacher", default="resnet50")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--json", help="also write the measurements to this file")
    args = parser.parse_args(argv)
    run = {"command": " ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])]),
           "commit": source_commit(), "load_average_before": os.getloadavg(),
           "threads": torch.get_num_threads(), "recipe": args.recipe,
           "repeats": args.repeats, "students": []}
    print(f"commit {run['commit']}, load average before {run['load_average_before']}, "
          f"{run['threads']} threads, medians of {args.repeats}")
    with tempfile.TemporaryDirectory() as tmp:
        teacher = random_teacher_folder(args.teacher, Path(tmp))
        for student in args.students.split(","):
            result = time_student(student, teacher, args)
            run["students"].append(result)
            print(f"{student} <- {args.teacher}, SEED, {result['image_size']} px, batch "
                  f"{result['batch_size']}, {result['precision']} on {result['device']}:")
            median = result["median_s"]
            for side, label in (("trainer", "trainer step (batch to its layout + train_step)"),
                                ("seed_alone", "SEED alone (forward + backward)"),
                                ("bare_channels_last", "bare networks, channels-last"),
                                ("bare_contiguous", "bare networks, contiguous")):
                print(f"  {label:<48} {median[side] * 1e3:8.1f} ms  "
                      f"({result['images_per_s'][side]:.0f} img/s)")
            print(f"  trainer / fastest bare: {result['ratio']:.3f}; of the difference, SEED's "
                  f"own work {(median['seed_alone'] - median[result['fastest_bare']]) * 1e3:.0f}"
                  f" ms, the trainer's {(median['trainer'] - median['seed_alone']) * 1e3:.0f} ms")
    for result in run["students"]:
        speeds = result["images_per_s"]
        print(f"{result['student']}: trainer {speeds['trainer']:.0f} img/s, fastest bare "
              f"{speeds[result['fastest_bare']]:.0f} img/s "
              f"({result['fastest_bare'].removeprefix('bare_').replace('_', '-')}), "
              f"ratio {result['ratio']:.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps(run, indent=2) + "\n")
    return run


if __name__ == "__main__":
    main()
