"""Overhead of SEED (or CRD) and the trainer over the networks they run.

ratio = (one SEED/CRD training step of the trainer) / (student forward+backward + teacher forward)

Both sides run in this process on the same batch, interleaved, and the medians are compared.
The step is ``Trainer.train_step`` itself: the method's forward (teacher and student, projection
head, soft cross-entropy against the queue, enqueue), the cross-process metric reduction and
loss check, backward, the optimiser and the schedule. The reference is the bare student forward
and backward plus the frozen teacher's forward, nothing else. The teacher distils its MoCo-v2
style 128-d projection, as SEED's reference code does (random weights: speed only).

``--method crd`` times a CRD step instead: the two linear embeddings, K negatives per anchor
gathered from both memory banks, the symmetric NCE loss and the banks' momentum update; a third
timing is that memory work alone (negatives, gathers, scores, NCE and its backward), so the
report shows what the networks, CRD's contrast and the rest of the step each take. The
banks have ``--bank-size`` rows (default ImageNet's 1,281,167: the benchmark enlarges the
method's banks after building it on the small digits set; the step's time depends on K, not on N)
and the teacher's pooled backbone features are embedded (no projection head).

    python benchmarks/distill_step.py [--method seed|kd|crd|dogo] [--teacher resnet50]
        [--student mobilenetv3_large_100] [--image-size 224] [--batch-size 32]
        [--queue-size 65536] [--nce-k 16384] [--bank-size 1281167] [--repeats 10] [--json FILE]

The defaults are the paper's setting (224 px, queue 65,536, 128-d teacher embedding). The
head and the queue cost the same at any resolution while the networks' cost grows with the
pixels, so at 32-64 px the ratio is larger: that is SEED's own cost, not the trainer's.

With ``--method kd`` the step is KD's (Hinton): the teacher's encoder and classifier give
logits (random weights, saved as a supervised run exports them: speed only), the student's
encoder and linear classifier are trained on the KL at temperature 4 plus the cross-entropy;
the reference is the bare student (encoder + classifier) forward and backward plus the teacher's
forward. ``--queue-size`` does not apply.

The last line is ``ratio: <value>`` (target: at most 1.15).

``--method dogo`` times DoGo instead (``--teacher`` and ``--student`` are its two peers, trained
together from scratch):

ratio = (one DoGo training step of the trainer) / (the sum of each peer's own SimCLR step)

on the same batch of two SimCLR views, each side a full ``Trainer.train_step`` (same heads,
optimiser and schedule), so the ratio is what DoGo adds to training the peers separately: the
N x N similarity matrices and their KL terms (target: at most 1.10). ``--queue-size`` is unused.

``--method esvit`` times EsViT's step from ``--recipe`` (default the Fashion-MNIST micro Swin;
its views and heads, on digits, ``--batch-size`` images) against the bare backbones: the
student's forward and backward over every view and the teacher's forward over the two global
views. The difference is the two DINO heads (view level and on every region token), the region
matching, the losses, the centres and the teacher's EMA (target: at most 1.3).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch


def moco_style_checkpoint(arch: str, folder: Path) -> Path:
    """A random ``arch`` backbone with a 2048-2048-128 MLP head, saved as MoCo v2 saves them."""
    from seedzoo.zoo.pretrained import create_encoder

    backbone = create_encoder(arch)
    width = backbone.num_features
    head = torch.nn.Sequential(torch.nn.Linear(width, 2048), torch.nn.ReLU(),
                               torch.nn.Linear(2048, 128))
    state = {f"module.encoder_q.{k}": v for k, v in backbone.state_dict().items()}
    state.update({f"module.encoder_q.fc.{k}": v for k, v in head.state_dict().items()})
    path = folder / f"moco_v2_{arch}.pth.tar"
    torch.save({"arch": arch, "epoch": 200, "state_dict": state}, path)
    return path


def classifier_teacher(arch: str, folder: Path, num_classes: int) -> Path:
    """A random ``arch`` encoder with a linear classifier, saved as a supervised run exports it."""
    from seedzoo.zoo.pretrained import create_encoder, save_classifier, save_pretrained

    encoder = create_encoder(arch)
    path = save_pretrained(encoder, folder / f"supervised_{arch}")
    save_classifier(torch.nn.Linear(encoder.num_features, num_classes), path)
    return path


def build_trainer(args, folder: Path):
    from seedzoo.training import distributed
    from seedzoo.training.config import config_from_dict
    from seedzoo.training.trainer import Trainer

    if args.method == "kd":
        method = {"name": "kd", "student": {"arch": args.student},
                  "teacher": str(classifier_teacher(args.teacher, folder, num_classes=10))}
        teacher = None
    else:
        teacher = {"source": str(moco_style_checkpoint(args.teacher, folder)),
                   "arch": args.teacher}
    if args.method == "seed":
        method = {"name": "seed", "student": {"arch": args.student},
                  "teacher": {**teacher, "projection_head": True}, "queue_size": args.queue_size}
    elif args.method == "crd":  # built with a small K for the digits' bank, then given the
        # benchmark's (below)
        method = {"name": "crd", "student": {"arch": args.student}, "teacher": teacher,
                  "nce_k": 16}
    config = config_from_dict({
        "method": method,
        "data": {"dataset": "digits", "image_size": args.image_size,
                 "batch_size": args.batch_size, "workers": 0},
        "train": {"epochs": 1, "precision": args.precision},
    })
    device = distributed.init_from_env(use_cuda=torch.cuda.is_available())
    trainer = Trainer(config, folder / "run", device)
    if args.method == "crd":
        from seedzoo.training.methods.crd import initial_bank

        crd = trainer.method
        dim = crd.student_bank.shape[1]
        crd.student_bank = initial_bank(args.bank_size, dim).to(device)  # buffers, replaced
        crd.teacher_bank = initial_bank(args.bank_size, dim).to(device)
        crd.nce_k = args.nce_k
    return trainer, device


def build_dogo_trainers(args, folder: Path):
    """The DoGo trainer and one SimCLR trainer per peer, on the same data settings."""
    from seedzoo.training import distributed
    from seedzoo.training.config import config_from_dict
    from seedzoo.training.trainer import Trainer

    data = {"dataset": "digits", "image_size": args.image_size, "batch_size": args.batch_size,
            "workers": 0, "views": "simclr"}
    train = {"epochs": 1, "precision": args.precision, "optimizer": "adamw", "lr": 3e-4,
             "weight_decay": 1e-6}
    device = distributed.init_from_env(use_cuda=torch.cuda.is_available())
    peers = [args.student, args.teacher]
    dogo = Trainer(config_from_dict({
        "method": {"name": "dogo", "peers": peers, "peer_weights": [100, 1]},
        "data": data, "train": train}), folder / "dogo", device)
    simclr = [Trainer(config_from_dict({"method": {"name": "simclr", "encoder": arch},
                                        "data": data, "train": train}),
                      folder / f"simclr{i}", device)
              for i, arch in enumerate(peers)]
    return dogo, simclr, device


def run_dogo(args) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        dogo, simclr, device = build_dogo_trainers(args, Path(tmp))
        for trainer in (dogo, *simclr):
            trainer.method.train()
        batch = next(iter(dogo.loader)).to(device, memory_format=dogo.memory_format)

        def dogo_step():
            dogo.train_step(batch)

        def simclr_steps():
            for trainer in simclr:
                trainer.train_step(batch)

        step_times, reference_times = interleaved(dogo_step, simclr_steps, device=device, args=args)

    step, reference = statistics.median(step_times), statistics.median(reference_times)
    result = {
        "method": "dogo", "peers": [args.student, args.teacher], "image_size": args.image_size,
        "batch_size": args.batch_size, "precision": args.precision, "device": str(device),
        "threads": torch.get_num_threads(), "repeats": args.repeats,
        "dogo_step_s": step, "simclr_steps_s": reference, "ratio": step / reference,
        "dogo_step_times_s": step_times, "simclr_steps_times_s": reference_times,
    }
    return report(result, args, f"DoGo peers {args.student} + {args.teacher}",
                  ("DoGo training step", step), ("each peer's own SimCLR step, summed", reference))


def run_esvit(args) -> dict:
    """EsViT's training step against its networks' bare work: the student backbone's forward
    and backward over every view (one pass per run of same-size views, as the method batches
    them) and the teacher backbone's forward over the two global views."""
    from seedzoo.training import distributed
    from seedzoo.training.config import load_config
    from seedzoo.training.trainer import Trainer

    config = load_config(args.recipe, [
        "data.dataset=digits", f"data.batch_size={args.batch_size}", "data.workers=0",
        "data.limit=null", "train.epochs=1", f"train.precision={args.precision}",
        "train.knn_monitor.every_epochs=0"])
    args.image_size = config.data.image_size
    device = distributed.init_from_env(use_cuda=torch.cuda.is_available())
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(config, Path(tmp) / "run", device)
        method = trainer.method.train()
        batch = next(iter(trainer.loader)).to(device, memory_format=trainer.memory_format)
        views = batch.views
        groups = [[v for v in views if v.shape == shape]
                  for shape in dict.fromkeys(v.shape for v in views)]

        def esvit_step():
            trainer.train_step(batch)

        def networks():
            with torch.no_grad():
                method.teacher.backbone(torch.cat(views[:2]))
            sum(method.student.backbone(torch.cat(group)).float().sum()
                for group in groups).backward()
            method.zero_grad(set_to_none=True)

        step_times, network_times = interleaved(esvit_step, networks, device=device, args=args)

    step, reference = statistics.median(step_times), statistics.median(network_times)
    result = {
        "method": "esvit", "recipe": args.recipe,
        "arch": config.method_options["encoder"]["arch"], "views": len(views),
        "image_size": args.image_size, "batch_size": args.batch_size,
        "precision": args.precision, "device": str(device), "threads": torch.get_num_threads(),
        "repeats": args.repeats, "esvit_step_s": step, "networks_s": reference,
        "ratio": step / reference, "esvit_step_times_s": step_times,
        "networks_times_s": network_times,
    }
    return report(result, args, f"esvit: {args.recipe} ({len(views)} views)",
                  ("EsViT training step", step),
                  ("student fwd+bwd + teacher fwd (backbones)", reference))


