"""How one tuning process shares its study: alone (`lmtune tune`) or with other workers (`lmtune worker`).

The `Tuner` loop is the same in both cases; these objects answer the few questions where they differ:
which storage to open, what to do with trials another process left RUNNING, whether a popped trial
may run, how to show that a running trial is alive, and how long to wait before looking again.
"""

from __future__ import annotations

import contextlib
import warnings
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol

import optuna
from optuna.trial import TrialState

from lmtune.study import driver_lock, recover_interrupted, requeue, shared, storage_for


class Beat(Protocol):
    def stop(self) -> None: ...


class _NoBeat:
    def stop(self) -> None:
        pass


class Coordination(Protocol):
    poll_s: float | None  # the loop wakes at least this often (None: only when a trial ends)

    def storage(self, url: str) -> optuna.storages.BaseStorage: ...

    def recover(self, study: optuna.Study) -> None:
        """Make trials that a dead process left RUNNING runnable again. Called at every loop turn."""
        ...

    def others_running(self, study: optuna.Study, mine: Any) -> int:
        """RUNNING trials of the study that are not in ``mine`` (numbers of this process's trials)."""
        ...

    def claim(self, study: optuna.Study, trial: optuna.trial.Trial) -> str | None:
        """Right after ``ask()``: None to run the trial, else the reason to fail it unrun."""
        ...

    def heartbeat(self, study: optuna.Study, trial: optuna.trial.Trial, on_lost: Any) -> Beat: ...

    def seeding(self, study: optuna.Study) -> AbstractContextManager[None]:
        """Held while the queue is seeded (default configuration, grid points)."""
        ...

    def driver(self, study_dir: Path) -> AbstractContextManager[None]:
        """Held for the whole run: the study folder's driver lock (alone), or nothing (shared)."""
        ...


class LocalCoordination:
    """The only process on its study (SQLite by default): whatever is RUNNING at start-up was
    interrupted, so it is failed with the reason and enqueued again, once."""

    poll_s: float | None = None

    def __init__(self) -> None:
        self._recovered = False

    def storage(self, url: str) -> optuna.storages.BaseStorage:
        return storage_for(url)

    def recover(self, study: optuna.Study) -> None:
        if self._recovered:
            return
        self._recovered = True
        for stale in recover_interrupted(study):
            requeue(study, stale)

    def others_running(self, study: optuna.Study, mine: Any) -> int:
        return 0

    def claim(self, study: optuna.Study, trial: optuna.trial.Trial) -> str | None:
        return None

    def heartbeat(self, study: optuna.Study, trial: optuna.trial.Trial, on_lost: Any) -> Beat:
        return _NoBeat()

    def seeding(self, study: optuna.Study) -> AbstractContextManager[None]:
        return contextlib.nullcontext()

    def driver(self, study_dir: Path) -> AbstractContextManager[None]:
        return driver_lock(study_dir)


class SharedCoordination:
    """One of many workers on a server-backed study: liveness by heartbeat, never "fail all RUNNING"."""

    def __init__(self, *, heartbeat_interval: int, grace_period: int | None, grid: bool = False) -> None:
        self.interval = heartbeat_interval
        self.grace = grace_period
        self.grid = grid  # only enqueued points may run
        self._unbeaten: dict[int, float] = {}  # RUNNING trials seen without any heartbeat yet
        self.poll_s: float | None = float(heartbeat_interval)
        # Heartbeats are used deliberately with ask/tell here; Optuna warns it expects optimize().
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")
        warnings.filterwarnings("ignore", message="Argument ``(heartbeat_interval|grace_period)``")

    def storage(self, url: str) -> optuna.storages.BaseStorage:
        return storage_for(url, heartbeat_interval=self.interval, grace_period=self.grace)

    def recover(self, study: optuna.Study) -> None:
        for trial in shared.fail_stale(study, self._unbeaten):
            requeue(study, trial)

    def others_running(self, study: optuna.Study, mine: Any) -> int:
        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        return sum(1 for t in running if t.number not in mine)

    def claim(self, study: optuna.Study, trial: optuna.trial.Trial) -> str | None:
        study._storage.record_heartbeat(trial._trial_id)  # type: ignore[attr-defined]
        if self.grid and "fixed_params" not in study._storage.get_trial(trial._trial_id).system_attrs:
            return shared.GRID_DONE  # the queue emptied between looking and asking
        other = shared.duplicate_of(study, trial._trial_id, trial.number)
        return None if other is None else shared.DUPLICATE.format(other=other)

    def heartbeat(self, study: optuna.Study, trial: optuna.trial.Trial, on_lost: Any) -> Beat:
        return shared.Heartbeat(study._storage, trial._trial_id, self.interval, on_lost)

    def seeding(self, study: optuna.Study) -> AbstractContextManager[None]:
        return shared.seeding_lock(study)

    def driver(self, study_dir: Path) -> AbstractContextManager[None]:
        return contextlib.nullcontext()  # workers share the study through the database
