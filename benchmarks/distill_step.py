"""Overhead of SEED (or CRD) and the trainer over the networks they run.

ratio = (one SEED/CRD training step of the trainer) / (student forward+backward + teacher forward)

Both sides run in this process on the same batch, interleaved, and the medians are compared.
The step is ``Trainer.train_step`` itself: the method's forward (teacher and student, projection
head, soft cross-entropy against the queue, enqueue), the cross-process metric reduction and
loss check, backward, the optimiser and the schedule. The reference is the bare student forward
and backward plus the frozen teacher's forward, nothing else. The teacher distils its MoCo-v2
style 128-d projection, as SEED's reference code does (random weights: speed only).

``--method crd`` times a CRD step instead: the two linear embeddings, K negatives per anchor
gathered from both memory banks, the symmetric NCE loss and the banks' momentum update. The
banks have ``--bank-size`` rows (default ImageNet's 1,281,167: the benchmark enlarges the
method's banks after building it on the small digits set; the step's time depends on K, not on N)
and the teacher's pooled backbone features are embedded (no projection head).

    python benchmarks/distill_step.py [--method seed] [--teacher resnet50]
        [--student mobilenetv3_large_100] [--image-size 224] [--batch-size 32]
        [--queue-size 65536] [--nce-k 16384] [--bank-size 1281167] [--repeats 10] [--json FILE]

The defaults are the paper's setting (224 px, queue 65,536, 128-d teacher embedding). The
head and the queue cost the same at any resolution while the networks' cost grows with the
pixels, so at 32-64 px the ratio is larger: that is SEED's own cost, not the trainer's.

The last line is ``ratio: <value>`` (target: at most 1.15).
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


def build_trainer(args, folder: Path):
    from seedzoo.training import distributed
    from seedzoo.training.config import config_from_dict
    from seedzoo.training.trainer import Trainer

    teacher = {"source": str(moco_style_checkpoint(args.teacher, folder)), "arch": args.teacher}
    if args.method == "seed":
        method = {"name": "seed", "student": {"arch": args.student},
                  "teacher": {**teacher, "projection_head": True}, "queue_size": args.queue_size}
    else:  # built with a small K for the digits' bank, then given the benchmark's (below)
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
    parser.add_argument("--method", default="seed", choices=["seed", "crd"])
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

    with tempfile.TemporaryDirectory() as tmp:
        trainer, device = build_trainer(args, Path(tmp))
        method = trainer.method
        method.train()
        batch = next(iter(trainer.loader)).to(device)
        images = batch.views[0]
        autocast = torch.autocast(device.type, dtype=trainer.autocast_dtype,
                                  enabled=trainer.autocast_dtype is not None)

        def seed_step():
            trainer.train_step(batch)

        def networks():
            with autocast:
                with torch.no_grad():
                    method.teacher(images)
                method.encoder(images).float().sum().backward()
            method.encoder.zero_grad(set_to_none=True)

        for _ in range(args.warmup):
            seed_step()
            networks()
        step_times, network_times = [], []
        for _ in range(args.repeats):  # interleaved, so load changes hit both sides alike
            step_times.append(timed(seed_step, device))
            network_times.append(timed(networks, device))

    step, reference = statistics.median(step_times), statistics.median(network_times)
    result = {
        "method": args.method, "teacher": args.teacher, "student": args.student,
        "image_size": args.image_size,
        "batch_size": args.batch_size,
        **({"queue_size": args.queue_size} if args.method == "seed"
           else {"nce_k": args.nce_k, "bank_size": args.bank_size}),
        "precision": args.precision, "device": str(device),
        "threads": torch.get_num_threads(), "repeats": args.repeats,
        "seed_step_s": step, "networks_s": reference, "ratio": step / reference,
        "seed_step_times_s": step_times, "networks_times_s": network_times,
    }
    memory = (f"queue {args.queue_size}" if args.method == "seed"
              else f"K {args.nce_k}, bank {args.bank_size}")
    print(f"{args.method}: {args.teacher} -> {args.student}, {args.image_size} px, batch "
          f"{args.batch_size}, {memory}, {args.precision} on {device} "
          f"({torch.get_num_threads()} threads), medians of {args.repeats}:")
    print(f"  {args.method.upper()} training step                       {step * 1e3:9.1f} ms  "
          f"({args.batch_size / step:.0f} img/s)")
    print(f"  student fwd+bwd + teacher fwd            {reference * 1e3:9.1f} ms  "
          f"({args.batch_size / reference:.0f} img/s)")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    print(f"ratio: {result['ratio']:.3f}")
    return result


if __name__ == "__main__":
    main()
