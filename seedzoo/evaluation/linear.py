"""Linear probe on frozen features: multinomial logistic regression trained with torch.

Features are standardised (per-dimension mean and std of the training features: BatchNorm
without affine, frozen), and a linear classifier is trained with Nesterov SGD and a cosine
learning-rate schedule. The weight decay comes from a small grid, chosen on a class-balanced
held-out part of the *training* features (never the test split); the probe is then refit on
all training features with the chosen value. The whole grid trains in one pass, as a batch
of classifiers sharing every mini-batch.

Few-shot evaluation is the same probe on a class-balanced, seeded fraction of the training
labels (:func:`seedzoo.data.subsets.class_balanced_indices`).

    probe = LinearProbe().fit(train_features, train_labels)
    probe.score(test_features, test_labels)          # top-1 accuracy
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from seedzoo.data.subsets import class_balanced_indices, holdout_split, indices_digest
from seedzoo.errors import SeedzooError
from seedzoo.evaluation.arrays import (
    as_tensor,
    class_positions,
    label_array,
    non_finite_rows,
    refuse_non_finite,
)

DEFAULT_WEIGHT_DECAYS = (0.0, 1e-5, 1e-4, 1e-3, 1e-2)


def _require(valid: bool, what: str, value, requirement: str) -> None:
    """A :class:`SeedzooError` naming the probe option ``what`` unless ``valid``."""
    if not valid:
        raise SeedzooError(f"The linear probe's {what} must be {requirement}, got {value}.")


def topk_accuracy(logits: torch.Tensor, targets: torch.Tensor, k: int) -> float:
    """Fraction of rows whose target is among the ``k`` largest logits (all, when k >= classes)."""
    if len(targets) == 0:
        return float("nan")
    best = logits.topk(min(k, logits.shape[1]), dim=1).indices
    return int((best == targets.unsqueeze(1)).any(dim=1).sum()) / len(targets)  # exact fraction


class LinearProbe:
    """Logistic-regression probe in the scikit-learn style: ``fit``, ``predict``, ``score``.

    Parameters: ``weight_decays`` (the grid; one value skips the held-out selection),
    ``epochs`` over the data (at least ``min_steps`` SGD steps in all; on standardised
    Fashion-MNIST pixels 10 epochs reached the accuracy of 20 and 30), ``batch_size``,
    ``lr`` (peak learning rate, cosine-annealed to 0), ``momentum``, ``heldout_fraction``
    (of each class, for choosing the weight decay), ``seed``, ``device``.

    Fitted attributes: ``classes_``, ``mean_``, ``scale_``, ``coef_`` (classes x dim),
    ``intercept_``, ``weight_decay_`` and ``heldout_top1_`` (held-out top-1 of each weight
    decay of the grid; empty when no selection happened).
    """

    def __init__(self, weight_decays: Sequence[float] = DEFAULT_WEIGHT_DECAYS, *,
                 epochs: int = 10, batch_size: int = 1024, lr: float = 0.05,
                 momentum: float = 0.9, min_steps: int = 500, heldout_fraction: float = 0.1,
                 seed: int = 0, device: str | torch.device | None = None):
        _require(len(weight_decays) > 0 and all(math.isfinite(w) and w >= 0
                                                for w in weight_decays),
                 "weight decays", list(weight_decays), "a non-empty list of finite values >= 0")
        _require(math.isfinite(lr) and lr > 0, "learning rate", lr, "a finite number > 0")
        _require(0 <= momentum < 1, "momentum", momentum, "in [0, 1)")
        _require(0 < heldout_fraction < 1, "held-out fraction", heldout_fraction, "in (0, 1)")
        _require(batch_size >= 1, "batch size", batch_size, "at least 1")
        _require(epochs >= 1, "epoch count", epochs, "at least 1")
        _require(min_steps >= 0, "minimum step count", min_steps, "at least 0")
        self.weight_decays = tuple(float(w) for w in weight_decays)
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.momentum = momentum
        self.min_steps = min_steps
        self.heldout_fraction = heldout_fraction
        self.seed = seed
        self.device = device

    def _device(self, features) -> torch.device:
        if self.device is not None:
            return torch.device(self.device)
        return features.device if isinstance(features, torch.Tensor) else torch.device("cpu")

    def _standardise(self, features) -> torch.Tensor:
        x = as_tensor(features, torch.float32, self.mean_.device)
        if x.ndim != 2 or x.shape[1] != len(self.mean_):
            raise SeedzooError(f"Expected features of shape (n, {len(self.mean_)}), "
                               f"got {tuple(x.shape)}.")
        refuse_non_finite(non_finite_rows(x), len(x), "test")
        return (x - self.mean_) / self.scale_

    def _train(self, x: torch.Tensor, y: torch.Tensor, weight_decays: Sequence[float]
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Standardise ``x`` by its own statistics, then train one classifier per weight decay.

        Returns ``(mean, scale, weights (grid, dim, classes), biases (grid, classes))``. The
        grid's classifiers sit side by side in one (dim, grid * classes) matrix, so each step
        is one matrix product; summing their mean losses keeps their gradients apart.
        """
        mean = x.mean(dim=0)
        std = x.std(dim=0, unbiased=False)
        scale = torch.where(std > 1e-6, std, torch.ones_like(std))
        x = (x - mean) / scale
        grid, (count, dim) = len(weight_decays), x.shape
        classes = len(self.classes_)
        weight = torch.zeros(dim, grid * classes, device=x.device, requires_grad=True)
        bias = torch.zeros(grid * classes, device=x.device, requires_grad=True)
        decay = torch.tensor(weight_decays, device=x.device).repeat_interleave(classes)
        optimizer = torch.optim.SGD([weight, bias], lr=self.lr, momentum=self.momentum,
                                    nesterov=self.momentum > 0)
        batch = min(self.batch_size, count)
        steps = max(self.epochs * math.ceil(count / batch), self.min_steps)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
        generator = torch.Generator().manual_seed(self.seed)
        step = 0
        while step < steps:
            order = torch.randperm(count, generator=generator).to(x.device)
            for start in range(0, count, batch):
                rows = order[start:start + batch]
                logits = (x.index_select(0, rows) @ weight + bias).view(len(rows), grid, classes)
                targets = y.index_select(0, rows).unsqueeze(1).expand(-1, grid)
                loss = F.cross_entropy(logits.transpose(1, 2), targets, reduction="sum") / len(rows)
                loss = loss + 0.5 * (decay * weight.square()).sum()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
                step += 1
                if step == steps:
                    break
        weight = weight.detach().view(dim, grid, classes).permute(1, 0, 2)
        return mean, scale, weight, bias.detach().view(grid, classes)

    def fit(self, features, labels) -> LinearProbe:
        """Choose the weight decay on held-out training features, then fit on all of them."""
        device = self._device(features)
        x = as_tensor(features, torch.float32, device)
        labels = label_array(labels)
        if x.ndim != 2 or len(x) != len(labels) or len(x) == 0:
            raise SeedzooError(f"A linear probe needs features (n, dim) and n labels; got "
                               f"{tuple(x.shape)} features and {len(labels)} labels.")
        refuse_non_finite(non_finite_rows(x), len(x), "training")
        self.classes_, encoded = np.unique(labels, return_inverse=True)
        y = torch.as_tensor(encoded, dtype=torch.int64, device=device)

        self.heldout_top1_ = {}
        fit_rows, heldout_rows = holdout_split(encoded, self.heldout_fraction, self.seed)
        if len(self.weight_decays) == 1:
            chosen = self.weight_decays[0]
        elif len(heldout_rows):  # the same probe, fit on the rest, scored on the held-out rows
            fit_rows = torch.as_tensor(fit_rows, device=device)
            heldout_rows = torch.as_tensor(heldout_rows, device=device)
            mean, scale, weight, bias = self._train(x[fit_rows], y[fit_rows], self.weight_decays)
            logits = torch.matmul((x[heldout_rows] - mean) / scale, weight) + bias.unsqueeze(1)
            for decay, grid_logits in zip(self.weight_decays, logits, strict=True):
                self.heldout_top1_[decay] = topk_accuracy(grid_logits, y[heldout_rows], 1)
            # Ties go to the larger weight decay: the simpler of equally good probes.
            chosen = max(self.heldout_top1_, key=lambda d: (self.heldout_top1_[d], d))
        else:  # too few samples to hold any out: the strongest regularisation is the safe pick
            chosen = self.weight_decays[-1]
        self.weight_decay_ = chosen
        self.mean_, self.scale_, weight, bias = self._train(x, y, [chosen])
        self.coef_, self.intercept_ = weight[0].T.contiguous(), bias[0]
        return self

    def decision_function(self, features) -> torch.Tensor:
        """Logits (n, classes), columns ordered as ``classes_``."""
        if not hasattr(self, "coef_"):
            raise SeedzooError("This LinearProbe is not fitted yet; call fit() first.")
        return self._standardise(features) @ self.coef_.T + self.intercept_

    def predict(self, features) -> np.ndarray:
        best = self.decision_function(features).argmax(dim=1).cpu().numpy()
        return self.classes_[best]

    def _encode(self, labels) -> torch.Tensor:
        position, known = class_positions(self.classes_, labels)
        return torch.as_tensor(np.where(known, position, -1), device=self.mean_.device)

    def score(self, features, labels, k: int = 1) -> float:
        """Top-``k`` accuracy; labels never seen in training count as errors."""
        return topk_accuracy(self.decision_function(features), self._encode(labels), k)


