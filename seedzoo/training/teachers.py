"""Teacher backbones from wherever practitioners keep them."""

from __future__ import annotations

import warnings
from pathlib import Path

from torch import nn

from seedzoo.errors import CheckpointError, ModelNotFoundError, SeedzooError
from seedzoo.zoo.checkpoint_formats import LoadReport, projection_head, read_checkpoint
from seedzoo.zoo.layout import CLASSIFIER_WEIGHTS_NAME, CONFIG_NAME, network_folders
from seedzoo.zoo.loading import load, load_weights_file
from seedzoo.zoo.pretrained import (
    check_classifier_fits,
    create_encoder,
    has_classifier,
    load_classifier,
)

#: The run kinds (methods) whose exported encoder folders keep a classifier.
CLASSIFIER_RUNS = ("supervised", "kd", "finetune", "simclrv2_distill")


def _listed(names: tuple[str, ...], conjunction: str) -> str:
    """``a, b, c or d``."""
    return f"{', '.join(names[:-1])} {conjunction} {names[-1]}"


def teacher_spec(teacher: dict | str, method: str,
                 keys: tuple[str, ...] = ("source", "arch", "network", "model_args")) -> dict:
    """The recipe's ``method.teacher`` as a dict: a source alone, or a dict of ``keys`` that
    has ``source``, whose ``model_args`` (extra ``timm.create_model`` arguments of a weights
    file's architecture) are a mapping; anything else is a clear error naming the keys
    ``method`` takes."""
    if isinstance(teacher, str):
        teacher = {"source": teacher}
    if not isinstance(teacher, dict) or "source" not in teacher or set(teacher) - set(keys):
        got = sorted(teacher) if isinstance(teacher, dict) else repr(teacher)
        raise SeedzooError(f"{method}'s method.teacher is a source or {{{', '.join(keys)}}}, "
                           f"got {got}.")
    if not isinstance(teacher.get("model_args", {}), dict):
        raise SeedzooError(f"{method}'s method.teacher.model_args are timm.create_model "
                           "arguments of the teacher's architecture, a mapping such as "
                           f"{{window_size: 7, img_size: 224}}; got {teacher['model_args']!r}.")
    return teacher


def _pick_network(source: str, network: str | None) -> str:
    """``source`` itself, or its network folder ``source/<network>``; a run folder holding
    several networks without ``network`` is a clear error naming them."""
    path = Path(source).expanduser()
    if network is not None:
        if not path.is_dir():
            raise ModelNotFoundError(f"The teacher network {network!r} names a network folder of "
                                     f"a run folder, but {source} is not a folder.")
        names = [folder.name for folder in network_folders(path)]
        if network not in names:
            listed = ", ".join(names) or "none"
            raise ModelNotFoundError(f"The run folder {source} has no network {network!r}; its "
                                     f"networks: {listed}.")
        return str(path / network)
    if path.is_dir() and not (path / CONFIG_NAME).is_file():
        found = network_folders(path)
        if len(found) > 1:
            names = ", ".join(folder.name for folder in found)
            raise ModelNotFoundError(
                f"The teacher {source} is a run folder with several networks ({names}); pick one: "
                f"teacher network: {found[0].name} in the recipe, or the source "
                f"{path / found[0].name}.")
    return source


