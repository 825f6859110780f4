"""Small statistics used by the report: seed summaries, Welch's test, Spearman's rank correlation.

Everything here is a pure function of plain Python numbers; the statistics themselves are the standard
library's (mean, sample standard deviation) and scipy's (Spearman, Welch, the t and noncentral t
distributions behind the interval and the power computation).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

from scipy import stats as _scipy_stats

__all__ = ["mean_interval", "seeds_for_power", "spearman", "summarize", "welch_p_value"]

MAX_SEEDS = 1000
"""`seeds_for_power` gives up beyond this many seeds per side (the difference is then too small to chase)."""


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


def mean_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float] | None:
    """Student-t confidence interval of the mean of ``values`` (sample std, n - 1 degrees of freedom);
    None with fewer than two values."""
    if len(values) < 2:
        return None
    mean, std = summarize(values)
    half = float(_scipy_stats.t.ppf(0.5 + confidence / 2, len(values) - 1)) * std / math.sqrt(len(values))
    return mean - half, mean + half


def welch_power(diff: float, std_a: float, std_b: float, n: int, alpha: float = 0.05) -> float:
    """Power of the two-sided Welch t-test at level ``alpha`` with ``n`` runs per side, when the true
    difference of means is ``diff`` and the true standard deviations are ``std_a`` and ``std_b``.

    The statistic is noncentral t with noncentrality ``diff / sqrt((std_a² + std_b²) / n)`` and the
    Welch–Satterthwaite degrees of freedom ``(n - 1)(std_a² + std_b²)² / (std_a⁴ + std_b⁴)`` (with equal
    stds this is Student's ``2n - 2``, and the power is the textbook two-sample t-test power)."""
    va, vb = std_a**2, std_b**2
    df = (n - 1) * (va + vb) ** 2 / (va**2 + vb**2)
    ncp = abs(diff) / math.sqrt((va + vb) / n)
    crit = float(_scipy_stats.t.ppf(1 - alpha / 2, df))
    nct = _scipy_stats.nct(df, ncp)
    return float(nct.sf(crit) + nct.cdf(-crit))


def seeds_for_power(diff: float, std_a: float, std_b: float, *, alpha: float = 0.05,
                    power: float = 0.8) -> int | None:
    """The fewest seeds per side (at least 2) at which Welch's test would detect a true difference of
    ``diff`` at level ``alpha`` with probability ``power``, taking the observed stds as the true ones.

    None when there is nothing to detect (``diff`` is 0) or more than ``MAX_SEEDS`` would be needed. With
    both stds 0 any difference is already detected: 2."""
    if diff == 0.0 or not math.isfinite(diff):
        return None
    if std_a == 0.0 and std_b == 0.0:
        return 2
    lo, hi = 2, 2
    while welch_power(diff, std_a, std_b, hi, alpha) < power:  # double until enough, then bisect
        if hi >= MAX_SEEDS:
            return None
        lo, hi = hi, min(2 * hi, MAX_SEEDS)
    while lo < hi:
        mid = (lo + hi) // 2
        if welch_power(diff, std_a, std_b, mid, alpha) >= power:
            hi = mid
        else:
            lo = mid + 1
    return hi
