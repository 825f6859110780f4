"""Report tables: pure functions from study records (Optuna trials, final results) to rows and dicts.

Nothing here draws or writes files; ``render`` turns these values into HTML and Markdown. The
series-shaped tables (learning curves, PBT lineage, proxy transfer, importances) live in
``lmtune.report.series`` and are re-exported here so that one import gives every table.

Default-vs-optimized verdict (``comparison_table``): the final runs train the default and the best
configuration with the same seeds. For each metric the optimized-minus-default difference is called
*significant* when Welch's two-sided t-test (unequal variances) gives p < 0.05, which needs at least two
seeds per side; with fewer, the verdict is "not enough seeds". The verdict also says whether the
difference goes the metric's good way (lower is better for loss, perplexity and error metrics). The
row additionally records whether |difference| exceeds the larger of the two seed standard deviations,
a descriptive check that is shown but not used for the verdict.

When the verdict is "within seed noise", ``seeds_needed`` is how many seeds per side would detect the
observed difference at p < 0.05 with 80 % power, taking the observed seed standard deviations as the
true ones (`lmtune.report.stats.seeds_for_power`: Welch's test, noncentral t). It is a planning number,
not a promise: with 2 or 3 seeds the observed spread is itself uncertain.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from optuna.trial import FrozenTrial, TrialState

from lmtune.config import lower_is_better
from lmtune.report._trials import cost_totals
from lmtune.report.series import (
    FEW_TRIALS_FOR_IMPORTANCES,
    ComputeSeries,
    Curve,
    Importances,
    Lineage,
    LineageNode,
    TransferPair,
    TransferSummary,
    compute_series,
    expected_best,
    importances,
    learning_curves,
    pbt_lineage,
    transfer_summary,
)
from lmtune.report.stats import seeds_for_power, spearman, summarize, welch_p_value
from lmtune.study import TrialRecord, record

__all__ = [
    "ALPHA",
    "FEW_TRIALS_FOR_IMPORTANCES",
    "ComparisonRow",
    "ComputeSeries",
    "Curve",
    "Importances",
    "Lineage",
    "LineageNode",
    "TransferPair",
    "TransferSummary",
    "TrialRow",
    "comparison_table",
    "compute_series",
    "expected_best",
    "failures",
    "final_cost",
    "higher_is_better_default",
    "importances",
    "learning_curves",
    "pbt_lineage",
    "search_cost",
    "seeds_advice",
    "spearman",
    "summarize",
    "transfer_summary",
    "trial_table",
]

ALPHA = 0.05
"""Significance level of the Welch test behind the comparison verdict."""
POWER = 0.8
"""The chance of detecting the observed difference that ``seeds_needed`` plans for."""



@dataclass(frozen=True)
class ComparisonRow:
    """One metric of the default-vs-optimized comparison (see the module docstring for the rule)."""

    metric: str
    higher_is_better: bool
    default_mean: float
    default_std: float
    n_default: int
    best_mean: float
    best_std: float
    n_best: int
    difference: float  # optimized mean - default mean
    p_value: float | None  # Welch two-sided; None with fewer than two seeds on a side
    significant: bool | None  # p_value < ALPHA; None when untestable
    improvement: bool  # the difference goes the metric's good way (regardless of significance)
    exceeds_spread: bool  # |difference| > max(default_std, best_std)
    verdict: str
    seeds_needed: int | None = None  # within seed noise: seeds per side for p < ALPHA at POWER (None: > 1000)


@dataclass(frozen=True)
class TrialRow:
    """One trial as the trial table shows it; ``reason`` explains FAIL and PRUNED trials."""

    number: int
    state: str
    value: float | None
    params: dict[str, Any]
    train_tokens: int | None
    wall_time_s: float | None
    reason: str
    is_default: bool = False
    precision: str | None = None


def higher_is_better_default(metric: str) -> bool:
    """Direction guessed from a metric's name: the one rule, `lmtune.config.schema.lower_is_better`."""
    return not lower_is_better(metric)


def _verdict(diff: float, p_value: float | None, improvement: bool, n: tuple[int, int]) -> str:
    if p_value is None:
        return f"not enough seeds (n={n[0]} default, n={n[1]} optimized; need 2+ each)"
    if diff == 0.0:
        return f"no difference (Welch p={p_value:.3g})"
    if p_value >= ALPHA:
        return f"within seed noise (Welch p={p_value:.3g})"
    return f"{'better' if improvement else 'worse'}, significant (Welch p={p_value:.3g})"


