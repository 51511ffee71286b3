"""`seedzoo eval`: measure an encoder on a downstream dataset (frozen features, fine-tuning, its
own classifier)."""

from __future__ import annotations

import argparse
import os

from seedzoo.cli._arguments import (
    LibraryDefault,
    add_command,
    fraction_list,
    non_negative_float,
    non_negative_float_list,
    non_negative_int,
    output_file,
    positive_float,
    positive_int,
    positive_int_list,
)
from seedzoo.cli._encoders import MODEL_SPECS, add_encoder_arguments, load_encoder_from

DESCRIPTION = """\
Evaluate an encoder on a dataset's test split, training only on its train split. On frozen
features (the default protocols): weighted k-NN (cosine, exp(sim/T) votes; several k at once),
a linear probe (logistic regression on standardised features, weight decay chosen on held-out
training data) and few-shot linear probes on class-balanced 1% and 10% subsets; features are
extracted once and cached on disk. Asked for by name: finetune (the whole encoder and a linear
classifier trained on class-balanced 1%, 10% and 100% of the labels, the few-shot subsets) and
classifier (the classifier a supervised or kd run keeps beside its encoder, or an ONNX file
exported with it). Prints a table; --out writes the results as JSON (metrics + full
configuration + package versions)."""

_EVALUATE = "seedzoo.evaluation.protocols:evaluate"
_PROBE = "seedzoo.evaluation.linear:LinearProbe"
_FINETUNE = "seedzoo.evaluation.finetune:FineTuneOptions"

EPILOG = MODEL_SPECS + """
datasets: fashion-mnist, mnist, cifar10, cifar100, stl10, digits, imagefolder:<path>.

examples:
  seedzoo eval --model pixels --dataset fashion-mnist --protocol knn
  seedzoo eval --model timm:resnet18 --dataset digits --out results/r18-digits.json
  seedzoo eval --model student/ --dataset cifar10 --data-root ~/data --protocol knn,linear
  seedzoo eval --backend onnxruntime --onnx student.onnx --dataset fashion-mnist
  seedzoo eval --model student/ --dataset fashion-mnist --protocol finetune --finetune-epochs 2
  seedzoo eval --model runs/supervised/encoder --dataset fashion-mnist --protocol classifier
"""


