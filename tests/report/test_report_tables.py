"""Report tables on known inputs: seed summaries, the default-vs-optimized verdict, costs, trial rows."""

from __future__ import annotations

from typing import Any

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import FrozenTrial, TrialState
from scipy import stats

from lmtune.report.tables import (
    comparison_table,
    failures,
    final_cost,
    higher_is_better_default,
    search_cost,
    selection_gap,
    selection_gap_text,
    summarize,
    trial_table,
)


def _final(metric: str, default: list[float], best: list[float]) -> dict[str, Any]:
    runs = [
        {
            "which": which,
            "seed": seed,
            "config": {},
            "metrics": {metric: v},
            "train_tokens": 100,
            "wall_time_s": 2.0,
        }
        for which, values in (("default", default), ("best", best))
        for seed, v in enumerate(values)
    ]
    return {"metric_names": [metric], "seeds": list(range(len(default))), "runs": runs, "machine": "test box"}


def _trial(state: TrialState, value: float | None = None, **attrs: Any) -> FrozenTrial:
    lr = attrs.pop("lr", 1e-4)
    return optuna.create_trial(
        state=state,
        value=value,
        params={"lr": lr},
        distributions={"lr": FloatDistribution(1e-5, 1e-2, log=True)},
        user_attrs=attrs,
    )


def test_summarize_uses_sample_std() -> None:
    mean, std = summarize([0.80, 0.81, 0.82])
    assert mean == pytest.approx(0.81)
    assert std == pytest.approx(0.01)
    assert summarize([0.5]) == (0.5, 0.0)
    with pytest.raises(ValueError):
        summarize([])


def test_clear_gain_is_a_significant_improvement() -> None:
    default, best = [0.80, 0.81, 0.82], [0.85, 0.86, 0.87]
    (row,) = comparison_table(_final("test_accuracy", default, best))
    assert row.higher_is_better
    assert (row.default_mean, row.default_std) == (pytest.approx(0.81), pytest.approx(0.01))
    assert (row.best_mean, row.best_std) == (pytest.approx(0.86), pytest.approx(0.01))
    assert row.difference == pytest.approx(0.05)
    assert row.p_value == pytest.approx(stats.ttest_ind(default, best, equal_var=False).pvalue)
    assert row.p_value is not None and row.p_value < 0.01
    assert row.significant and row.improvement and row.exceeds_spread
    assert row.verdict.startswith("better, significant")


def test_overlapping_noisy_seeds_are_not_significant() -> None:
    (row,) = comparison_table(_final("test_accuracy", [0.80, 0.86, 0.83], [0.82, 0.88, 0.81]))
    assert row.difference == pytest.approx(0.02 / 3)
    assert row.significant is False
    assert not row.exceeds_spread
    assert row.verdict.startswith("within seed noise")


def test_loss_direction_lower_is_better() -> None:
    (row,) = comparison_table(_final("test_loss", [0.40, 0.41, 0.39], [0.35, 0.36, 0.34]))
    assert not row.higher_is_better
    assert row.difference == pytest.approx(-0.05)
    assert row.improvement and row.significant
    assert row.verdict.startswith("better")
    (worse,) = comparison_table(_final("eval_perplexity", [10.0, 10.1, 9.9], [11.0, 11.1, 10.9]))
    assert not worse.improvement and worse.significant
    assert worse.verdict.startswith("worse")


def test_direction_override_and_name_guess() -> None:
    assert not higher_is_better_default("test_loss")
    assert not higher_is_better_default("perplexity")
    assert higher_is_better_default("test_f1")
    assert higher_is_better_default("eval_accuracy")
    final = _final("score", [3.0, 3.1, 2.9], [2.0, 2.1, 1.9])
    (row,) = comparison_table(final, higher_is_better={"score": False})
    assert row.improvement


def test_single_seed_is_not_enough() -> None:
    (row,) = comparison_table(_final("test_accuracy", [0.80], [0.90]))
    assert row.p_value is None and row.significant is None
    assert row.default_std == 0.0
    assert row.verdict.startswith("not enough seeds")


