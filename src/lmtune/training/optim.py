"""Optimizers and learning-rate schedules from plain hyperparameters."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

from lmtune.training.llrd import build_param_groups


def build_optimizer(model: torch.nn.Module, hp: Mapping[str, Any], device: torch.device) -> torch.optim.Optimizer:
    """AdamW (decoupled decay), Adam (L2 in the gradient), SGD (momentum, nesterov) or Adafactor.

    Biases and norm weights never get weight decay; ``layer_decay`` scales per-block rates.
    """
    groups = build_param_groups(model, lr=hp["learning_rate"], weight_decay=hp["weight_decay"],
                                layer_decay=hp.get("layer_decay", 1.0))
    name, lr = hp["optimizer"], hp["learning_rate"]
    betas = (hp.get("beta1", 0.9), hp.get("beta2", 0.999))
    fused = device.type == "cuda"
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=hp.get("eps", 1e-8), fused=fused)
    if name == "adam":
        return torch.optim.Adam(groups, lr=lr, betas=betas, eps=hp.get("eps", 1e-8), fused=fused)
    if name == "sgd":
        momentum = hp.get("momentum", 0.9)
        return torch.optim.SGD(groups, lr=lr, momentum=momentum,
                               nesterov=bool(hp.get("nesterov", False)) and momentum > 0)
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


def build_scheduler(optimizer: torch.optim.Optimizer, hp: Mapping[str, Any],
                    total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    warmup = round(hp.get("warmup_ratio", 0.0) * total_steps)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(hp["lr_scheduler"], total_steps, warmup))

