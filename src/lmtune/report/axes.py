"""Axis ranges that fit the data: a metric's axis spans its values with a little room, and a bounded
metric (accuracy, F1, precision, recall, AUC...) never leaves [0, 1].

Left to itself plotly sizes an axis from every trace, empty ones and helper lines included (Optuna's
history plot drew accuracies on an axis from 0 to 1.5); every report figure with a metric axis sets its
range from ``metric_range`` instead.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable

__all__ = ["BOUNDED_WORDS", "is_bounded", "metric_range"]

BOUNDED_WORDS = frozenset({"accuracy", "acc", "f1", "precision", "recall", "auc", "exact", "match"})
"""A metric is a share in [0, 1] when a word of its name (split at anything but letters and digits) is one
of these (``eval_accuracy``, ``test_f1``, ``eval_exact_match``)."""
PAD = 0.06
"""Room on each side, as a share of the data's span."""


def is_bounded(metric: str) -> bool:
    return bool(set(re.split(r"[^a-z0-9]+", metric.lower())) & BOUNDED_WORDS)


def metric_range(metric: str, values: Iterable[float | None]) -> list[float] | None:
    """``[low, high]`` for an axis showing ``values`` of ``metric``: the data's span padded by ``PAD`` on
    each side (a single value gets a span of its own size / 10, at least 0.01), clipped to [0, 1] for a
    bounded metric. None when there is no finite value (the axis then keeps plotly's default)."""
    finite = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return None
    lo, hi = min(finite), max(finite)
    span = hi - lo or max(abs(hi) / 10, 0.01)
    lo, hi = lo - PAD * span, hi + PAD * span
    if is_bounded(metric):
        lo, hi = max(lo, 0.0), min(hi, 1.0)
    return [lo, hi]
