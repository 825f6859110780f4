"""Series tables: Spearman vs scipy, learning curves, PBT lineage, proxy transfer, importances."""

from __future__ import annotations

import math
from itertools import pairwise
from typing import Any

import numpy as np
import optuna
import pytest
from optuna.distributions import BaseDistribution, FloatDistribution
from optuna.trial import FrozenTrial, TrialState
from scipy import stats

from lmtune.report.series import (
    compute_series,
    expected_best,
    importances,
    learning_curves,
    pbt_lineage,
    transfer_summary,
)
from lmtune.report.stats import spearman

DIST: dict[str, BaseDistribution] = {
    "lr": FloatDistribution(1e-5, 1e-2, log=True),
    "wd": FloatDistribution(0.0, 0.1),
}


def _trial(number: int, state: TrialState, value: float | None = None, **attrs: Any) -> FrozenTrial:
    params = {"lr": 1e-4 * (number + 1), "wd": 0.01 * number}
    trial = optuna.create_trial(state=state, value=value, params=params, distributions=DIST, user_attrs=attrs)
    trial.number = number
    return trial


@pytest.mark.parametrize(
    ("xs", "ys"),
    [
        ([1.0, 2.0, 3.0, 4.0, 5.0], [5.0, 6.0, 7.0, 8.0, 7.0]),
        ([1.0, 2.0, 2.0, 3.0, 3.0, 3.0], [1.0, 1.0, 2.0, 2.0, 3.0, 1.0]),  # ties on both sides
        ([0.8, 0.8, 0.8, 0.9], [0.1, 0.3, 0.2, 0.4]),
        ([3.0, 1.0], [1.0, 3.0]),
    ],
)
def test_spearman_matches_scipy(xs: list[float], ys: list[float]) -> None:
    assert spearman(xs, ys) == pytest.approx(stats.spearmanr(xs, ys).statistic)


def test_spearman_matches_scipy_on_random_data_with_ties() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        xs = rng.integers(0, 5, size=12).astype(float).tolist()
        ys = rng.normal(size=12).round(1).tolist()
        assert spearman(xs, ys) == pytest.approx(stats.spearmanr(xs, ys).statistic)


def test_spearman_edge_cases() -> None:
    assert math.isnan(spearman([1.0], [2.0]))
    assert math.isnan(spearman([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]))
    with pytest.raises(ValueError):
        spearman([1.0, 2.0], [1.0])


def _point(units: int, acc: float) -> dict[str, Any]:
    return {
        "step": 4 * units,
        "units": units,
        "examples": 32 * units,
        "tokens": 999,
        "metrics": {"eval_accuracy": acc},
    }


def test_learning_curves_sorted_with_state() -> None:
    trials = [
        _trial(1, TrialState.PRUNED, curve=[_point(2, 0.6), _point(1, 0.5)]),
        _trial(0, TrialState.COMPLETE, 0.8, curve=[_point(1, 0.7), _point(2, 0.8)], is_default=True),
        _trial(2, TrialState.FAIL, curve=[{"step": 3, "metrics": {"eval_accuracy": 0.1}}]),
        _trial(3, TrialState.COMPLETE, 0.8, curve=[{"units": 1, "metrics": {"eval_loss": 0.3}}]),
    ]
    curves = learning_curves(trials, "eval_accuracy")
    assert [(c.number, c.state) for c in curves] == [(0, "COMPLETE"), (1, "PRUNED"), (2, "FAIL")]
    # x is train examples seen (equal data across batch sizes)
    assert curves[0].is_default and curves[0].points == [(32, 0.7), (64, 0.8)]
    assert curves[1].points == [(32, 0.5), (64, 0.6)]
    assert curves[2].points == [(3, 0.1)]  # falls back to units, then step, for older records


def _pbt(member: int, generation: int, parent: int | None, lr: float) -> dict[str, Any]:
    schedule = [{"units": 4 * g, "config": {"lr": lr}} for g in range(generation + 1)]
    return {"member": member, "generation": generation, "parent_trial": parent, "schedule": schedule}


def test_pbt_lineage() -> None:
    assert pbt_lineage([_trial(0, TrialState.COMPLETE, 0.5)]) is None
    trials = [
        _trial(0, TrialState.COMPLETE, 0.5, pbt=_pbt(0, 0, None, 1e-4)),
        _trial(1, TrialState.COMPLETE, 0.7, pbt=_pbt(1, 0, None, 2e-4)),
        _trial(2, TrialState.COMPLETE, 0.9, pbt=_pbt(0, 1, 1, 3e-4)),
        _trial(3, TrialState.COMPLETE, 0.6, pbt=_pbt(1, 1, 1, 4e-4)),
    ]
    lineage = pbt_lineage(trials)
    assert lineage is not None
    assert [(n.trial, n.member, n.generation) for n in lineage.nodes] == [
        (0, 0, 0),
        (1, 1, 0),
        (2, 0, 1),
        (3, 1, 1),
    ]
    assert lineage.edges == [(1, 2), (1, 3)]
    assert lineage.best_member == 0 and lineage.best_trial == 2
    assert lineage.schedules[0] == [
        {"units": 0, "config": {"lr": 3e-4}},
        {"units": 4, "config": {"lr": 3e-4}},
    ]
    minimized = pbt_lineage(trials, direction="minimize")
    assert minimized is not None and minimized.best_trial == 0


