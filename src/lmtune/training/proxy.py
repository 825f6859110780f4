"""A proxy trial's model: the target cut to its first k transformer blocks (``TrialSpec.extra``)."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

import torch

from lmtune.training.truncate import find_blocks, truncate_layers

__all__ = ["apply_proxy"]


def apply_proxy(model: torch.nn.Module, extra: Mapping[str, Any]) -> None:
    """Truncate ``model`` in place when ``extra["truncate_layers"]`` is set (the loader usually built only the
    kept blocks already: `lmtune.training.models.load_classifier`'s ``num_layers``), and say so in the trial log
    (the log line is the trainer's own record that the proxy really ran with k blocks)."""
    k = extra.get("truncate_layers")
    if not k:
        return
    before = getattr(model, "lmtune_checkpoint_blocks", None) or len(find_blocks(model)[2])
    truncate_layers(model, int(k))  # nothing to cut when the loader built only the kept blocks
    kept = len(find_blocks(model)[2])
    params = sum(p.numel() for p in model.parameters())
    print(f"proxy: kept {kept} of {before} transformer blocks ({params:,} parameters)", file=sys.stderr, flush=True)