def register(subparsers) -> None:
    parser = add_command(
        subparsers, __name__, help="k-NN, linear-probe and few-shot accuracy of a frozen encoder",
        description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_encoder_arguments(parser.add_argument_group("the encoder"), "to evaluate")
    what = parser.add_argument_group("what to evaluate")
    what.add_argument("--dataset", required=True, metavar="NAME",
                      help="downstream dataset (see datasets below)")
    what.add_argument("--data-root", metavar="DIR",
                      help="folder holding torchvision-style datasets "
                           "(default: $SEEDZOO_DATA_ROOT or ./data)")
    what.add_argument("--protocol", default=LibraryDefault(_EVALUATE, "protocols"),
                      metavar="LIST", help="comma-separated protocols among knn, linear, "
                                           "fewshot, finetune, classifier (default: "
                                           "%(default)s)")
    what.add_argument("--limit-train", type=positive_int, metavar="N",
                      help="use a seeded random subset of N training images (quick runs)")
    what.add_argument("--limit-test", type=positive_int, metavar="N",
                      help="use a seeded random subset of N test images (quick runs)")
    what.add_argument("--seed", type=int, default=LibraryDefault(_EVALUATE, "seed"),
                      help="seed of subsets, held-out splits, probe training and "
                           "fine-tuning (default %(default)s)")

    running = parser.add_argument_group("how to run")
    running.add_argument("--batch-size", type=positive_int,
                         default=LibraryDefault(_EVALUATE, "batch_size"),
                         help="images per forward pass (default %(default)s)")
    running.add_argument("--workers", type=non_negative_int, default=min(4, os.cpu_count() or 1),
                         metavar="N",
                         help="data-loading worker processes (default: min(4, CPUs))")
    running.add_argument("--cache-dir", metavar="DIR",
                         help="feature cache folder (default: $SEEDZOO_CACHE/features or "
                         "~/.cache/seedzoo/features)")
    running.add_argument("--no-cache", action="store_true",
                         help="extract features afresh and do not store them")
    running.add_argument("--quiet", action="store_true", help="no progress bars")

    knn = parser.add_argument_group("k-NN")
    knn.add_argument("--knn-k", type=positive_int_list("k values"),
                     default=LibraryDefault(_EVALUATE, "ks"), metavar="LIST",
                     help="neighbour counts, all scored from one search (default %(default)s)")
    knn.add_argument("--knn-temperature", type=positive_float,
                     default=LibraryDefault(_EVALUATE, "temperature"), metavar="T",
                     help="vote weight exp(similarity / T) (default %(default)s)")
    knn.add_argument("--knn-weights", choices=("distance", "uniform"),
                     default=LibraryDefault(_EVALUATE, "knn_weights"),
                     help="distance: exp(sim/T) votes; uniform: majority vote "
                          "(default %(default)s)")

    probe = parser.add_argument_group("linear probe and few-shot")
    probe.add_argument("--probe-epochs", type=positive_int,
                       default=LibraryDefault(_PROBE, "epochs"), metavar="N",
                       help="SGD epochs over the training features (default %(default)s)")
    probe.add_argument("--probe-lr", type=positive_float, default=LibraryDefault(_PROBE, "lr"),
                       metavar="LR",
                       help="peak learning rate, cosine-annealed to zero (default %(default)s)")
    probe.add_argument("--probe-min-steps", type=positive_int,
                       default=LibraryDefault(_PROBE, "min_steps"), metavar="N",
                       help="at least this many SGD steps, so small (few-shot) sets converge "
                            "(default %(default)s)")
    probe.add_argument("--weight-decays", type=non_negative_float_list,
                       default=LibraryDefault(_PROBE, "weight_decays"), metavar="LIST",
                       help="weight-decay grid, chosen on held-out training features "
                            "(default %(default)s)")

    finetune = parser.add_argument_group(
        "fine-tuning (--protocol finetune; the SimCLRv2 paper's settings: "
        "docs/reference.md#evaluate)")
    finetune.add_argument("--finetune-fractions", type=fraction_list,
                          default=LibraryDefault(_FINETUNE, "fractions"), metavar="LIST",
                          help="label fractions, class-balanced (default %(default)s)")
    finetune.add_argument("--finetune-epochs", type=positive_int,
                          default=LibraryDefault(_FINETUNE, "epochs"), metavar="N",
                          help="epochs over each label subset (default %(default)s)")
    finetune.add_argument("--finetune-min-steps", type=non_negative_int,
                          default=LibraryDefault(_FINETUNE, "min_steps"), metavar="N",
                          help="at least this many SGD steps per fraction (default %(default)s)")
    finetune.add_argument("--finetune-lr", type=positive_float,
                          default=LibraryDefault(_FINETUNE, "lr"), metavar="LR",
                          help="peak learning rate of Nesterov SGD, cosine-annealed to zero "
                               "(default %(default)s)")
    finetune.add_argument("--finetune-batch-size", type=positive_int,
                          default=LibraryDefault(_FINETUNE, "batch_size"), metavar="N",
                          help="images per SGD step (default %(default)s)")
    finetune.add_argument("--finetune-weight-decay", type=non_negative_float,
                          default=LibraryDefault(_FINETUNE, "weight_decay"), metavar="WD",
                          help="weight decay (default %(default)s)")
    finetune.add_argument("--finetune-head-init", choices=("probe", "zeros"),
                          default=LibraryDefault(_FINETUNE, "head_init"),
                          help="where the classifier starts: the linear probe of the frozen "
                               "features of the same images (LP-FT) or zeros, as the SimCLRv2 "
                               "paper (default %(default)s)")
    finetune.add_argument("--no-finetune-augment", dest="finetune_augment",
                          action="store_false",
                          help="train on the evaluation transform instead of random resized "
                               "crops and flips")

    parser.add_argument("--out", metavar="FILE", type=output_file,
                        help="write the results JSON here (atomically)")
    parser.set_defaults(func=run)


def run(args) -> int:
    from seedzoo.evaluation.protocols import evaluate, parse_protocols
    from seedzoo.results import format_report, write_report

    protocols = parse_protocols(args.protocol)
    model, spec, config = load_encoder_from(args)
    probe_options = {"epochs": args.probe_epochs, "lr": args.probe_lr,
                     "min_steps": args.probe_min_steps, "weight_decays": args.weight_decays}
    finetune_options = {"fractions": args.finetune_fractions, "epochs": args.finetune_epochs,
                        "min_steps": args.finetune_min_steps, "lr": args.finetune_lr,
                        "batch_size": args.finetune_batch_size,
                        "weight_decay": args.finetune_weight_decay,
                        "augment": args.finetune_augment,
                        "head_init": args.finetune_head_init}
    device = "cpu" if config["backend"] == "onnxruntime" else args.device
    report = evaluate(
        model, args.dataset, spec=spec, protocols=protocols, root=args.data_root,
        seed=args.seed, ks=args.knn_k, temperature=args.knn_temperature,
        knn_weights=args.knn_weights, probe_options=probe_options,
        finetune_options=finetune_options,
        limit_train=args.limit_train, limit_test=args.limit_test, cache_dir=args.cache_dir,
        use_cache=not args.no_cache, batch_size=args.batch_size, num_workers=args.workers,
        device=device, progress=not args.quiet, config=config)
    print(format_report(report))
    if args.out:
        print(f"results written to {write_report(report, args.out)}")
    return 0
