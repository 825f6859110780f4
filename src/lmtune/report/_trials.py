"""Private helpers that read the lmtune user attrs off Optuna trials.

Attrs written by the tuner are JSON values; these helpers coerce them defensively so that a report of a
half-written or older study still renders (a missing or malformed attr reads as ``None``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from optuna.trial import FrozenTrial

__all__ = ["attr_float", "attr_int", "cost_totals", "finite_value"]


def attr_int(trial: FrozenTrial, key: str) -> int | None:
    """The user attr ``key`` as an int, or ``None`` when absent or not a number."""
    value = trial.user_attrs.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value)


def attr_float(trial: FrozenTrial, key: str) -> float | None:
    """The user attr ``key`` as a float, or ``None`` when absent or not a number."""
    value = trial.user_attrs.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def finite_value(trial: FrozenTrial) -> float | None:
    """The trial's objective value when it is a finite number, else ``None``."""
    value: Any = trial.value if trial.values is not None and len(trial.values) == 1 else None
    if value is None or not math.isfinite(value):
        return None
    return float(value)


def cost_totals(trials: Sequence[FrozenTrial]) -> dict[str, float | int]:
    """Sum ``train_tokens``, ``wall_time_s`` and ``overhead_s`` over ``trials`` (missing attrs count 0)."""
    return {
        "train_tokens": sum(attr_int(t, "train_tokens") or 0 for t in trials),
        "wall_time_s": math.fsum(attr_float(t, "wall_time_s") or 0.0 for t in trials),
        "overhead_s": math.fsum(attr_float(t, "overhead_s") or 0.0 for t in trials),
    }