def _metric_values(runs: Sequence[Mapping[str, Any]], which: str, metric: str) -> list[float]:
    return [
        float(r["metrics"][metric])
        for r in runs
        if r.get("which") == which and isinstance(r.get("metrics"), Mapping) and metric in r["metrics"]
    ]


@dataclass(frozen=True)
class SelectionGap:
    """How much the selected trial's search score overstates what its configuration does on new data.

    ``search_value``: the value the selected trial reported to the study (its last evaluation, or its
    best one under ``early_stopping_patience``, whose weights it restores; ``lmtune final`` retrains with
    the same rule) — it won a selection among ``n_trials``, so it is biased upwards.
    ``validation``/``test``: mean and sample std of the same configuration retrained by ``lmtune final``
    over its seeds, on the validation and the test split. ``gap`` = search value − test mean.
    """

    metric: str
    test_metric: str
    search_value: float
    n_trials: int
    validation: tuple[float, float] | None
    test: tuple[float, float] | None
    gap: float | None


def selection_gap(final: Mapping[str, Any], trials: Sequence[TrialRow], metric: str) -> SelectionGap | None:
    """The selection gap of ``final["best_trial"]``; None before `lmtune final` or without its value."""
    number = final.get("best_trial")
    chosen = next((t for t in trials if t.number == number and t.value is not None), None)
    if chosen is None or chosen.value is None:
        return None
    test_metric = "test_" + metric.removeprefix("eval_")
    runs = [r for r in final.get("runs", []) if r.get("which") == "best"]
    val = [float(r["validation_metrics"][metric]) for r in runs if metric in (r.get("validation_metrics") or {})]
    test = [float(r["metrics"][test_metric]) for r in runs if test_metric in (r.get("metrics") or {})]
    done = sum(1 for t in trials if t.state == "COMPLETE")
    return SelectionGap(metric=metric, test_metric=test_metric, search_value=float(chosen.value), n_trials=done,
                        validation=summarize(val) if val else None, test=summarize(test) if test else None,
                        gap=float(chosen.value) - summarize(test)[0] if test else None)


def selection_gap_text(g: SelectionGap) -> str:
    """One sentence, the same in the terminal and the report."""
    parts = [f"Selected trial: {g.metric} {g.search_value:.4f} in the search (its last evaluation, or its best "
             f"under early stopping; the maximum of {g.n_trials} finished trials, so biased upwards)"]
    if g.validation is not None:
        parts.append(f"retrained: validation {g.validation[0]:.4f} ± {g.validation[1]:.4f}")
    if g.test is not None and g.gap is not None:
        parts.append(f"test {g.test[0]:.4f} ± {g.test[1]:.4f}; selection gap (search − test) {g.gap:+.4f}")
    return "; ".join(parts) + "."


def comparison_table(
    final: Mapping[str, Any], *, higher_is_better: Mapping[str, bool] | None = None
) -> list[ComparisonRow]:
    """Compare the ``default`` and ``best`` runs of ``final/results.json`` metric by metric.

    Metrics come from ``final["metric_names"]`` (else every key seen in the runs, sorted); a metric
    missing on either side is skipped. ``higher_is_better`` overrides the name-based direction per
    metric. Raises ``ValueError`` when the results hold no ``default`` or no ``best`` run.
    """
    runs = list(final.get("runs", []))
    for which in ("default", "best"):
        if not any(r.get("which") == which for r in runs):
            raise ValueError(f"final results have no {which!r} runs; rerun `lmtune final`")
    names = final.get("metric_names") or sorted({m for r in runs for m in r.get("metrics", {})})
    rows = []
    for metric in names:
        default, best = _metric_values(runs, "default", metric), _metric_values(runs, "best", metric)
        if not default or not best:
            continue
        hib = (higher_is_better or {}).get(metric, higher_is_better_default(metric))
        (d_mean, d_std), (b_mean, b_std) = summarize(default), summarize(best)
        diff = b_mean - d_mean
        p_value = welch_p_value(default, best)
        improvement = diff > 0 if hib else diff < 0
        noise = p_value is not None and p_value >= ALPHA and diff != 0.0
        rows.append(
            ComparisonRow(
                metric=metric,
                higher_is_better=hib,
                default_mean=d_mean,
                default_std=d_std,
                n_default=len(default),
                best_mean=b_mean,
                best_std=b_std,
                n_best=len(best),
                difference=diff,
                p_value=p_value,
                significant=None if p_value is None else p_value < ALPHA,
                improvement=improvement,
                exceeds_spread=abs(diff) > max(d_std, b_std),
                verdict=_verdict(diff, p_value, improvement, (len(default), len(best))),
                seeds_needed=seeds_for_power(diff, d_std, b_std, alpha=ALPHA, power=POWER) if noise else None,
            )
        )
    return rows


