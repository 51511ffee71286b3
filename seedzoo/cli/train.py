"""`seedzoo train`: train an encoder from a YAML recipe (also under torchrun)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from seedzoo.cli._arguments import add_command, output_folder


def register(subparsers) -> None:
    parser = add_command(
        subparsers, __name__, help="train an encoder from a recipe (SEED, MoCo v2, SimCLR)",
        description="Train an encoder from a YAML recipe (see configs/). Several processes: "
        "torchrun --nproc-per-node N -m seedzoo train ...",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", metavar="FILE",
                        help="the recipe (optional with --resume: the run's config.yaml is used)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE",
                        help="override a recipe value, e.g. --set train.epochs=5 (YAML value; "
                        "repeatable)")
    parser.add_argument("--out", metavar="DIR", type=output_folder,
                        help="run folder (default: runs/<recipe name>)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out from its last checkpoint")
    parser.add_argument("--resume-from", metavar="CHECKPOINT",
                        help="continue the run in --out from this checkpoint instead (e.g. "
                        "its checkpoint.prev.pt, kept for when the last one went bad)")
    parser.set_defaults(func=run)


def run(args) -> int:
    from seedzoo.errors import SeedzooError
    from seedzoo.training.config import run_config
    from seedzoo.training.trainer import train

    if args.out is None and args.config is None:
        raise SeedzooError("Give --config FILE, or --out DIR --resume to continue a run.")
    run_dir = Path(args.out) if args.out else Path("runs") / Path(args.config).stem
    resume = args.resume or args.resume_from is not None
    config, changes = run_config(args.config, args.overrides, run_dir, resume=resume)
    main_process = os.environ.get("RANK", "0") == "0"  # torchrun starts one CLI per process
    if changes and main_process:
        print("Resuming with changed settings: " + "; ".join(changes))
    summary = train(config, run_dir, resume=args.resume, resume_from=args.resume_from)
    if summary["finished"] and main_process:
        exported = ", ".join(summary["encoders"].values())
        print(f"Trained {summary['steps']} steps in {summary['wall_time_s']:.0f} s "
              f"(final loss {summary['final_loss']:.4f}); exported: {exported}")
    return 0
