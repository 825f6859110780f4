"""Evaluation: large batches, inference mode, one host sync per batch at most."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from lmtune.data import IGNORE_INDEX, TokenizedSplit
from lmtune.training.batches import collate, eval_batches
from lmtune.training.metrics import MetricFunction, accuracy, custom_metrics, macro_f1, perplexity


def summed_loss(logits: torch.Tensor, labels: torch.Tensor, task_type: str) -> torch.Tensor:
    """The loss summed over its terms, in float32: per example (classification) or per label token
    (causal LM, where the logits at ``t`` predict the label at ``t + 1``; -100 labels add nothing).
    Dividing by the number of terms of the whole batch makes micro-batches add up to the batch mean."""
    if task_type == "classification":
        return F.cross_entropy(logits.float(), labels, reduction="sum")
    # the labels shift left (the last position predicts nothing), not the logits: slicing [b, L, vocab]
    # logits copied all of them (150 MB for SmolLM2 at batch 8 x 96) on every forward
    targets = F.pad(labels[:, 1:], (0, 1), value=IGNORE_INDEX)
    return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="sum",
                           ignore_index=IGNORE_INDEX)


def evaluate(model: torch.nn.Module, split: TokenizedSplit, *, task_type: str, num_labels: int,
             batch_size: int, pad_id: int, device: torch.device,
             autocast: AbstractContextManager[Any], prefix: str = "eval",
             metric_fn: MetricFunction | None = None,
             forward: Callable[[dict[str, torch.Tensor]], torch.Tensor] | None = None) -> dict[str, float]:
    """Mean loss (per example for classification, per token for causal LM) and task metrics:
    accuracy and macro F1 (and ``metric_fn``'s, given the logits: ``task.compute_metrics``), or
    perplexity and next-token accuracy. ``forward``: the logits of a batch (default: the model's own forward;
    `lmtune.training.fastpath.eval_forward` computes the same in less work)."""
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    hits = torch.zeros((), dtype=torch.int64, device=device)
    count = 0
    preds: list[torch.Tensor] = []
    logits_kept: list[torch.Tensor] = []  # for metric_fn only
    with torch.inference_mode():
        for index in eval_batches(split.lengths(), batch_size):
            batch = collate(split, index, pad_id, device)
            labels = batch.pop("labels")
            with autocast:
                logits = forward(batch) if forward is not None else model(**batch).logits
            loss_sum += summed_loss(logits, labels, task_type).double()
            if task_type == "classification":
                count += len(index)
                preds.append(logits.argmax(-1))
                if metric_fn is not None:
                    logits_kept.append(logits.float().cpu())
            else:
                target = labels[:, 1:]
                scored = target != IGNORE_INDEX
                hits += ((logits[:, :-1].argmax(-1) == target) & scored).sum()
                count += int(scored.sum())
    model.train(was_training)
    mean_loss = float(loss_sum) / max(count, 1)
    out = {f"{prefix}_loss": mean_loss}
    if task_type == "classification":
        pred = torch.cat(preds).cpu().numpy()
        gold = np.concatenate([split.labels[i] for i in eval_batches(split.lengths(), batch_size)]) \
            if split.labels is not None else np.empty(0)
        out[f"{prefix}_accuracy"] = accuracy(pred, gold)
        out[f"{prefix}_f1"] = macro_f1(pred, gold, num_labels)
        if metric_fn is not None:
            out.update(custom_metrics(metric_fn, torch.cat(logits_kept).numpy(), gold, prefix=prefix))
    else:
        out[f"{prefix}_perplexity"] = perplexity(mean_loss)
        out[f"{prefix}_token_accuracy"] = float(hits) / max(count, 1)
    return out
