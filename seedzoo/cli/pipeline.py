"""`seedzoo pipeline`: train the runs of a pipeline (SimCLRv2: pretrain, fine-tune, distil) in
order, each resumable, rerunning only what is missing."""

from __future__ import annotations

from seedzoo.cli._arguments import add_command, output_folder


def register(subparsers) -> None:
    parser = add_command(
        subparsers, __name__, help="train a pipeline of runs (SimCLRv2: pretrain, fine-tune, "
        "distil)",
        description="Train the steps of a pipeline in order, each in OUT/<recipe name>, each "
        "reading the run folder of the step before it. Finished steps are skipped, interrupted "
        "ones resumed: run the same command again to continue. Steps shared by several "
        "pipelines (one pretraining for two label fractions) are trained once in a common OUT.")
    parser.add_argument("pipeline", help="the pipeline: simclrv2")
    parser.add_argument("recipes", nargs="+", metavar="RECIPE",
                        help="one recipe per step, in order (simclrv2: pretraining, "
                        "fine-tuning, distillation)")
    parser.add_argument("--out", metavar="DIR", type=output_folder, required=True,
                        help="the folder of the steps' run folders")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="[STEP.]KEY=VALUE",
                        help="override a recipe value of one step (finetune.train.epochs=5) or "
                        "of every step (data.workers=0); repeatable")
    parser.set_defaults(func=run)


def run(args) -> int:
    from seedzoo.training.pipeline import load_pipeline, run_pipeline

    summaries = run_pipeline(args.pipeline, load_pipeline(args.pipeline, args.recipes,
                                                          args.overrides), args.out)
    if summaries[-1]["finished"] and len(summaries) == len(args.recipes):
        exported = ", ".join(summaries[-1]["encoders"].values())
        print(f"Pipeline {args.pipeline} done; the last step exported: {exported}")
    return 0
