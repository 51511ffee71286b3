"""Optimisers (SGD, AdamW, LARS) and the per-step warm-up + cosine learning-rate schedule (with an
optional cosine weight-decay schedule)."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.optim.lr_scheduler import LRScheduler

from seedzoo.errors import SeedzooError


def param_groups(model: nn.Module, weight_decay: float, plain=()) -> list[dict]:
    """Trainable parameters in two groups: weights with ``weight_decay``, and norms, biases
    (``ndim <= 1``) and the ``plain`` parameters without it. The second group is also left out
    of LARS adaptation."""
    plain_ids = {id(param) for param in plain}
    decay, no_decay = [], []
    for param in model.parameters():
        if param.requires_grad:
            (no_decay if param.ndim <= 1 or id(param) in plain_ids else decay).append(param)
    groups = [{"params": decay, "weight_decay": weight_decay},
              {"params": no_decay, "weight_decay": 0.0, "lars_exclude": True}]
    return [g for g in groups if g["params"]]


class LARS(torch.optim.Optimizer):
    """SGD with momentum and layer-wise adaptive rate scaling (You et al., 2017).

    Each parameter's update ``g + wd * p`` is scaled by ``trust_coefficient * |p| / |g + wd * p|``
    before momentum, as in the SimCLR/BYOL/DINO implementations. Groups with
    ``lars_exclude=True`` (norms and biases, see :func:`param_groups`) take plain SGD steps.
    """

    def __init__(self, params, lr: float, momentum: float = 0.9, weight_decay: float = 0.0,
                 trust_coefficient: float = 0.001):
        defaults = dict(lr=lr, momentum=momentum, weight_decay=weight_decay,
                        trust_coefficient=trust_coefficient, lars_exclude=False)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is None:
                    continue
                update = param.grad
                if not group["lars_exclude"]:
                    update = update.add(param, alpha=group["weight_decay"])
                    param_norm, update_norm = torch.linalg.vector_norm(param), \
                        torch.linalg.vector_norm(update)
                    trust = torch.where((param_norm > 0) & (update_norm > 0),
                                        group["trust_coefficient"] * param_norm / update_norm,
                                        torch.ones_like(param_norm))
                    update = update.mul(trust)
                state = self.state[param]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.clone(update).detach()
                else:
                    state["momentum_buffer"].mul_(group["momentum"]).add_(update)
                param.add_(state["momentum_buffer"], alpha=-group["lr"])
        return loss


def build_optimizer(name: str, model: nn.Module, *, lr: float, weight_decay: float,
                    momentum: float = 0.9, betas=(0.9, 0.999), plain=()) -> torch.optim.Optimizer:
    """``sgd``, ``adamw`` (both fused) or ``lars`` over :func:`param_groups` of ``model``."""
    groups = param_groups(model, weight_decay, plain)
    if not groups:
        raise SeedzooError("The method has no trainable parameters.")
    # fused: one kernel over all parameters per step instead of a few per tensor; SGD's steps
    # are bitwise the for-loop ones, AdamW's equal to float rounding
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, fused=True)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=tuple(betas), fused=True)
    if name == "lars":
        return LARS(groups, lr=lr, momentum=momentum)
    raise SeedzooError(f"Unknown optimizer {name!r}; use sgd, adamw or lars.")


def clip_gradients(parameters, max_norm: float, mode: str = "global") -> None:
    """Scale gradients down to at most ``max_norm``: their global norm (``"global"``), or each
    parameter's own norm (``"per_parameter"``, as DINO's and EsViT's reference code)."""
    with_grads = [parameter for parameter in parameters if parameter.grad is not None]
    if mode == "global":
        torch.nn.utils.clip_grad_norm_(with_grads, max_norm)
        return
    grads = [parameter.grad for parameter in with_grads]
    norms = torch._foreach_norm(grads)
    torch._foreach_mul_(grads, [torch.clamp(max_norm / (norm + 1e-6), max=1.0) for norm in norms])


def cosine_interpolation(start: float, end: float, progress: float) -> float:
    """``start`` at ``progress`` 0, ``end`` at 1, along half a cosine (DINO's schedules)."""
    return end + (start - end) * 0.5 * (1 + math.cos(math.pi * progress))


def warmup_cosine(step: int, *, total_steps: int, warmup_steps: int, final_ratio: float = 0.0):
    """Fraction of the peak lr at ``step`` (0-based): linear ramp over ``warmup_steps`` (reaching
    the peak at the last warm-up step), then a cosine towards ``final_ratio``, which it would
    reach one step after the last (as in DINO's schedule, so no step is taken at the floor)."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return cosine_interpolation(1.0, final_ratio, progress)


class WarmupCosineSchedule(LRScheduler):
    """Per-step :func:`warmup_cosine` schedule; call ``step()`` after every optimiser step.

    With ``weight_decay_end``, the weight decay of every group that has some follows a cosine
    from its initial value to ``weight_decay_end`` over all steps, without warm-up (DINO's
    schedule: the decay at step ``i`` is ``cosine_interpolation(wd, wd_end, i / total_steps)``);
    groups without weight decay (norms and biases) keep none.
    """

    def __init__(self, optimizer, *, total_steps: int, warmup_steps: int, final_ratio: float = 0.0,
                 weight_decay_end: float | None = None):
        self.total_steps = total_steps
        self.warmup_steps = warmup_steps
        self.final_ratio = final_ratio
        self.weight_decay_end = weight_decay_end
        self.base_weight_decays = [group["weight_decay"] for group in optimizer.param_groups]
        super().__init__(optimizer)

    def get_lr(self) -> list[float]:
        factor = warmup_cosine(self.last_epoch, total_steps=self.total_steps,
                               warmup_steps=self.warmup_steps, final_ratio=self.final_ratio)
        return [base_lr * factor for base_lr in self.base_lrs]

    def step(self) -> None:
        super().step()
        self._set_weight_decay()

    def _set_weight_decay(self) -> None:
        if self.weight_decay_end is None:
            return
        progress = min(1.0, self.last_epoch / max(1, self.total_steps))
        for group, base in zip(self.optimizer.param_groups, self.base_weight_decays, strict=True):
            if base > 0:
                group["weight_decay"] = cosine_interpolation(base, self.weight_decay_end, progress)

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore the position in the schedule but keep this schedule's shape and peak lrs, so
        a resumed run follows its current recipe (e.g. more epochs); for the same recipe nothing
        changes."""
        shape = ("base_lrs", "total_steps", "warmup_steps", "final_ratio", "weight_decay_end",
                 "base_weight_decays")
        super().load_state_dict({k: v for k, v in state_dict.items() if k not in shape})
        for group, lr in zip(self.optimizer.param_groups, self.get_lr(), strict=True):
            group["lr"] = lr
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]
        self._set_weight_decay()
