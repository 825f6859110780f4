"""Shared-study records on a heartbeat-enabled SQLite storage (the same RDB code paths as PostgreSQL):
stale trials are failed once with the reason and re-enqueued; duplicate enqueued points run once."""

import time
from pathlib import Path

import optuna
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState

from lmtune.study import shared
from lmtune.study.store import requeue, storage_for
from lmtune.tuner.coordination import SharedCoordination

LR = FloatDistribution(1e-5, 1e-2, log=True)


def _study(tmp_path: Path, **beat: int) -> optuna.Study:
    storage = storage_for(f"sqlite:///{tmp_path / 's.db'}", **beat)
    return optuna.create_study(storage=storage, study_name="s", load_if_exists=True)


def test_stale_trial_failed_once_with_reason_and_requeued(tmp_path: Path) -> None:
    study = _study(tmp_path, heartbeat_interval=1, grace_period=2)
    other = _study(tmp_path, heartbeat_interval=1, grace_period=2)  # a second worker on the same study
    study.enqueue_trial({"lr": 1e-3}, user_attrs={"is_default": True})
    trial = study.ask()
    trial.suggest_float("lr", 1e-5, 1e-2, log=True)
    study._storage.record_heartbeat(trial._trial_id)  # type: ignore[attr-defined]
    assert shared.fail_stale(study) == []  # alive
    time.sleep(3.2)
    first, second = shared.fail_stale(study), shared.fail_stale(other)
    assert [t.number for t in first] == [trial.number] and second == []
    failed = study.trials[trial.number]
    assert failed.state == TrialState.FAIL and failed.user_attrs["fail_reason"].startswith("lost: no heartbeat")
    requeue(study, first[0])
    waiting = study.get_trials(states=(TrialState.WAITING,))
    assert len(waiting) == 1 and waiting[0].system_attrs["fixed_params"] == {"lr": 1e-3}
    assert waiting[0].user_attrs == {"retry_of": trial.number, "is_default": True}


def test_trial_whose_worker_died_before_its_first_heartbeat_is_failed(tmp_path: Path) -> None:
    """Killed between ask() and the first heartbeat: Optuna never calls such a trial stale; lmtune does,
    once it has stayed without a heartbeat for the grace period by this worker's clock."""
    study = _study(tmp_path, heartbeat_interval=1, grace_period=2)
    dead, alive = study.ask(), study.ask()
    study._storage.record_heartbeat(alive._trial_id)  # type: ignore[attr-defined]
    seen: dict[int, float] = {}
    assert shared.fail_stale(study, seen) == [] and list(seen) == [dead._trial_id]
    time.sleep(2.5)
    study._storage.record_heartbeat(alive._trial_id)  # type: ignore[attr-defined]
    assert [t.number for t in shared.fail_stale(study, seen)] == [dead.number]
    assert study.trials[dead.number].user_attrs["fail_reason"].startswith("lost: no heartbeat")
    assert study.trials[alive.number].state == TrialState.RUNNING and seen == {}


def test_trial_without_heartbeat_support_is_left_alone(tmp_path: Path) -> None:
    study = _study(tmp_path)  # no heartbeat configured: nothing is ever stale
    study.ask()
    assert shared.fail_stale(study) == []


def test_duplicate_enqueued_point_runs_once(tmp_path: Path) -> None:
    study = _study(tmp_path, heartbeat_interval=1)
    coord = SharedCoordination(heartbeat_interval=1, grace_period=None)
    for _ in range(2):  # two workers enqueued the same grid point at the same moment
        study.enqueue_trial({"lr": 1e-3})
    study.enqueue_trial({"lr": 1e-4})
    first, second, third = study.ask(), study.ask(), study.ask()
    assert coord.claim(study, first) is None
    reason = coord.claim(study, second)
    assert reason is not None and reason.startswith(f"duplicate: trial {first.number}")
    assert coord.claim(study, third) is None
    sampled = study.ask()  # not enqueued: never a duplicate
    assert coord.claim(study, sampled) is None


def test_duplicate_of_failed_point_runs(tmp_path: Path) -> None:
    study = _study(tmp_path, heartbeat_interval=1)
    coord = SharedCoordination(heartbeat_interval=1, grace_period=None)
    study.enqueue_trial({"lr": 1e-3})
    lost = study.ask()
    study.tell(lost, state=TrialState.FAIL)
    study.enqueue_trial({"lr": 1e-3})  # its retry
    assert coord.claim(study, study.ask()) is None


def test_others_running_counts_other_workers_trials(tmp_path: Path) -> None:
    study = _study(tmp_path, heartbeat_interval=1)
    coord = SharedCoordination(heartbeat_interval=1, grace_period=None)
    mine, theirs = study.ask(), study.ask()
    assert coord.others_running(study, {mine.number: None}) == 1
    study.tell(theirs, 0.5)
    assert coord.others_running(study, {mine.number: None}) == 0


def test_heartbeat_stops_trainer_when_trial_was_failed_elsewhere(tmp_path: Path) -> None:
    study = _study(tmp_path, heartbeat_interval=1)
    trial = study.ask()
    lost: list[bool] = []
    beat = shared.Heartbeat(study._storage, trial._trial_id, 0.2, lambda: lost.append(True))
    time.sleep(0.5)
    assert not lost
    study.tell(trial, state=TrialState.FAIL)  # as another worker would, believing this one dead
    time.sleep(0.6)
    beat.stop()
    assert lost == [True]