def bare_networks(teacher: torch.nn.Module, student: torch.nn.Module, images: torch.Tensor,
                  autocast):
    """The networks' bare work on ``images``: the teacher's forward without gradient, the
    student's forward and backward (of the sum of its outputs); the gradients are then dropped."""
    def networks():
        with autocast:
            with torch.no_grad():
                teacher(images)
            student(images).float().sum().backward()
        student.zero_grad(set_to_none=True)

    return networks


def crd_contrast(method, indices: torch.Tensor, device: torch.device):
    """CRD's memory work alone, as its forward does it: K negatives per anchor drawn, both banks'
    rows gathered, the scores, both NCE terms and their backward to the two embeddings."""
    from torch.nn import functional as F

    from seedzoo.training.methods.crd import contrast_scores, nce_criterion, sample_negatives

    size, dim = method.student_bank.shape

    def contrast():
        anchors = [F.normalize(torch.randn(len(indices), dim, device=device), dim=1)
                   .requires_grad_() for _ in range(2)]
        candidates = torch.cat([indices[:, None],
                                sample_negatives(indices, size, method.nce_k)], 1)
        loss = sum(nce_criterion(contrast_scores(anchor, bank[candidates],
                                                 temperature=method.nce_t) / size, size)
                   for anchor, bank in zip(anchors, (method.teacher_bank, method.student_bank),
                                           strict=True))
        loss.backward()

    return contrast


