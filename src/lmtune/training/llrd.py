"""Parameter groups (placeholder until layer-wise decay lands): decay vs no-decay only."""

from __future__ import annotations

from typing import Any

import torch


def build_param_groups(model: torch.nn.Module, *, lr: float, weight_decay: float,
                       layer_decay: float = 1.0) -> list[dict[str, Any]]:
    if layer_decay != 1.0:
        raise ValueError("layer_decay < 1 is not supported yet")
    decay, no_decay = [], []
    for _, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim < 2 else decay).append(p)
    return [{"params": decay, "lr": lr, "weight_decay": weight_decay, "name": "decay"},
            {"params": no_decay, "lr": lr, "weight_decay": 0.0, "name": "no_decay"}]
