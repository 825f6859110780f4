"""Serving cost, measured on the trained model (objectives ``serve_params``, ``serve_trainable_params``,
``serve_latency_ms`` of a multi-objective study; `lmtune.config.COST_METRICS`).

- ``serve_params``: every parameter the served model holds. A LoRA model is served as its base with the
  adapter beside it, so the adapter's parameters count on top of the base's: a larger rank costs more.
  Elements as stored (a 4-bit base counts its packed elements).
- ``serve_trainable_params``: the parameters the fine-tune trained (the adapter and head under LoRA).
- ``serve_latency_ms``: one forward pass of one validation example (batch of one, the serving case) on the
  trial's evaluation device and precision; the median of 16 examples after 2 warm-up passes. Classification:
  the prediction; causal LM: scoring the example's sequence (not generation). It depends on the architecture,
  the adapter and the precision, not on the trained weights; on a loaded machine it is as noisy as the machine.
"""

from __future__ import annotations

import statistics
import time
from contextlib import AbstractContextManager
from typing import Any

import numpy as np
import torch

from lmtune.data import TokenizedSplit
from lmtune.training.batches import collate

LATENCY_EXAMPLES = 16
WARMUP = 2


def parameters(model: torch.nn.Module) -> dict[str, float]:
    """``serve_params`` and ``serve_trainable_params`` of ``model`` as it is served."""
    total = trainable = 0
    for p in model.parameters():
        total += p.numel()
        if p.requires_grad:
            trainable += p.numel()
    return {"serve_params": float(total), "serve_trainable_params": float(trainable)}


def latency_ms(model: torch.nn.Module, split: TokenizedSplit, *, pad_id: int, device: torch.device,
               autocast: AbstractContextManager[Any]) -> float:
    """Median milliseconds of one forward pass of one example of ``split`` (batch of one)."""
    n = min(len(split), LATENCY_EXAMPLES)
    if n == 0:
        return float("nan")
    was_training = model.training
    model.eval()
    times: list[float] = []
    with torch.inference_mode():
        for k in range(-WARMUP, n):
            batch = collate(split, np.array([max(k, 0)]), pad_id, device)
            batch.pop("labels", None)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t = time.perf_counter()
            with autocast:
                model(**batch)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if k >= 0:
                times.append(time.perf_counter() - t)
    model.train(was_training)
    return 1000.0 * statistics.median(times)
