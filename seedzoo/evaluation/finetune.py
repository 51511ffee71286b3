"""Fine-tuning as an evaluation protocol: the whole encoder and a linear classifier trained on
class-balanced fractions of the training labels, then scored on the test split.

The label subsets are the few-shot probes' (:func:`seedzoo.data.subsets.class_balanced_indices`
of the training set as evaluated, with the same seed): ``finetune_1pct_top1`` and
``fewshot_1pct_top1`` train on the same images. Each fraction starts again from the encoder's
weights (the model passed in is never changed).

How the SimCLRv2 paper fine-tunes (ImageNet; the ``google-research/simclr`` command for 1% of
the labels): LARS, learning rate 0.005 * sqrt(batch) = 0.16 at batch 1024, no warm-up, weight
decay 0, 60 epochs on 1% and 30 on 10% of the labels; only random crops (inception style) and
horizontal flips, no colour distortion; BatchNorm in training mode with statistics synced across
accelerators (global BN); the logits layer zero-initialised, on top of the first layer of the
projection head for 1% / 10% (seedzoo's encoders are exported without it, so here it sits on
the pooled features).

Here: Nesterov SGD (momentum 0.9), cosine schedule without warm-up, weight decay 0, the same
augmentation (``augment=False`` turns it off), BatchNorm in training mode (one process, so
nothing to sync); CPU-sized defaults: batch 64, 5 epochs with at least ``min_steps`` steps, so
the 1% subsets also get a few dozen updates. The classifier starts from the few-shot linear
probe fitted on the same images' frozen features (``head_init="probe"``, LP-FT: Kumar et al.,
2022, "Fine-Tuning can Distort Pretrained Features"): fine-tuning begins where the probe
ends, and the features are not distorted while a classifier is learnt from zeros (a zero
head, ``"zeros"`` as in the paper, scored below the frozen probe at these step counts).
"""

from __future__ import annotations

import copy
import math
import random
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Subset

from seedzoo.data.datasets import dataset_classes, dataset_labels, get_dataset
from seedzoo.data.subsets import (
    class_balanced_indices,
    fraction_label,
    indices_digest,
    subset_indices,
)
from seedzoo.data.transforms import transform_for
from seedzoo.deploy.runtime import OrtEncoder
from seedzoo.devices import resolve_device
from seedzoo.errors import SeedzooError
from seedzoo.evaluation.classifier import classifier_scores
from seedzoo.evaluation.features import (
    FeatureCache,
    MemoryFeatureCache,
    dataset_features,
    default_device,
)
from seedzoo.evaluation.linear import LinearProbe
from seedzoo.evaluation.pixels import PixelEncoder
from seedzoo.zoo.pretrained import EncoderClassifier, feature_dim

DEFAULT_FRACTIONS = (0.01, 0.1, 1.0)
HEAD_INITS = ("probe", "zeros")


@dataclass(frozen=True)
class FineTuneOptions:
    """How each fraction is fine-tuned (see the module docstring; recorded in the results).

    ``epochs`` over the label subset, at least ``min_steps`` optimiser steps in all; ``lr``
    is the peak learning rate (cosine-annealed to 0); ``fractions`` are the label fractions in
    (0, 1], each class-balanced; ``head_init`` is where the classifier starts: ``"probe"`` (the
    linear probe of the frozen features of the same images) or ``"zeros"``.
    """

    epochs: int = 5
    min_steps: int = 50
    batch_size: int = 64
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 0.0
    augment: bool = True
    fractions: Sequence[float] = DEFAULT_FRACTIONS
    head_init: str = "probe"

    def __post_init__(self):
        checks = [(self.epochs >= 1, "epochs", "at least 1"),
                  (self.min_steps >= 0, "min_steps", "at least 0"),
                  (self.batch_size >= 1, "batch_size", "at least 1"),
                  (math.isfinite(self.lr) and self.lr > 0, "lr", "a finite number > 0"),
                  (0 <= self.momentum < 1, "momentum", "in [0, 1)"),
                  (math.isfinite(self.weight_decay) and self.weight_decay >= 0, "weight_decay",
                   "a finite number >= 0"),
                  (len(self.fractions) > 0 and all(0 < f <= 1 for f in self.fractions),
                   "fractions", "a non-empty list of label fractions in (0, 1]"),
                  (self.head_init in HEAD_INITS, "head_init", f"one of {', '.join(HEAD_INITS)}")]
        for valid, name, requirement in checks:
            if not valid:
                raise SeedzooError(f"The fine-tuning option {name} must be {requirement}, got "
                                   f"{getattr(self, name)}.")
        object.__setattr__(self, "fractions", tuple(sorted(set(map(float, self.fractions)))))