def interleaved(*functions, device: torch.device, args) -> list[list[float]]:
    """Seconds of ``args.repeats`` calls of each function, after ``args.warmup`` untimed ones,
    taking turns so that load changes hit every side alike."""
    for _ in range(args.warmup):
        for function in functions:
            function()
    times = [[] for _ in functions]
    for _ in range(args.repeats):
        for function, measured in zip(functions, times, strict=True):
            measured.append(timed(function, device))
    return times


def report(result: dict, args, heading: str, *lines: tuple[str, float]) -> dict:
    """Print the measured medians side by side, write ``--json``, end with ``ratio:``."""
    print(f"{heading}, {args.image_size} px, batch {args.batch_size}, {result['precision']} on "
          f"{result['device']} ({result['threads']} threads), medians of {args.repeats}:")
    for label, seconds in lines:
        print(f"  {label:<40} {seconds * 1e3:9.1f} ms  ({args.batch_size / seconds:.0f} img/s)")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    print(f"ratio: {result['ratio']:.3f}")
    return result


def timed(fn, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--method", default="seed", choices=["seed", "kd", "crd", "dogo", "esvit"])
    parser.add_argument("--recipe", default="configs/fmnist/esvit/swin_micro.yaml",
                        help="EsViT's recipe (its network, views and heads; data: digits)")
    parser.add_argument("--teacher", default="resnet50")
    parser.add_argument("--student", default="mobilenetv3_large_100")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--queue-size", type=int, default=65536)
    parser.add_argument("--nce-k", type=int, default=16384, help="CRD's negatives per anchor")
    parser.add_argument("--bank-size", type=int, default=1281167, help="CRD's bank rows")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--json", help="also write the measurements to this file")
    args = parser.parse_args(argv)
    if args.method == "dogo":
        return run_dogo(args)
    if args.method == "esvit":
        return run_esvit(args)

    with tempfile.TemporaryDirectory() as tmp:
        trainer, device = build_trainer(args, Path(tmp))
        method = trainer.method
        method.train()
        batch = next(iter(trainer.loader)).to(device, memory_format=trainer.memory_format)
        images = batch.views[0]
        autocast = torch.autocast(device.type, dtype=trainer.autocast_dtype,
                                  enabled=trainer.autocast_dtype is not None)

        def seed_step():
            trainer.train_step(batch)

        teacher, student = method.teacher, method.encoder
        if args.method == "kd":
            teacher = torch.nn.Sequential(teacher, method.teacher_classifier)
            student = torch.nn.Sequential(student, method.classifier)

        sides = [seed_step, bare_networks(teacher, student, images, autocast)]
        if args.method == "crd":
            sides.append(crd_contrast(method, batch.indices.to(device), device))
        step_times, network_times, *contrast_times = interleaved(*sides, device=device,
                                                                 args=args)

    step, reference = statistics.median(step_times), statistics.median(network_times)
    contrast = [("CRD contrast alone (banks, NCE, backward)", statistics.median(contrast_times[0]))
                ] if contrast_times else []
    result = {
        "method": args.method, "teacher": args.teacher, "student": args.student,
        "image_size": args.image_size,
        "batch_size": args.batch_size,
        **({"nce_k": args.nce_k, "bank_size": args.bank_size} if args.method == "crd"
           else {"queue_size": args.queue_size}),
        "precision": args.precision, "device": str(device),
        "threads": torch.get_num_threads(), "repeats": args.repeats,
        "seed_step_s": step, "networks_s": reference, "ratio": step / reference,
        "seed_step_times_s": step_times, "networks_times_s": network_times,
        **({"contrast_s": contrast[0][1], "contrast_times_s": contrast_times[0]}
           if contrast else {}),
    }
    memory = (f"K {args.nce_k}, bank {args.bank_size}" if args.method == "crd"
              else f"queue {args.queue_size}")
    return report(result, args, f"{args.method}: {args.teacher} -> {args.student}, {memory}",
                  (f"{args.method.upper()} training step", step),
                  ("student fwd+bwd + teacher fwd", reference), *contrast)


if __name__ == "__main__":
    main()
