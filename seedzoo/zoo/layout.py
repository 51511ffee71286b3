"""File names of seedzoo's on-disk formats: the encoder folder, the hub repo and the run folder.

Every module that reads or writes one of these files takes the name from here, so the trainer
that writes a run folder and the zoo code that reads it cannot drift apart.

An encoder folder (timm's Hugging Face layout)::

    config.json         architecture, num_features, global_pool, model_args, pretrained_cfg
    model.safetensors   the encoder's weights, no heads
    README.md           the model card (optional; published with the folder)
    classifier.safetensors  a linear classifier on the encoder's features ("weight", "bias"),
                        written by runs that train one (supervised, kd); not published
    classifier.json     {"num_classes", "in_features", "classes"} of that classifier

A run folder (written by ``seedzoo train``)::

    config.yaml         the resolved recipe
    checkpoint.pt       the last checkpoint: {"method": <the method's state_dict>, "optimizer",
                        "scheduler", "scaler", "rng", "progress", "config"}
    checkpoint.prev.pt  the checkpoint before it (a way back when the last one went bad)
    .lock               held by the process training in the folder
    metrics.jsonl       one JSON row per log interval and per epoch
    encoder/            the trained encoder (an encoder folder), at the end; a method that
                        trains several networks writes one folder each, <name>/
    summary.json        configuration, wall time, steps, final loss, package versions
"""

from __future__ import annotations

import os
from pathlib import Path

from seedzoo.errors import ModelNotFoundError

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
CARD_NAME = "README.md"
HUB_FILES = (CONFIG_NAME, WEIGHTS_NAME, CARD_NAME)
# A classifier head kept beside an encoder (not published: the hub repo is the encoder alone).
CLASSIFIER_WEIGHTS_NAME = "classifier.safetensors"
CLASSIFIER_CONFIG_NAME = "classifier.json"

RUN_CONFIG_NAME = "config.yaml"
CHECKPOINT_NAME = "checkpoint.pt"
PREVIOUS_CHECKPOINT_NAME = "checkpoint.prev.pt"
LOCK_NAME = ".lock"
METRICS_NAME = "metrics.jsonl"
SUMMARY_NAME = "summary.json"
ENCODER_DIR = "encoder"
# The checkpoint entry holding the method's state dict (its encoder under "encoder.").
CHECKPOINT_METHOD_KEY = "method"


def encoder_folder(folder_or_run: str | os.PathLike) -> Path:
    """The encoder folder (``config.json`` + ``model.safetensors``) in a folder or a run folder."""
    path = Path(folder_or_run)
    if path.is_file():
        holder = f" ({path.parent})" if (path.parent / CONFIG_NAME).is_file() else ""
        raise ModelNotFoundError(f"{path} is a file: give the encoder folder that holds "
                                 f"{CONFIG_NAME} and {WEIGHTS_NAME}{holder}, or its run folder.")
    if not path.is_dir():
        raise ModelNotFoundError(f"{path} does not exist.")
    if (path / CONFIG_NAME).is_file():
        return path
    found = network_folders(path)
    if len(found) == 1:
        return found[0]
    if found:
        names = ", ".join(p.name for p in found)
        raise ModelNotFoundError(
            f"{path} is a run folder with several networks ({names}): give the one you mean as "
            f"its folder, e.g. {path / found[0].name}.")
    raise ModelNotFoundError(
        f"{path} is neither an encoder folder ({CONFIG_NAME} + {WEIGHTS_NAME}) nor a run folder "
        f"with such a subfolder (found none). Save one with seedzoo.save_pretrained.")


def network_folders(run: str | os.PathLike) -> list[Path]:
    """The encoder folders directly inside ``run`` (a run folder: ``encoder/``, or one per
    network of a method that trains several), sorted by name."""
    return sorted(config.parent for config in Path(run).glob(f"*/{CONFIG_NAME}")
                  if (config.parent / WEIGHTS_NAME).is_file())
