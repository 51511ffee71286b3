"""`seedzoo embed`: features of a folder of images, one row per image file."""

from __future__ import annotations

import argparse
import os

from seedzoo.cli._arguments import (
    LibraryDefault,
    add_command,
    non_negative_int,
    output_file,
    positive_int,
)
from seedzoo.cli._encoders import MODEL_SPECS, add_encoder_arguments, load_encoder_from

_EMBED = "seedzoo.evaluation.embedding:embed_folder"

DESCRIPTION = """\
Compute an encoder's features for every image file under a folder (class subfolders, as an
ImageFolder, or none; searched recursively, sorted by path), with the encoder's own
preprocessing, in batches. Writes one row per image with its path relative to the folder:
.npz (numpy: np.load(f)["features"], ["paths"]) or .csv (pandas.read_csv: a path column, then
f0, f1, ...)."""

EPILOG = MODEL_SPECS + """

examples:
  seedzoo embed --model runs/fmnist/student/encoder photos/ --out feats.npz
  seedzoo embed --model hf-hub:org/seedzoo-mobilenetv3 photos/ --out feats.csv
  seedzoo embed --onnx student.onnx photos/ --out feats.npz --threads 2
"""


def register(subparsers) -> None:
    parser = add_command(
        subparsers, __name__, help="features of a folder of images, one row per file",
        description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", metavar="FOLDER", help="folder of images (subfolders too)")
    parser.add_argument("--out", required=True, metavar="FILE", type=output_file,
                        help="where to write the rows: a .npz or .csv file (atomically)")
    add_encoder_arguments(parser.add_argument_group("the encoder"), "to embed with")
    running = parser.add_argument_group("how to run")
    running.add_argument("--batch-size", type=positive_int,
                         default=LibraryDefault(_EMBED, "batch_size"),
                         help="images per forward pass (default %(default)s)")
    running.add_argument("--workers", type=non_negative_int, default=min(4, os.cpu_count() or 1),
                         metavar="N", help="data-loading worker processes (default: min(4, CPUs))")
    running.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args) -> int:
    from seedzoo.evaluation.embedding import check_format, embed_folder, write_embeddings

    check_format(args.out)
    model, _, config = load_encoder_from(args)
    device = "cpu" if config["backend"] == "onnxruntime" else args.device
    paths, features = embed_folder(model, args.folder, batch_size=args.batch_size,
                                   num_workers=args.workers, device=device,
                                   progress=not args.quiet)
    written = write_embeddings(args.out, paths, features)
    print(f"{len(paths)} images x {features.shape[1]} features written to {written}")
    return 0
