"""Small statistics used by the report: seed summaries, Welch's test, Spearman's rank correlation.

Everything here is a pure function of plain Python numbers. ``spearman`` is implemented directly
(average ranks for ties, then Pearson on the ranks) so that its tie handling is explicit and tested
against ``scipy.stats.spearmanr``; ``welch_p_value`` delegates to scipy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from scipy import stats as _scipy_stats

__all__ = ["average_ranks", "spearman", "summarize", "welch_p_value"]


def summarize(values: Sequence[float]) -> tuple[float, float]:
    """Return ``(mean, std)`` of ``values`` with the sample standard deviation (ddof=1).

    A single value has std 0.0. An empty sequence raises ``ValueError``.
    """
    n = len(values)
    if n == 0:
        raise ValueError("summarize() needs at least one value")
    mean = math.fsum(values) / n
    if n == 1:
        return mean, 0.0
    var = math.fsum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(var)


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


def average_ranks(values: Sequence[float]) -> list[float]:
    """Ranks starting at 1; tied values all get the mean of the ranks they span."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        rank = (start + end) / 2.0 + 1.0
        for k in range(start, end + 1):
            ranks[order[k]] = rank
        start = end + 1
    return ranks


def spearman(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Spearman's rank correlation of paired samples (Pearson correlation of average ranks).

    Raises ``ValueError`` when the lengths differ. Returns ``nan`` with fewer than two pairs or when
    either side is constant (the correlation is undefined), as scipy does.
    """
    if len(xs) != len(ys):
        raise ValueError(f"spearman() needs paired samples, got {len(xs)} and {len(ys)} values")
    if len(xs) < 2:
        return math.nan
    rx, ry = average_ranks(xs), average_ranks(ys)
    mx, my = math.fsum(rx) / len(rx), math.fsum(ry) / len(ry)
    cov = math.fsum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True))
    vx = math.fsum((a - mx) ** 2 for a in rx)
    vy = math.fsum((b - my) ** 2 for b in ry)
    if vx == 0.0 or vy == 0.0:
        return math.nan
    return cov / math.sqrt(vx * vy)
