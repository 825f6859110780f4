"""Re-queueing an interrupted trial: the configuration it ran (or was queued with), never a fresh draw
under its marks; a trial killed before it drew anything is not queued at all."""

from __future__ import annotations

import optuna

from lmtune.study import record
from lmtune.study.store import recover_interrupted, requeue


def _study() -> optuna.Study:
    return optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))


def test_a_default_killed_before_its_first_suggest_comes_back_with_its_queued_point() -> None:
    study = _study()
    study.enqueue_trial({"lr": 2e-5}, user_attrs=record.enqueue_attrs(is_default=True))
    killed = study.ask()  # RUNNING, no params yet: the driver died here
    assert killed.params == {}
    for stale in recover_interrupted(study):
        requeue(study, stale)
    again = study.ask()
    assert again.suggest_float("lr", 1e-5, 1e-3, log=True) == 2e-5
    assert again.user_attrs.get("is_default") is True
    assert again.user_attrs.get("retry_of") == killed.number


def test_a_drawn_trial_comes_back_with_what_it_drew() -> None:
    study = _study()
    killed = study.ask()
    drawn = killed.suggest_float("lr", 1e-5, 1e-3, log=True)
    for stale in recover_interrupted(study):
        requeue(study, stale)
    again = study.ask()
    assert again.suggest_float("lr", 1e-5, 1e-3, log=True) == drawn


def test_a_trial_that_drew_nothing_and_carries_nothing_is_not_queued() -> None:
    study = _study()
    study.ask()
    stale = recover_interrupted(study)
    assert len(stale) == 1
    requeue(study, stale[0])
    waiting = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,))
    assert waiting == []
