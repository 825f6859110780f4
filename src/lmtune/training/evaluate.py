"""Evaluation: large batches, inference mode, one host sync per batch at most."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from lmtune.data.tokenized import TokenizedSplit
from lmtune.training.batches import collate, eval_batches
from lmtune.training.metrics import accuracy, macro_f1, perplexity


def evaluate(model: torch.nn.Module, split: TokenizedSplit, *, task_type: str, num_labels: int,
             batch_size: int, pad_id: int, device: torch.device,
             autocast: AbstractContextManager[Any], prefix: str = "eval") -> dict[str, float]:
    """Mean loss (per example for classification, per token for causal LM) and task metrics."""
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    count = 0
    preds: list[torch.Tensor] = []
    with torch.inference_mode():
        for index in eval_batches(split.lengths(), batch_size):
            batch = collate(split, index, pad_id, device)
            labels = batch.pop("labels")
            with autocast:
                logits = model(**batch).logits
            if task_type == "classification":
                loss_sum += F.cross_entropy(logits.float(), labels, reduction="sum").double()
                count += len(index)
                preds.append(logits.argmax(-1))
            else:
                shifted = logits[:, :-1].float().reshape(-1, logits.shape[-1])
                target = labels[:, 1:].reshape(-1)
                loss_sum += F.cross_entropy(shifted, target, reduction="sum", ignore_index=-100).double()
                count += int((target != -100).sum())
    model.train(was_training)
    mean_loss = float(loss_sum) / max(count, 1)
    out = {f"{prefix}_loss": mean_loss}
    if task_type == "classification":
        pred = torch.cat(preds).cpu().numpy()
        gold = np.concatenate([split.labels[i] for i in eval_batches(split.lengths(), batch_size)]) \
            if split.labels is not None else np.empty(0)
        out[f"{prefix}_accuracy"] = accuracy(pred, gold)
        out[f"{prefix}_f1"] = macro_f1(pred, gold, num_labels)
    else:
        out[f"{prefix}_perplexity"] = perplexity(mean_loss)
    return out
