"""``budget.max_wall_time`` holds by prediction, as the token and cost caps do (`lmtune.tuner.budget`): a trial
starts only if, at the launch-to-end seconds per example measured on its device kind, it ends before the
deadline; `auto`'s last trial is planned from the seconds left; a running trial whose next evaluation would end
after the deadline stops there. Before, trials started until the deadline and ran past it (a whole trial over)."""

from __future__ import annotations

import time
from pathlib import Path

import optuna
import pytest

from conftest import tiny_overrides
from lmtune.config import BudgetSection, load_config
from lmtune.execution.simulated import SimulatedExecutor
from lmtune.study import record
from lmtune.tuner import Tuner
from lmtune.tuner.budget import Budget

QUICKSTART = str(Path(__file__).parents[2] / "examples" / "quickstart.yaml")


def _measured(budget: Budget, seconds: float, examples: int) -> None:
    """One finished trial of ``examples`` that took ``seconds`` launch to end, on the CPU."""
    budget.started(100, device="cpu", devices=1, examples=examples, at=time.monotonic() - seconds)
    budget.ended(100, examples=examples)


def test_a_launch_that_would_end_after_the_deadline_is_refused_and_the_room_is_counted_in_examples() -> None:
    study = optuna.create_study()
    budget = Budget(BudgetSection(max_wall_time=10), max_failures=5, t0=time.monotonic() - 4)  # ~6 s left
    assert budget.launch_reason(study, 10**6, 10) == ""  # nothing measured yet: the first trial starts
    assert budget.examples_left(study, 10) is None
    _measured(budget, 2.0, 100)  # 0.02 s per example
    assert budget.launch_reason(study, 200, 10) == ""  # ~4 s: ends before the deadline
    why = budget.launch_reason(study, 400, 10)  # ~8 s: would not
    assert why.startswith("budget: max_wall_time 10s reached") and "cannot train another trial" in why
    assert budget.examples_left(study, 10) == pytest.approx(6 / 0.02 * 0.97, rel=0.02)
    assert Budget(BudgetSection(max_train_tokens=10**9), max_failures=5, t0=0.0).time_left() is None


def test_a_running_trial_stops_at_the_evaluation_whose_next_would_end_after_the_deadline() -> None:
    study = optuna.create_study()
    budget = Budget(BudgetSection(max_wall_time=10), max_failures=5, t0=time.monotonic() - 4)  # ~6 s left
    budget.started(1, device="cpu", devices=1, examples=1000, at=time.monotonic() - 3)
    assert not budget.running_at(study, 1, tokens=0, examples=100, examples_per_unit=100, units=1)  # 3 s < 6 s
    late = Budget(BudgetSection(max_wall_time=10), max_failures=5, t0=time.monotonic() - 8)  # ~2 s left
    late.started(1, device="cpu", devices=1, examples=1000, at=time.monotonic() - 3)
    assert late.running_at(study, 1, tokens=0, examples=100, examples_per_unit=100, units=1)  # 3 s > 2 s
    assert late.why[1].startswith("budget: max_wall_time 10s would be crossed by this trial's next evaluation")
    # at its planned end there is no next evaluation: never stopped there
    assert not late.running_at(study, 1, tokens=0, examples=1000, examples_per_unit=100, units=10)


@pytest.mark.slow
def test_auto_plans_its_last_trial_from_the_seconds_left_and_ends_by_the_deadline(tiny_model: Path, tiny_csv: Path,
                                                                                  tmp_path: Path) -> None:
    """A 3-epoch trial here is 6 evaluation units of 0.6 s (~3.6 s launch to end); a deadline ~1.6 trials away:
    the first trial trains 3 epochs, the last is planned from the seconds left (not whole epochs) and completes,
    and the study ends by the deadline, most of it spent. Before, a second 3-epoch trial started and ran past
    it. The deadline is counted from the first launch, not from the run's start (as a user's is): the
    set-up's seconds vary with the machine's load by more than a trial, which made the number of trials that
    fit a matter of chance."""
    from lmtune.tuner.drive import drive

    sets = [*tiny_overrides(tiny_model, tiny_csv, tmp_path / "s"), "training.max_steps=null", "training.epochs=1",
            "search.strategy=auto", "search.include_default=false", "execution.workers=1", "execution.device=cpu",
            "search.space={epochs: {type: int, low: 1, high: 3}, learning_rate: {type: float, low: 1e-5, "
            "high: 1e-2, log: true}}"]
    probe = Tuner(load_config(QUICKSTART, sets), n_trials=1, backend=SimulatedExecutor(workers=1, unit_s=0.6)).run()
    trial_s = record.records(probe.study.trials)[0].wall_time_s or 0.0
    cap = 1.6 * trial_s
    capped = load_config(QUICKSTART, [*sets, f"study.dir={tmp_path / 'capped'}", f"budget.max_wall_time={cap:.3f}"])
    tuner = Tuner(capped, n_trials=8, backend=SimulatedExecutor(workers=1, unit_s=0.6))
    start = time.monotonic()
    summary, scheduler = tuner.prepare(start)
    assert tuner._budget is not None and tuner._budget.t0 == start  # `run` counts from its start, set-up included
    t0 = tuner._budget.t0 = time.monotonic()
    summary.stop_reason = drive(scheduler, tuner.backend) or scheduler.finished_reason
    wall = time.monotonic() - t0
    recs = record.records(summary.study.trials)
    shown = [(r.state, r.config.get("epochs"), r.stop_reason) for r in recs]
    assert recs[0].config["epochs"] == 3 and recs[0].state == "COMPLETE", shown
    assert len(recs) == 2, shown
    last = recs[-1]
    assert last.state == "COMPLETE" and last.value is not None, (last.state, last.stop_reason)
    assert 0.9 <= last.config["epochs"] < 3, shown  # planned from the seconds left (a whole length if that is it)
    assert summary.stop_reason.startswith("budget: max_wall_time"), summary.stop_reason
    assert wall <= cap + 0.3, (wall, cap)  # not a whole trial (~3.6 s) past the deadline
    assert wall >= 0.8 * cap, (wall, cap)  # and the time given was used