def load_backbone(source: str, arch: str | None = None, network: str | None = None,
                  model_args: dict | None = None) -> tuple[nn.Module, LoadReport]:
    """A timm backbone (``num_classes=0``, eval mode) and the report of what was loaded.

    ``source`` is one of:

    - ``timm:<arch>``: the architecture with random weights (a warning says so; for tests);
    - a folder in the timm/Hub layout, or a Hub id: loaded through :func:`seedzoo.zoo.load`;
    - a run folder: its ``encoder/``, or with ``network`` the network folder of that name (a run
      that trains several networks writes one folder each; without ``network`` it is an error
      naming them);
    - a checkpoint file in any layout of :mod:`seedzoo.zoo.checkpoint_formats` (MoCo, SimCLR, SwAV,
      DINO, EsViT, SEED, torchvision, timm, Swin's original; ``.pth`` read with
      ``weights_only=True``), with ``arch`` (and ``model_args``, extra ``timm.create_model``
      arguments, where the weights need them, e.g. ``{"window_size": 14}``).

    A checkpoint that does not fill the whole backbone raises ``CheckpointError`` listing the
    missing and unexpected keys; heads and momentum encoders are skipped and reported.
    """
    source = _pick_network(source, network)
    if source.startswith("timm:"):
        name = source[len("timm:"):]
        warnings.warn(f"Teacher {source} has random weights: it teaches nothing useful. Give a "
                      "trained model folder, hub id or checkpoint file.", stacklevel=2)
        model = create_encoder(name, **(model_args or {}))
        return model.eval(), LoadReport(source, "random initialisation")
    path = Path(source).expanduser()
    if path.is_file():
        if arch is None:
            raise ModelNotFoundError(f"{source} is a checkpoint file; give its architecture "
                                     "(teacher arch, e.g. resnet50).")
        model = load_weights_file(path, arch, model_args)
        return model.eval(), model.load_report
    model = load(source, model_args=model_args)
    found = model.pretrained_cfg.get("architecture")
    if arch is not None and found != arch:
        raise ModelNotFoundError(f"The teacher {source} is a {found}, but the recipe says arch "
                                 f"{arch}; fix method.teacher.arch (or leave it out: a folder or "
                                 "hub model names its own architecture).")
    return model.eval(), LoadReport(source, "seedzoo/timm folder or hub",
                                    loaded=list(model.state_dict()))


def load_projection_head(source: str) -> nn.Sequential:
    """The MLP projection head saved beside the backbone in checkpoint file ``source``.

    MoCo v2 (``encoder_q.fc``), SwAV (``projection_head``) and seedzoo training checkpoints
    (``head``) carry one; exported encoder folders do not.
    """
    if not Path(source).expanduser().is_file():
        raise CheckpointError(f"A projection head is read from a checkpoint file; {source} is not "
                              "one (exported encoders keep no head).")
    return projection_head(read_checkpoint(Path(source).expanduser()), source=source)


def load_classifier_teacher(source: str, arch: str | None = None, network: str | None = None,
                            num_classes: int | None = None, model_args: dict | None = None
                            ) -> tuple[nn.Module, nn.Module, LoadReport]:
    """A teacher that gives logits: its backbone (as :func:`load_backbone`), the classifier kept
    beside it (an ``nn.Linear`` or an :class:`~seedzoo.zoo.pretrained.MLPClassifier`; eval mode;
    class names as ``classifier.classes``) and the load report.

    ``source`` is an encoder folder or run folder written by a run that trains a classifier
    (:data:`CLASSIFIER_RUNS`), with ``network`` as in :func:`load_backbone`. Anything else (a
    checkpoint file, a hub id, ``timm:``, a folder of a self-supervised run) has no classifier:
    a clear error; so is a classifier of other than ``num_classes`` classes (when given: the
    training data's).
    """
    picked = _pick_network(source, network)
    path = Path(picked).expanduser()
    if not path.is_dir():
        raise ModelNotFoundError(
            f"The teacher {source} must give logits, which only an encoder folder written by a "
            f"{_listed(CLASSIFIER_RUNS, 'or')} run holds ({CLASSIFIER_WEIGHTS_NAME} beside the "
            "encoder); it is not a folder. Train a `supervised` run first and give its run "
            "folder.")
    folders = [path] if (path / CONFIG_NAME).is_file() else network_folders(path)
    folder = folders[0] if len(folders) == 1 else path  # none: load_backbone says why
    backbone, report = load_backbone(str(folder), arch, model_args=model_args)
    if not has_classifier(folder):
        raise ModelNotFoundError(
            f"The teacher {source} gives no logits: {folder} holds an encoder but no classifier "
            f"({CLASSIFIER_WEIGHTS_NAME}). Only {_listed(CLASSIFIER_RUNS, 'and')} runs export "
            "one; train a `supervised` run first and give its run folder as the teacher.")
    classifier = load_classifier(folder)
    check_classifier_fits(backbone, classifier, str(folder))
    if num_classes and classifier.out_features != num_classes:
        raise SeedzooError(
            f"The teacher {source} classifies {classifier.out_features} classes, but the training "
            f"data has {num_classes}; distil on the data set the teacher was trained on (or one "
            "with the same classes).")
    report.loaded = [*report.loaded, *(f"classifier.{k}" for k in classifier.state_dict())]
    return backbone, classifier, report