def test_transfer_summary_pairs_and_warnings() -> None:
    proxy = [_trial(i, TrialState.COMPLETE, 0.1 * i, train_tokens=10, wall_time_s=1.0) for i in range(4)]
    target = [
        _trial(i, TrialState.COMPLETE, 0.2 * i, proxy_value=0.1 * i, train_tokens=100) for i in range(4)
    ]
    target.append(_trial(4, TrialState.PRUNED, proxy_value=0.5))
    good = transfer_summary(proxy, target)
    assert [p.target_trial for p in good.pairs] == [0, 1, 2, 3]
    assert good.rho == pytest.approx(1.0) and good.warning is None
    assert good.proxy_cost == {"trials": 4, "train_tokens": 40, "wall_time_s": 4.0, "overhead_s": 0.0}
    assert good.target_cost["trials"] == 5 and good.target_cost["train_tokens"] == 400
    reversed_target = [_trial(i, TrialState.COMPLETE, -0.2 * i, proxy_value=0.1 * i) for i in range(4)]
    bad = transfer_summary(proxy, reversed_target)
    assert bad.rho == pytest.approx(-1.0) and bad.warning is not None and "rho" in bad.warning
    few = transfer_summary(proxy, target[:2])
    assert len(few.pairs) == 2 and few.warning is not None and "only 2" in few.warning


def _study(n_complete: int, params: dict[str, FloatDistribution]) -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize")
    for i in range(n_complete):
        values = {
            name: dist.low + (dist.high - dist.low) * ((i * 7 + k * 3) % 10) / 10
            for k, (name, dist) in enumerate(params.items())
        }
        study.add_trial(
            optuna.create_trial(value=sum(values.values()), params=values, distributions=dict(params))
        )
    return study


def test_importances_with_reasons() -> None:
    two = {"a": FloatDistribution(0.0, 1.0), "b": FloatDistribution(0.0, 100.0)}
    empty = importances(_study(1, two))
    assert empty.values == {} and empty.reason is not None and "at least 2" in empty.reason
    single = importances(_study(5, {"a": FloatDistribution(0.0, 1.0)}))
    assert single.values == {} and single.reason is not None and "only 1" in single.reason
    result = importances(_study(12, two))
    assert result.reason is None and set(result.values) == {"a", "b"}
    assert sum(result.values.values()) == pytest.approx(1.0)
    assert result.values["b"] > result.values["a"]  # b's range dominates the objective


def test_expected_best_follows_dodge_et_al() -> None:
    # two values: one draw is their mean; the best of two draws (with replacement) is 0 only if both are 0
    assert expected_best([0.0, 1.0], "maximize") == pytest.approx([0.5, 0.75])
    assert expected_best([0.0, 1.0], "minimize") == pytest.approx([0.5, 0.25])
    rng = np.random.default_rng(0)
    values = rng.normal(size=7).tolist()
    draws = rng.choice(values, size=(200_000, 3)).max(axis=1).mean()  # Monte Carlo check of n = 3
    curve = expected_best(values, "maximize")
    assert curve[2] == pytest.approx(draws, abs=0.01)
    assert curve[0] == pytest.approx(np.mean(values)) and curve[-1] <= max(values)
    assert all(a <= b + 1e-12 for a, b in pairwise(curve))  # never falls


def test_compute_series_counts_every_ended_trial_and_keeps_the_best() -> None:
    trials = [_trial(0, TrialState.COMPLETE, 0.6, train_tokens=100, wall_time_s=2.0),
              _trial(1, TrialState.PRUNED, None, train_tokens=30, wall_time_s=1.0),
              _trial(2, TrialState.COMPLETE, 0.5, train_tokens=100, wall_time_s=2.0),
              _trial(3, TrialState.FAIL, None, train_tokens=10, wall_time_s=0.5),
              _trial(4, TrialState.COMPLETE, 0.7, train_tokens=100, wall_time_s=2.0),
              _trial(5, TrialState.RUNNING, None)]
    series = compute_series(trials, "maximize")
    assert series.points == [(100, 2.0, 0.6), (130, 3.0, 0.6), (230, 5.0, 0.6), (240, 5.5, 0.6), (340, 7.5, 0.7)]
    assert compute_series(trials, "minimize").points[2][2] == 0.5