def check_finetunable(model) -> None:
    """A :class:`SeedzooError` unless ``model`` is a torch encoder with weights to train."""
    if isinstance(model, OrtEncoder):
        raise SeedzooError(f"{model.path} is an ONNX file: a fixed graph, with no weights to "
                           "fine-tune. Fine-tune the torch model it was exported from (--model "
                           "<encoder folder, hub id or timm:<arch>>), or score the file with "
                           "the frozen protocols (knn, linear, fewshot).")
    if isinstance(model, PixelEncoder):
        raise SeedzooError("pixels (the raw-pixel baseline) has no weights to fine-tune; give it "
                           "the frozen protocols (knn, linear, fewshot) and fine-tune an encoder.")
    if not (isinstance(model, nn.Module) and isinstance(getattr(model, "pretrained_cfg", None),
                                                        dict)
            and hasattr(model, "num_features") and any(True for _ in model.parameters())):
        raise SeedzooError(f"{type(model).__name__} is not a timm encoder with weights; "
                           "fine-tuning needs one (what seedzoo.load returns).")


@contextmanager
def _seeded(seed: int, device: torch.device):
    """Python's and torch's random generators seeded inside the block, restored after it (the
    augmentation draws from both)."""
    state = random.getstate()
    devices = [device.index or 0] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices):
            random.seed(seed)
            torch.manual_seed(seed)
            yield
    finally:
        random.setstate(state)


def probe_head(probe: LinearProbe, num_classes: int) -> nn.Linear:
    """A fitted probe as a linear layer on the raw features: its standardisation folded into
    the weights; classes it never saw get zero rows."""
    weight = probe.coef_ / probe.scale_
    head = nn.Linear(weight.shape[1], num_classes)
    with torch.no_grad():
        head.weight.zero_()
        head.bias.zero_()
        rows = torch.as_tensor(probe.classes_.astype("int64"))
        head.weight[rows] = weight.cpu()
        head.bias[rows] = (probe.intercept_ - weight @ probe.mean_).cpu()
    return head


def fine_tune(encoder: nn.Module, images, num_classes: int, *, head: nn.Linear | None = None,
              options: FineTuneOptions = FineTuneOptions(), seed: int = 0, device=None,
              num_workers: int = 0, progress: bool = True, desc: str = "finetune"
              ) -> tuple[EncoderClassifier, dict]:
    """A copy of ``encoder`` and a linear classifier (a copy of ``head``; zero-initialised when
    None), trained together on ``images`` (a dataset of ``(tensor, label)``) with cross-entropy;
    ``encoder`` and ``head`` are left as they were. Returns the network in eval mode and
    ``{"steps", "final_loss"}``. The same ``seed`` gives the same network (up to float rounding
    that can differ between processes and grows over many steps; on the same device
    and thread count).
    """
    from tqdm.auto import tqdm

    device = resolve_device(device) if device is not None else default_device(encoder)
    with _seeded(seed, device):
        if head is None:
            head = nn.Linear(feature_dim(encoder), num_classes)
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)
        model = EncoderClassifier(copy.deepcopy(encoder).requires_grad_(True),
                                  copy.deepcopy(head).requires_grad_(True))
        if model.num_classes != num_classes:
            raise SeedzooError(f"The classifier to start from has {model.num_classes} outputs; "
                               f"the images have {num_classes} classes.")
        model.to(device).train()
        batch_size = min(options.batch_size, len(images))
        loader = DataLoader(images, batch_size=batch_size, shuffle=True,
                            drop_last=len(images) > batch_size,  # no odd last batch for BN
                            generator=torch.Generator().manual_seed(seed),
                            num_workers=num_workers, persistent_workers=num_workers > 0,
                            pin_memory=device.type == "cuda")
        steps = max(options.epochs * len(loader), options.min_steps)
        optimizer = torch.optim.SGD(model.parameters(), lr=options.lr, momentum=options.momentum,
                                    nesterov=options.momentum > 0,
                                    weight_decay=options.weight_decay)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
        step, loss = 0, torch.zeros(())
        with tqdm(total=steps, desc=desc, unit="step", dynamic_ncols=True,
                  disable=not progress) as bar:
            while step < steps:
                for batch, labels in loader:
                    logits = model(batch.to(device, non_blocking=True))
                    loss = F.cross_entropy(logits, labels.to(device, non_blocking=True))
                    if not torch.isfinite(loss):
                        raise SeedzooError(f"{desc}: the loss is {loss.item()} at step {step + 1} "
                                           f"of {steps}; lower the learning rate (now "
                                           f"{options.lr:g}).")
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    schedule.step()
                    step += 1
                    bar.update()
                    bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
                    if step == steps:
                        break
    return model.eval(), {"steps": steps, "final_loss": loss.item()}


