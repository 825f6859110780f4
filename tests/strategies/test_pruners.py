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


def test_asha_rungs_are_laid_from_the_end_so_none_falls_just_before_it() -> None:
    """Optuna's successive halving lays rungs from the first up (first x 3^k): 10 units gave rungs at 3 and 9,
    so a trial could be stopped at 9 of 10, its run all but paid for. lmtune's ASHA lays them from the end,
    as its multi-objective halving and Hyperband do."""
    from lmtune.strategies import rungs_from_end

    assert rungs_from_end(10, 3, 3) == [3]
    assert rungs_from_end(16, 5, 3) == [5]
    assert rungs_from_end(20, 6, 3) == [7]
    assert rungs_from_end(24, 1, 3) == [1, 3, 8]
    assert rungs_from_end(27, 3, 3) == [3, 9]
    pruner = make_pruner("asha", max_units=10, reduction_factor=3)  # first rung: 10 // 3 = 3
    study = optuna.create_study(direction="maximize", pruner=pruner)
    for _ in range(6):
        _finished(study, None, [0.5 + 0.04 * k for k in range(10)])

    def first_stop(values: list[float]) -> int | None:
        t = study.ask()
        for step, v in enumerate(values, start=1):
            t.report(v, step=step)
            if t.should_prune():
                study.tell(t, state=optuna.trial.TrialState.PRUNED)
                return step
        study.tell(t, values[-1])
        return None

    # ahead at 3, far behind at 9: with a rung at 9 it would be stopped there; now it runs to its end
    assert first_stop([0.6, 0.61, 0.62, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1]) is None
    assert first_stop([0.1] * 10) == 3  # behind at the rung: stopped there


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_asha_decides_as_optunas_successive_halving_where_their_rungs_agree(seed: int) -> None:
    """27 units from a first rung of 3: rungs 3 and 9 either way (Optuna's third, 27, is the end, where nothing
    is stopped). Random curves, trial by trial: the same trials stopped at the same steps."""
    import random

    rng = random.Random(seed)
    ours = optuna.create_study(direction="maximize", pruner=make_pruner("asha", max_units=27, min_units=3))
    theirs = optuna.create_study(direction="maximize",
                                 pruner=optuna.pruners.SuccessiveHalvingPruner(min_resource=3, reduction_factor=3))
    for _ in range(25):
        level, slope = rng.random(), rng.uniform(-0.01, 0.02)
        values = [level + slope * k + rng.gauss(0, 0.02) for k in range(26)]  # up to 26: before the end
        stopped = []
        for study in (ours, theirs):
            t = study.ask()
            at = None
            for step, v in enumerate(values, start=1):
                t.report(v, step=step)
                if t.should_prune():
                    at = step
                    break
            study.tell(t, state=optuna.trial.TrialState.PRUNED) if at else study.tell(t, values[-1])
            stopped.append(at)
        assert stopped[0] == stopped[1]
