"""Pruners compare a trial only with trials planned to train as long: at equal data a long trial is
still at a high learning rate where a short one has finished its decayed schedule."""

import optuna
import pytest

from lmtune.strategies import make_pruner
from lmtune.study import record
from lmtune.study.record import planned_examples_of

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _finished(study: optuna.Study, length: int | None, values: list[float]) -> None:
    """A trial that reported ``values`` at steps 1.. and completed."""
    t = study.ask()
    if length is not None:
        record.write(t, planned_examples=length)
    for step, v in enumerate(values, start=1):
        t.report(v, step=step)
        t.should_prune()  # ASHA records a trial's rung values when asked; a finished trial was asked
    study.tell(t, values[-1])


def _is_pruned_at(study: optuna.Study, length: int | None, values: list[float]) -> bool:
    t = study.ask()
    if length is not None:
        record.write(t, planned_examples=length)
    pruned = False
    for step, v in enumerate(values, start=1):
        t.report(v, step=step)
        pruned = t.should_prune()
    study.tell(t, state=optuna.trial.TrialState.PRUNED if pruned else optuna.trial.TrialState.COMPLETE,
               values=None if pruned else [values[-1]])
    return pruned


@pytest.mark.parametrize("name", ["asha", "median", "hyperband"])
@pytest.mark.parametrize("tagged", [True, False])
def test_a_long_trial_is_compared_only_with_long_trials(name: str, tagged: bool) -> None:
    # one Hyperband bracket (max = min), so which bracket a trial hashes to cannot decide the outcome
    pruner = make_pruner(name, max_units=3 if name == "hyperband" else 9, reduction_factor=3, min_units=3,
                         length_of=planned_examples_of)
    study = optuna.create_study(study_name="per-length", direction="maximize", pruner=pruner)
    short, long_ = (3, 9) if tagged else (None, None)
    for _ in range(6):  # short trials: finished (decayed) schedules, high scores at every step
        _finished(study, short, [0.8, 0.85, 0.9])
    # a long trial, a third into its schedule, scores lower at the same steps: with like compared to like
    # (tagged) it is the only one of its length and goes on; untagged (the old rule) it is pruned
    assert _is_pruned_at(study, long_, [0.5, 0.55, 0.6]) is (not tagged)


def test_long_trials_still_compete_with_each_other() -> None:
    pruner = make_pruner("asha", max_units=9, reduction_factor=3, min_units=1, length_of=planned_examples_of)
    study = optuna.create_study(direction="maximize", pruner=pruner)
    for _ in range(6):
        _finished(study, 3, [0.8, 0.85, 0.9])
    for _ in range(5):
        _finished(study, 9, [0.7, 0.75, 0.8, 0.85, 0.9, 0.92, 0.93, 0.94, 0.95])
    assert _is_pruned_at(study, 9, [0.3, 0.3, 0.3])  # the worst long trial is cut among long ones
    assert _is_pruned_at(study, 3, [0.3, 0.3, 0.3])  # and the worst short one among short ones
    assert not _is_pruned_at(study, 9, [0.8, 0.85, 0.9])  # a long trial at the short ones' level goes on