def finetune_scores(model: nn.Module, dataset: str, *, spec: str,
                    options: FineTuneOptions = FineTuneOptions(), root=None, seed: int = 0,
                    limit_train: int | None = None, limit_test: int | None = None,
                    probe_options: dict | None = None,
                    cache: FeatureCache | MemoryFeatureCache | None = None,
                    fingerprint: str | None = None, batch_size: int = 256,
                    num_workers: int = 0, device=None, progress: bool = True
                    ) -> tuple[dict, dict]:
    """Fine-tune ``model`` on each label fraction of ``options`` and score it on the test split.

    ``limit_train`` / ``limit_test`` are the seeded subsets of ``--limit-train`` /
    ``--limit-test``; ``probe_options`` go to the :class:`LinearProbe` that starts the
    classifier (``head_init="probe"``: the few-shot probe, on frozen features from ``cache``
    when given, keyed by the weights' ``fingerprint``); ``batch_size`` is for extraction and
    scoring. Returns ``(metrics, settings)``: metrics ``finetune_<fraction>_top1`` / ``_top5``
    (``finetune_1pct_top1``, ...), settings the options and, per fraction, its training-set size,
    steps, last loss, the subset's digest and the probe's weight decay.
    """
    check_finetunable(model)
    probe_options = {"seed": seed, **(probe_options or {})}
    LinearProbe(**probe_options)  # checks the options before any work
    extraction = {"batch_size": batch_size, "num_workers": num_workers, "device": device,
                  "progress": progress}
    transform = transform_for(model, augment=options.augment)
    data = get_dataset(dataset, "train", root=root, transform=transform)
    classes, labels = dataset_classes(data), dataset_labels(data)
    limited = subset_indices(len(data), limit_train, seed)
    if limited is not None:
        data, labels = Subset(data, limited.tolist()), labels[limited]
    num_classes = len(classes) or int(labels.max()) + 1
    if options.head_init == "probe":
        frozen, _ = dataset_features(model, dataset, "train", spec=spec, root=root,
                                     limit=limit_train, seed=seed, cache=cache,
                                     fingerprint=fingerprint, **extraction)
    metrics = {}
    settings = {**asdict(options), "fractions": list(options.fractions),
                "optimizer": "sgd (nesterov)" if options.momentum > 0 else "sgd",
                "schedule": "cosine, no warm-up", "classifier_init": options.head_init,
                "batchnorm": "batch statistics (train mode)", "transform": repr(transform),
                "train_size": len(labels)}
    for fraction in options.fractions:
        name = fraction_label(fraction)
        subset = class_balanced_indices(labels, fraction, seed)
        head, start = None, {}
        if options.head_init == "probe":
            probe = LinearProbe(**probe_options).fit(frozen[torch.as_tensor(subset)],
                                                     labels[subset])
            head, start = probe_head(probe, num_classes), {"probe_weight_decay":
                                                           probe.weight_decay_}
        tuned, trained = fine_tune(model, Subset(data, subset.tolist()), num_classes, head=head,
                                   options=options, seed=seed, device=device,
                                   num_workers=num_workers, progress=progress,
                                   desc=f"finetune {name}")
        scores = classifier_scores(tuned, dataset, spec=spec, root=root, limit=limit_test,
                                   seed=seed, **extraction, desc=f"finetune {name} test")
        metrics[f"finetune_{name}_top1"] = scores["top1"]
        metrics[f"finetune_{name}_top5"] = scores["top5"]
        settings[name] = {"fraction": fraction, "train_size": len(subset), **trained, **start,
                          "subset_sha256": indices_digest(subset)}
        settings["test_size"] = scores["test_size"]
    return metrics, settings
