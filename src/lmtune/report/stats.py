"""Small statistics used by the report: seed summaries, Welch's test, Spearman's rank correlation.

Everything here is a pure function of plain Python numbers; the statistics themselves are the standard
library's (mean, sample standard deviation) and scipy's (Spearman, Welch).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

from scipy import stats as _scipy_stats

__all__ = ["spearman", "summarize", "welch_p_value"]


def summarize(values: Sequence[float]) -> tuple[float, float]:
    """Return ``(mean, std)`` of ``values`` with the sample standard deviation (ddof=1).

    A single value has std 0.0. An empty sequence raises ``ValueError``.
    """
    if not values:
        raise ValueError("summarize() needs at least one value")
    mean = statistics.fmean(values)
    return mean, statistics.stdev(values, mean) if len(values) > 1 else 0.0


def welch_p_value(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Two-sided p-value of Welch's t-test (unequal variances) for ``mean(a) != mean(b)``.

    Returns ``None`` when either side has fewer than two values (no spread to compare against).
    When both sides have zero spread, scipy has no finite statistic; the answer is then 0.0 if the
    means differ (any difference exceeds a spread of zero) and 1.0 if they are equal.
    """
    if len(a) < 2 or len(b) < 2:
        return None
    (mean_a, std_a), (mean_b, std_b) = summarize(a), summarize(b)
    if std_a == 0.0 and std_b == 0.0:
        return 0.0 if mean_a != mean_b else 1.0
    result = _scipy_stats.ttest_ind(list(a), list(b), equal_var=False)
    return float(result.pvalue)


def spearman(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Spearman's rank correlation of paired samples (``scipy.stats.spearmanr``: average ranks for ties).

    Raises ``ValueError`` when the lengths differ. Returns ``nan`` with fewer than two pairs or when
    either side is constant (the correlation is undefined).
    """
    if len(xs) != len(ys):
        raise ValueError(f"spearman() needs paired samples, got {len(xs)} and {len(ys)} values")
    if len(xs) < 2 or len(set(xs)) < 2 or len(set(ys)) < 2:
        return math.nan  # scipy would warn (ConstantInputWarning) and return nan
    return float(_scipy_stats.spearmanr(list(xs), list(ys)).statistic)