def linear_probe(train_features, train_labels, test_features, test_labels,
                 **options) -> dict:
    """Fit a :class:`LinearProbe` (``options`` go to it) and score it on the test features.

    Returns ``{"top1", "top5", "weight_decay", "heldout_top1", "train_size"}``.
    """
    probe = LinearProbe(**options).fit(train_features, train_labels)
    logits = probe.decision_function(test_features)
    targets = probe._encode(test_labels)
    return {"top1": topk_accuracy(logits, targets, 1), "top5": topk_accuracy(logits, targets, 5),
            "weight_decay": probe.weight_decay_,
            "heldout_top1": {str(k): v for k, v in probe.heldout_top1_.items()},
            "train_size": len(train_labels)}


def fewshot_probe(train_features, train_labels, test_features, test_labels, fraction: float,
                  seed: int = 0, **options) -> dict:
    """:func:`linear_probe` trained on a class-balanced seeded ``fraction`` of the training set;
    the result adds ``subset_sha256`` (:func:`~seedzoo.data.subsets.indices_digest` of it)."""
    labels = label_array(train_labels)
    subset = class_balanced_indices(labels, fraction, seed)
    features = train_features[torch.as_tensor(subset)] if isinstance(
        train_features, torch.Tensor) else np.asarray(train_features)[subset]
    return {**linear_probe(features, labels[subset], test_features, test_labels,
                           seed=seed, **options), "subset_sha256": indices_digest(subset)}