def test_identical_seeds_with_a_difference_are_significant() -> None:
    (row,) = comparison_table(_final("test_accuracy", [0.8, 0.8], [0.9, 0.9]))
    assert row.p_value == 0.0 and row.significant


def test_missing_side_raises() -> None:
    final = _final("test_accuracy", [0.8, 0.81], [0.9, 0.91])
    final["runs"] = [r for r in final["runs"] if r["which"] == "default"]
    with pytest.raises(ValueError, match="best"):
        comparison_table(final)


def test_final_cost_splits_default_and_best() -> None:
    cost = final_cost(_final("test_accuracy", [0.8, 0.81], [0.9, 0.91]))
    assert cost["runs"] == 4 and cost["train_tokens"] == 400 and cost["wall_time_s"] == pytest.approx(8.0)
    assert list(cost["by_which"]) == ["default", "best"]
    assert cost["by_which"]["best"] == {"runs": 2, "train_tokens": 200, "wall_time_s": 4.0}
    assert cost["machine"] == "test box"


def _trials() -> list[FrozenTrial]:
    trials = [
        _trial(
            TrialState.COMPLETE, 0.8, train_tokens=1000, wall_time_s=10.0, overhead_s=1.0, is_default=True
        ),
        _trial(TrialState.COMPLETE, 0.9, lr=3e-4, train_tokens=1000, wall_time_s=10.0, overhead_s=1.0),
        _trial(TrialState.PRUNED, train_tokens=400, wall_time_s=5.0, overhead_s=1.0, pruned_at_units=2),
        _trial(TrialState.FAIL, wall_time_s=5.0, overhead_s=2.0, fail_reason="out of memory"),
    ]
    for number, trial in enumerate(trials):
        trial.number = number
    return trials


def test_search_cost_counts_every_trial() -> None:
    cost = search_cost(_trials())
    assert cost["n_trials"] == 4
    assert cost["by_state"] == {"COMPLETE": 2, "PRUNED": 1, "FAIL": 1}
    assert cost["train_tokens"] == 2400
    assert cost["wall_time_s"] == pytest.approx(30.0)
    assert cost["overhead_share"] == pytest.approx(5.0 / 30.0)
    assert search_cost([])["overhead_share"] is None


def test_trial_table_and_failures() -> None:
    rows = trial_table(_trials())
    assert [r.state for r in rows] == ["COMPLETE", "COMPLETE", "PRUNED", "FAIL"]
    assert rows[0].is_default and not rows[1].is_default
    assert rows[1].value == 0.9 and rows[1].params == {"lr": 3e-4}
    assert rows[2].reason == "pruned at 2 units" and rows[2].value is None
    assert rows[3].reason == "out of memory" and rows[3].train_tokens is None
    (failed,) = failures(_trials())
    assert failed.number == 3 and failed.reason == "out of memory"


def test_selection_gap_is_the_search_value_minus_the_retrained_test_mean() -> None:
    final = _final("test_accuracy", [0.6, 0.62], [0.70, 0.74])
    for run, val in zip([r for r in final["runs"] if r["which"] == "best"], [0.75, 0.77], strict=True):
        run["validation_metrics"] = {"eval_accuracy": val}
    final["best_trial"] = 1
    rows = trial_table([_trial(TrialState.COMPLETE, 0.7), _trial(TrialState.COMPLETE, 0.8),
                        _trial(TrialState.PRUNED)])
    rows = [type(r)(**{**r.__dict__, "number": i}) for i, r in enumerate(rows)]
    gap = selection_gap(final, rows, "eval_accuracy")
    assert gap is not None and gap.search_value == 0.8 and gap.n_trials == 2
    assert gap.validation == pytest.approx((0.76, stats.tstd([0.75, 0.77])))
    assert gap.test is not None and gap.test[0] == pytest.approx(0.72) and gap.gap == pytest.approx(0.08)
    assert "selection gap (search − test) +0.0800" in selection_gap_text(gap)
    assert selection_gap({**final, "best_trial": 7}, rows, "eval_accuracy") is None
