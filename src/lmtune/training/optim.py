"""Optimizers and learning-rate schedules from the trial's typed training section."""

from __future__ import annotations

import math
from typing import Any

import torch

from lmtune.config import TrainingSection
from lmtune.training.llrd import build_param_groups

# the settings `retune` puts in force on a built optimizer (the rest build it)
RETUNED = ("learning_rate", "weight_decay", "momentum", "beta1", "beta2", "eps")


def mark_groups(optimizer: torch.optim.Optimizer, learning_rate: float) -> None:
    """Remember in each parameter group its rate relative to ``learning_rate`` (layer decay) and whether
    it takes weight decay, so that `retune` can change the settings of a built optimizer."""
    for group in optimizer.param_groups:
        group["lr_scale"] = group["lr"] / float(learning_rate)
        group["decays"] = not str(group.get("name", "")).endswith("no_decay")


def retune(optimizer: torch.optim.Optimizer, scheduler: Any, hp: TrainingSection) -> None:
    """Apply ``hp``'s optimizer settings to a built (or just restored) optimizer and its schedule: the
    base learning rate (per-group ratios from `mark_groups` kept; the schedule goes on from its current
    step with the new base), weight decay on the groups that decay, momentum, Adam's betas and eps.
    ``optimizer.load_state_dict`` restores the values of the run that saved the checkpoint; after an
    exploit (another member's checkpoint, explored settings) this puts the explored ones in force."""
    base = hp.learning_rate
    scheduler.base_lrs = [base * g.get("lr_scale", 1.0) for g in optimizer.param_groups]
    for group in optimizer.param_groups:
        group["initial_lr"] = base * group.get("lr_scale", 1.0)
        if group.get("decays", False):
            group["weight_decay"] = hp.weight_decay
        if "momentum" in group:
            group["momentum"] = hp.momentum
        if isinstance(group.get("betas"), tuple | list):
            group["betas"] = (hp.beta1, hp.beta2)
        if isinstance(group.get("eps"), float):  # Adafactor's eps is a pair
            group["eps"] = hp.eps
    scheduler.last_epoch -= 1
    scheduler.step()  # recompute the current rates from the new base


def build_optimizer(model: torch.nn.Module, hp: TrainingSection, device: torch.device) -> torch.optim.Optimizer:
    """AdamW (decoupled decay), Adam (L2 in the gradient), SGD (momentum, nesterov) or Adafactor.

    Biases and norm weights never get weight decay; ``layer_decay`` scales per-block rates.
    """
    groups = build_param_groups(model, lr=hp.learning_rate, weight_decay=hp.weight_decay, layer_decay=hp.layer_decay)
    name, lr = hp.optimizer, hp.learning_rate
    betas = (hp.beta1, hp.beta2)
    # the fused kernel on CPU too (as HF Trainer's default `adamw_torch_fused`): one pass over each tensor
    # instead of the for-loop implementation's several; same update up to float rounding
    fused = device.type in ("cuda", "cpu")
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=hp.eps, fused=fused)
    if name == "adam":
        return torch.optim.Adam(groups, lr=lr, betas=betas, eps=hp.eps, fused=fused)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=hp.momentum, nesterov=hp.nesterov and hp.momentum > 0)
    if name == "adafactor":
        from transformers.optimization import Adafactor

        return Adafactor(groups, lr=lr, scale_parameter=False, relative_step=False, warmup_init=False)
    raise ValueError(f"training.optimizer: unknown optimizer {name!r}")


def lr_lambda(kind: str, total_steps: int, warmup_steps: int) -> Any:
    """Multiplier of the base rate at a step: linear warmup, then linear/cosine decay or constant."""
    def f(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / max(1, warmup_steps)
        if kind == "constant":
            return 1.0
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        progress = min(max(progress, 0.0), 1.0)
        if kind == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        return 1.0 - progress
    return f


def build_scheduler(optimizer: torch.optim.Optimizer, hp: TrainingSection,
                    total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    warmup = round(hp.warmup_ratio * total_steps)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(hp.lr_scheduler, total_steps, warmup))

