"""Priors from fine-tuning practice: where ``strategy: auto`` searches the learning rate.

Users copy the learning-rate range of the HF docs (1e-6..1e-3, log) into their spaces; fine-tuning practice
puts the best learning rate of a full fine-tune of a pre-trained model around 1e-5..5e-4, and LoRA's about
ten times higher and nearly independent of the rank (1e-4..5e-3; the range starts at 5e-5, the low end of
the `lora-sft` preset, so that no preset's range is narrowed). On the recorded tables
(docs/benchmarks/search-replay.md) the configurations outside 1e-5..5e-4 averaged 16 (`rotten_tomatoes`)
and 27 (`bbc_paragraphs`) points of test accuracy below those inside it, and no table's best configuration
lay outside. So ``auto`` (``search.practice_prior``, on for it by default) searches the part of the user's
learning-rate range that practice covers, widened to hold the default learning rate; where the two do not
overlap, the user's range as written. Any other parameter is left as the user wrote it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from lmtune.space import FloatParam, Space

__all__ = ["FULL_FINETUNE_LR", "LORA_LR", "Narrowed", "practice_space"]

FULL_FINETUNE_LR = (1e-5, 5e-4)
LORA_LR = (5e-5, 5e-3)


@dataclass(frozen=True)
class Narrowed:
    """What the practice prior changed: the parameter, the user's range and the range searched, and why."""

    name: str
    written: tuple[float, float]
    searched: tuple[float, float]
    reason: str

    def describe(self) -> str:
        return (f"{self.name} searched in [{self.searched[0]:.3g}, {self.searched[1]:.3g}] of the "
                f"[{self.written[0]:.3g}, {self.written[1]:.3g}] written ({self.reason})")


def practice_space(space: Space, defaults: Mapping[str, Any], *, lora: bool) -> tuple[Space, Narrowed | None]:
    """``space`` with its learning rate narrowed to practice's range for this kind of fine-tune (``lora``: a
    LoRA adapter on a frozen base), and what was narrowed; the space unchanged (and None) where it searches
    no float learning rate, the ranges do not overlap, or the user's range already lies within practice's."""
    param = space.get("learning_rate")
    if not isinstance(param, FloatParam) or param.step is not None or param.low >= param.high:
        return space, None
    low, high = LORA_LR if lora else FULL_FINETUNE_LR
    default = defaults.get("learning_rate")
    if isinstance(default, int | float) and param.contains(default):  # the default stays searchable
        low, high = min(low, float(default)), max(high, float(default))
    lo, hi = max(param.low, low), min(param.high, high)
    if lo >= hi or (math.isclose(lo, param.low) and math.isclose(hi, param.high)):
        return space, None
    narrowed = replace(param, low=lo, high=hi)
    params = tuple(narrowed if p.name == param.name else p for p in space)
    why = "LoRA practice, about ten times full fine-tuning's" if lora else "full fine-tuning practice"
    return Space(params), Narrowed(param.name, (param.low, param.high), (lo, hi), why)
