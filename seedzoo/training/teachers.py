"""Teacher backbones from wherever practitioners keep them."""

from __future__ import annotations

import warnings
from pathlib import Path

from torch import nn

from seedzoo.errors import CheckpointError, ModelNotFoundError
from seedzoo.zoo.checkpoint_formats import LoadReport, projection_head, read_checkpoint
from seedzoo.zoo.loading import load, load_weights_file
from seedzoo.zoo.pretrained import create_encoder


def load_backbone(source: str, arch: str | None = None) -> tuple[nn.Module, LoadReport]:
    """A timm backbone (``num_classes=0``, eval mode) and the report of what was loaded.

    ``source`` is one of:

    - ``timm:<arch>``: the architecture with random weights (a warning says so; for tests);
    - a folder in the timm/Hub layout, or a Hub id: loaded through :func:`seedzoo.zoo.load`;
    - a checkpoint file in any layout of :mod:`seedzoo.zoo.checkpoint_formats` (MoCo, SimCLR, SwAV,
      DINO, SEED, torchvision, timm; ``.pth`` read with ``weights_only=True``), with ``arch``.

    A checkpoint that does not fill the whole backbone raises ``CheckpointError`` listing the
    missing and unexpected keys; heads and momentum encoders are skipped and reported.
    """
    if source.startswith("timm:"):
        name = source[len("timm:"):]
        warnings.warn(f"Teacher {source} has random weights: it teaches nothing useful. Give a "
                      "trained model folder, hub id or checkpoint file.", stacklevel=2)
        model = create_encoder(name)
        return model.eval(), LoadReport(source, "random initialisation")
    path = Path(source).expanduser()
    if path.is_file():
        if arch is None:
            raise ModelNotFoundError(f"{source} is a checkpoint file; give its architecture "
                                     "(teacher arch, e.g. resnet50).")
        model = load_weights_file(path, arch)
        return model.eval(), model.load_report
    model = load(source)
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
