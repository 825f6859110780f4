"""Batches with little padding: group examples of similar length, keep the order seeded."""

from __future__ import annotations

import numpy as np
import torch

from lmtune.data.tokenized import TokenizedSplit


def train_batches(lengths: np.ndarray, batch_size: int, *, seed: int, epoch: int,
                  group: int = 50) -> list[np.ndarray]:
    """Index batches for one epoch: shuffle, sort within windows of ``group`` batches by length, then
    shuffle the batch order. Deterministic in (seed, epoch), so a resumed run sees the same batches."""
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(lengths))
    window = batch_size * group
    batches: list[np.ndarray] = []
    for start in range(0, len(order), window):
        chunk = order[start:start + window]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches.extend(chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size))
    perm = rng.permutation(len(batches))
    return [batches[i] for i in perm]


def eval_batches(lengths: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Evaluation batches sorted by length (order does not matter for the metrics)."""
    order = np.argsort(lengths, kind="stable")
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def collate(split: TokenizedSplit, index: np.ndarray, pad_id: int,
            device: torch.device) -> dict[str, torch.Tensor]:
    """Dynamic padding to the longest row of the batch; returns input_ids, attention_mask, labels."""
    rows = [split.row(int(i)) for i in index]
    width = max(len(r) for r in rows)
    ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for j, r in enumerate(rows):
        ids[j, :len(r)] = r
        mask[j, :len(r)] = 1
    batch = {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask)}
    if split.labels is not None:
        batch["labels"] = torch.from_numpy(split.labels[index])
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}
