"""Packing (``training.packing``): a micro-batch's causal-LM examples laid end to end in a few rows.

What changes is the layout, not the batch: the same examples go through the model in the same step,
each with its own positions (0, 1, ... restarting at every example) and attention only within itself,
so every example's logits, its loss and the update are those of the padded layout (tested to 1e-5 in
fp32) — only the padded slots go. Attention is kept apart the way transformers'
``DataCollatorWithFlattening`` does it: no 2-D attention mask, ``position_ids`` that restart, and no
key-value cache; the model's mask builder (``masking_utils``) then gives each example a causal block of
its own (eager and SDPA on CPU and GPU; flash attention reads the same positions as variable-length
sequences). A model whose attention does not honour that is caught by `check_isolated` before training.

The loss is unchanged because an example's first token is never predicted (in a padded row nothing
precedes it; in a packed row the token before it belongs to another example): its label is -100 here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from lmtune.data import IGNORE_INDEX, TokenizedSplit
from lmtune.errors import ConfigError

__all__ = ["check_isolated", "collate_packed", "packed_rows"]


def _first_fit_decreasing(lengths: Sequence[int], width: int) -> list[list[int]]:
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    rows: list[list[int]] = []
    room: list[int] = []
    for i in order:
        for r, free in enumerate(room):
            if lengths[i] <= free:
                rows[r].append(i)
                room[r] -= lengths[i]
                break
        else:
            rows.append([i])
            room.append(width - lengths[i])
    return rows


def packed_rows(lengths: Sequence[int], max_width: int) -> list[list[int]]:
    """Rows of example positions (into ``lengths``), each example whole and in one row, each row at most
    ``max(max_width, longest)`` tokens: first-fit decreasing at the row width that leaves the fewest token
    slots (rows × the fullest row; ties to the narrower). The widths tried are the longest example (so
    never more slots than one example per row padded to the longest, the unpacked layout), ``max_width``,
    and total/r for r rows."""
    longest, total = max(lengths), sum(lengths)
    cap = max(longest, max_width)
    widths = {longest, cap, *(min(cap, max(longest, -(-total // r))) for r in range(1, len(lengths) + 1))}
    best: tuple[tuple[int, int], list[list[int]]] | None = None
    for width in sorted(widths):
        rows = _first_fit_decreasing(lengths, width)
        fill = max(sum(lengths[i] for i in row) for row in rows)
        cost = (len(rows) * fill, fill)
        if best is None or cost < best[0]:
            best = (cost, rows)
    assert best is not None
    return best[1]


def collate_packed(split: TokenizedSplit, index: np.ndarray, pad_id: int, device: torch.device,
                   max_width: int) -> dict[str, Any]:
    """The examples ``index`` packed (`packed_rows`): input_ids, position_ids (restarting at each example;
    a row's padding is a sequence of its own), labels (-100 on each example's first token and on padding)
    and ``use_cache=False`` (a cache would make transformers ignore the packed positions)."""
    starts = split.offsets[index]
    lengths = [int(n) for n in split.offsets[index + 1] - starts]
    rows = packed_rows(lengths, max_width)
    width = max(sum(lengths[k] for k in row) for row in rows)
    ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    labels = np.full((len(rows), width), IGNORE_INDEX, dtype=np.int64)
    positions = np.zeros((len(rows), width), dtype=np.int64)
    for r, row in enumerate(rows):
        at = 0
        for k in row:
            i, n = int(index[k]), lengths[k]
            ids[r, at:at + n] = split.row(i)
            labels[r, at + 1:at + n] = split.row_labels(i)[1:]
            positions[r, at:at + n] = np.arange(n)
            at += n
        positions[r, at:] = np.arange(width - at)
    batch = {"input_ids": ids, "position_ids": positions, "labels": labels}
    return {**{k: torch.from_numpy(v).to(device, non_blocking=True) for k, v in batch.items()}, "use_cache": False}


def check_isolated(model: torch.nn.Module, split: TokenizedSplit, device: torch.device) -> None:
    """Refuse packing for a model whose attention crosses packed examples: the logits of a short example
    alone and packed behind another must agree (eval mode, no dropout; one small forward pass)."""
    first, second = (torch.from_numpy(split.row(i)[:8].astype(np.int64)) for i in (0, min(1, len(split) - 1)))
    ids = torch.cat([first, second])[None].to(device)
    positions = torch.cat([torch.arange(len(first)), torch.arange(len(second))])[None].to(device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            alone = model(input_ids=second[None].to(device), use_cache=False).logits[0].float()
            packed = model(input_ids=ids, position_ids=positions, use_cache=False).logits[0, len(first):].float()
    finally:
        model.train(was_training)
    gap, scale = float((packed - alone).abs().max()), float(alone.abs().max())
    if gap > 1e-2 * scale + 1e-3:
        unwrap = getattr(model, "get_base_model", None)  # under LoRA: the model inside the adapters
        name = type(unwrap() if callable(unwrap) else model).__name__
        raise ConfigError(f"training.packing: {name} lets packed examples attend to each other (an example's "
                          f"logits moved by {gap:.3g} when packed behind another; its attention does not follow "
                          "restarting position_ids); set training.packing: false for this model")
