"""Private helpers over Optuna trials for the report: what the study's trial record holds
(``lmtune.study.record``, which reads a missing or malformed attr as ``None``), summed or filtered."""

from __future__ import annotations

import math
from collections.abc import Sequence

from optuna.trial import FrozenTrial

from lmtune.study import record

__all__ = ["cost_totals", "finite_value"]

finite_value = record.value_of  # the record's one rule for a trial's value


def cost_totals(trials: Sequence[FrozenTrial]) -> dict[str, float | int]:
    """Sum ``train_tokens``, ``wall_time_s`` and ``overhead_s`` over ``trials`` (missing attrs count 0)."""
    rows = [record.read(t) for t in trials]
    return {
        "train_tokens": sum(r.train_tokens or 0 for r in rows),
        "wall_time_s": math.fsum(r.wall_time_s or 0.0 for r in rows),
        "overhead_s": math.fsum(r.overhead_s or 0.0 for r in rows),
    }
