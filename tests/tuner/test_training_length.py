"""`epochs` and `max_steps` in a space set each trial's own training length, through the real driver."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest

from conftest import run_lmtune, set_args, tiny_overrides
from lmtune.space import build_space
from lmtune.strategies import startup_trials
from lmtune.study import record
from lmtune.tuner.plan import longest_examples, longest_fitting, longest_length, training_examples

ROOT = Path(__file__).parents[2]
QUICKSTART = str(ROOT / "examples" / "quickstart.yaml")
DEFAULTS = {"epochs": 2.0, "max_steps": None, "batch_size": 16}


def test_the_longest_length_that_fits_what_is_left() -> None:
    """What auto plans when the budget left cannot train the longest length: the longest that fits."""
    ints = build_space({"epochs": {"type": "int", "low": 1, "high": 4}})
    assert longest_fitting(ints, DEFAULTS, train_rows=100, max_examples=399) == {"epochs": 3}
    assert longest_fitting(ints, DEFAULTS, train_rows=100, max_examples=400) == {"epochs": 4}
    assert longest_fitting(ints, DEFAULTS, train_rows=100, max_examples=99) is None  # not even 1 epoch
    floats = build_space({"epochs": {"type": "float", "low": 0.5, "high": 3.0}})
    assert longest_fitting(floats, DEFAULTS, train_rows=100, max_examples=170) == {"epochs": 1.7}
    steps = build_space({"max_steps": {"type": "categorical", "choices": [10, 50, 100]}})
    assert longest_fitting(steps, DEFAULTS, train_rows=100, max_examples=900) == {"max_steps": 50}  # 50 x 16
    assert longest_fitting(build_space({"learning_rate": {"type": "float", "low": 1e-5, "high": 1e-3}}), DEFAULTS,
                           train_rows=100, max_examples=10**6) is None  # the space searches no length


def test_training_length_in_examples() -> None:
    assert training_examples({"epochs": 1.5, "max_steps": None}, train_rows=100, default_batch_size=16) == 150
    assert training_examples({"epochs": 3, "max_steps": 5}, train_rows=100, default_batch_size=16) == 80


def test_the_longest_length_the_space_allows_is_the_maximum_resource() -> None:
    rows = 100
    assert longest_examples(build_space({}), DEFAULTS, train_rows=rows) == 200
    assert longest_examples(build_space({"epochs": {"type": "int", "low": 1, "high": 4}}), DEFAULTS,
                            train_rows=rows) == 400
    assert longest_examples(build_space({"max_steps": [None, 50]}), DEFAULTS, train_rows=rows) == 800
    assert longest_examples(build_space({"epochs": [0.5, 1]}), DEFAULTS, train_rows=rows) == 100


def test_start_up_trials_are_sized_to_the_budget() -> None:
    assert startup_trials(5) == 2 and startup_trials(12) == 3 and startup_trials(100) == 10
    assert startup_trials(5, 4) == 4  # what the user asked for


@pytest.mark.slow
def test_a_study_over_epochs_trains_each_trial_its_own_length(tiny_model: Path, tiny_csv: Path,
                                                              tmp_path: Path) -> None:
    d = tmp_path / "len"
    over = [*tiny_overrides(tiny_model, tiny_csv, d), "training.max_steps=null", "training.epochs=1",
            "search.strategy=grid", "search.include_default=false",
            "search.space={epochs: {type: categorical, choices: [1, 3]}}"]
    out = run_lmtune("tune", QUICKSTART, *set_args(over), "--n-trials", "2")
    assert out.returncode == 0, out.stderr
    study = optuna.load_study(study_name=None, storage=f"sqlite:///{d / 'study.db'}")
    done = {t.params["epochs"]: t for t in study.trials if t.state.name == "COMPLETE"}
    assert set(done) == {1, 3}
    assert done[3].user_attrs["train_tokens"] == 3 * done[1].user_attrs["train_tokens"]
    examples = {e: t.user_attrs["curve"][-1]["examples"] for e, t in done.items()}
    assert examples == {1: 96, 3: 288}
    # each trial carries its planned length, so pruners compare it only with trials of that length
    assert {e: record.read(t).planned_examples for e, t in done.items()} == {1: 96, 3: 288}
    # rungs stay in examples: both trials evaluated at the same amounts of data up to the shorter length
    rungs = {e: [p["units"] for p in t.user_attrs["curve"]] for e, t in done.items()}
    assert rungs[3][: len(rungs[1])] == rungs[1]
    meta = json.loads((d / "lmtune.json").read_text())
    assert meta["total_examples"] == 288  # the longest length is the pruners' maximum resource


@pytest.mark.slow
def test_strategy_auto_runs_tpe_with_asha_on_eval_loss(tiny_model: Path, tiny_csv: Path, tmp_path: Path) -> None:
    d = tmp_path / "auto"
    over = [*tiny_overrides(tiny_model, tiny_csv, d), "search.strategy=auto"]
    out = run_lmtune("tune", QUICKSTART, *set_args(over), "--n-trials", "3")
    assert out.returncode == 0, out.stderr
    study = optuna.load_study(study_name=None, storage=f"sqlite:///{d / 'study.db'}")
    assert len([t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")]) == 3
    first = study.trials[0]
    assert first.intermediate_values  # the pruning value is -eval_loss (loss turned to the study's direction)
    losses = [p["metrics"]["eval_loss"] for p in first.user_attrs["curve"]]
    assert [round(-v, 6) for v in first.intermediate_values.values()] == [round(v, 6) for v in losses]


def test_the_longest_length_values() -> None:
    assert longest_length(build_space({}), DEFAULTS, train_rows=100) == {}
    assert longest_length(build_space({"epochs": {"type": "int", "low": 1, "high": 4}}), DEFAULTS,
                          train_rows=100) == {"epochs": 4}
    space = build_space({"epochs": [1, 2], "max_steps": [None, 50], "learning_rate": [1e-4, 1e-3]})
    assert longest_length(space, DEFAULTS, train_rows=100) == {"epochs": 1, "max_steps": 50}  # 50 × 16 > 200


@pytest.mark.slow
def test_strategy_auto_plans_drawn_trials_at_the_longest_length(tiny_model: Path, tiny_csv: Path,
                                                                tmp_path: Path) -> None:
    """auto's length is ASHA's resource: every drawn configuration trains the longest length the space
    allows (and the run says so); the default trial keeps its own length. A searched length under
    another strategy stays a choice (the grid test above trains 1 and 3 epochs)."""
    d = tmp_path / "auto-len"
    over = [*tiny_overrides(tiny_model, tiny_csv, d), "training.max_steps=null", "training.epochs=1",
            "search.strategy=auto", "search.include_default=true", "search.pruner=none",
            "search.space={epochs: {type: int, low: 1, high: 3}, learning_rate: {type: float, low: 1e-4, high: 1e-3}}"]
    out = run_lmtune("tune", QUICKSTART, *set_args(over), "--n-trials", "4")
    assert out.returncode == 0, out.stderr
    assert "every configuration it draws trains epochs=3" in out.stderr
    study = optuna.load_study(study_name=None, storage=f"sqlite:///{d / 'study.db'}")
    assert study.user_attrs["lmtune.auto_length"] == {"epochs": 3}
    trials = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(trials) == 4
    default = [t for t in trials if record.read(t).is_default]
    drawn = [t for t in trials if not record.read(t).is_default]
    assert [t.params["epochs"] for t in default] == [1]
    assert [t.params["epochs"] for t in drawn] == [3, 3, 3]
    assert len({t.params["learning_rate"] for t in drawn}) == 3  # the rest is still drawn
    tokens = {t.user_attrs["train_tokens"] for t in drawn}
    assert tokens == {3 * default[0].user_attrs["train_tokens"]}  # what it recorded is what it ran