def seeds_advice(rows: Sequence[ComparisonRow], study_dir: Any) -> str | None:
    """What to run next when the first metric's difference is within seed noise: the seeds per side
    that would settle it and the command (``lmtune final`` keeps finished runs and adds the new seeds).
    None when the first metric's verdict is not "within seed noise"."""
    row = rows[0] if rows else None
    if row is None or row.p_value is None or row.p_value < ALPHA or row.difference == 0.0:
        return None
    have = min(row.n_default, row.n_best)
    if row.seeds_needed is None:
        return (f"{row.metric}: the difference ({row.difference:+.4f}) is within seed noise and so small next to "
                f"the spread between seeds that more than 1000 seeds per side would be needed to detect it; "
                "treat the two configurations as equal.")
    return (f"{row.metric}: to tell whether the {row.difference:+.4f} difference is real, about "
            f"{row.seeds_needed} seeds per side would detect it at p < {ALPHA} with {POWER:.0%} power (Welch's "
            f"t-test, taking the observed seed spreads as the true ones; {have} per side now). Run "
            f"`lmtune final {study_dir} --seeds {max(row.seeds_needed, have)}`: the finished runs are kept, "
            "only the new seeds train.")


def search_cost(trials: Sequence[FrozenTrial]) -> dict[str, Any]:
    """What the search cost: trial counts by state, train tokens, wall time and overhead share.

    Every trial counts, pruned and failed ones too (they consumed compute). ``overhead_share`` is
    overhead seconds over wall seconds, ``None`` when no wall time was recorded.
    """
    by_state = {s.name: sum(t.state == s for t in trials) for s in TrialState}
    totals = cost_totals(trials)
    wall = float(totals["wall_time_s"])
    return {
        "n_trials": len(trials),
        "by_state": {k: v for k, v in by_state.items() if v},
        **totals,
        "overhead_share": float(totals["overhead_s"]) / wall if wall > 0 else None,
    }


def final_cost(final: Mapping[str, Any]) -> dict[str, Any]:
    """Cost of the final retraining runs, in total and per ``which`` (``default`` first, then ``best``)."""
    runs = list(final.get("runs", []))

    def totals(selected: list[Mapping[str, Any]]) -> dict[str, Any]:
        return {
            "runs": len(selected),
            "train_tokens": sum(int(r.get("train_tokens", 0)) for r in selected),
            "wall_time_s": sum(float(r.get("wall_time_s", 0.0)) for r in selected),
        }

    whiches = sorted({str(r.get("which")) for r in runs}, key=lambda w: (w != "default", w != "best", w))
    return {
        **totals(runs),
        "by_which": {w: totals([r for r in runs if str(r.get("which")) == w]) for w in whiches},
        "machine": final.get("machine"),
    }


def _reason(r: TrialRecord) -> str:
    if r.state == TrialState.FAIL.name:
        return r.fail_reason or "failed (no reason recorded)"
    if r.state == TrialState.PRUNED.name:
        return f"pruned at {r.pruned_at_units} units" if r.pruned_at_units is not None else "pruned"
    return ""


def _row(trial: FrozenTrial) -> TrialRow:
    r = record.read(trial)
    return TrialRow(number=r.number, state=r.state, value=r.value, params=r.params, train_tokens=r.train_tokens,
                    wall_time_s=r.wall_time_s, reason=_reason(r), is_default=r.is_default, precision=r.precision)


def trial_table(trials: Sequence[FrozenTrial]) -> list[TrialRow]:
    """One row per trial, in trial-number order."""
    return [_row(t) for t in sorted(trials, key=lambda t: t.number)]


def failures(trials: Sequence[FrozenTrial]) -> list[TrialRow]:
    """The FAIL trials' rows; ``reason`` is the trial's ``fail_reason`` attr."""
    return [row for row in trial_table(trials) if row.state == TrialState.FAIL.name]
