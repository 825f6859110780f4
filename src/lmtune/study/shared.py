"""Trial records of a study shared by independent workers (`lmtune worker`, PostgreSQL storage).

Liveness is Optuna's RDB heartbeat: the worker running a trial records a heartbeat every
``heartbeat_interval`` seconds; any worker fails a RUNNING trial whose last heartbeat is older than the
grace period (each such trial is failed by exactly one worker: the storage refuses a second
transition) and enqueues its configuration again, as Optuna's ``RetryFailedTrialCallback`` does.

Workers seed the queue (grid points, the default configuration) under a PostgreSQL advisory lock, so
each point is enqueued once. Where there is no such lock (other databases) a point may be enqueued
twice by workers starting together; a trial that pops such a point runs only if no lower-numbered
trial with the same parameters is waiting, running or finished, so every point still runs once.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import optuna
import sqlalchemy
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

log = logging.getLogger("lmtune")

STALE = ("lost: no heartbeat for {grace}s from the worker running this trial (killed, crashed or "
         "disconnected); its configuration is re-run")
DUPLICATE = "duplicate: trial {other} has the same parameters (enqueued twice by workers starting together); not run"
GRID_DONE = "not run: no grid point was left (another worker took the last one at the same moment)"
_LIVE = (TrialState.WAITING, TrialState.RUNNING, TrialState.COMPLETE, TrialState.PRUNED)


def grace_of(storage: BaseStorage) -> int | None:
    """Seconds without a heartbeat after which a RUNNING trial counts as dead; None: no heartbeats."""
    rdb = getattr(storage, "_backend", storage)  # studies wrap their RDBStorage in a cache
    interval = getattr(rdb, "heartbeat_interval", None)
    if not interval:
        return None
    return getattr(rdb, "grace_period", None) or 2 * int(interval)


def fail_stale(study: optuna.Study, unbeaten: dict[int, float] | None = None) -> list[FrozenTrial]:
    """Fail the RUNNING trials whose heartbeat is older than the grace period, with the reason.
    Returns the trials that *this* call failed (so exactly one worker re-enqueues each).

    ``unbeaten``: this worker's memory of RUNNING trials that have no heartbeat at all (their worker
    died between ``ask()`` and its first beat, which Optuna never calls stale), keyed by trial id with
    the monotonic time it first saw each; those are failed once they stay so for the grace period.
    """
    storage = study._storage
    grace = grace_of(storage)
    if grace is None:
        return []
    # The same query optuna.storages.fail_stale_trials makes; done here so the reason is recorded
    # while the trial is still RUNNING (a finished trial's attributes are read-only).
    stale = set(storage._get_stale_trial_ids(study._study_id))  # type: ignore[attr-defined]
    if unbeaten is not None:
        stale |= _never_beaten(study, unbeaten, grace)
    failed = []
    for trial_id in sorted(stale):
        try:
            storage.set_trial_user_attr(trial_id, "fail_reason", STALE.format(grace=grace))
            if storage.set_trial_state_values(trial_id, state=TrialState.FAIL):
                failed.append(storage.get_trial(trial_id))
        except UpdateFinishedTrialError:  # another worker failed (or the owner finished) it first
            continue
        finally:
            if unbeaten is not None:
                unbeaten.pop(trial_id, None)
    return failed


def _never_beaten(study: optuna.Study, seen: dict[int, float], grace: int) -> set[int]:
    """RUNNING trials without any heartbeat for longer than ``grace`` by this process's clock (no
    comparison of clocks across machines)."""
    now = time.monotonic()
    current = _running_without_heartbeat(study)
    for trial_id in list(seen):
        if trial_id not in current:
            del seen[trial_id]
    for trial_id in current:
        seen.setdefault(trial_id, now)
    return {trial_id for trial_id, first in seen.items() if now - first > grace}


def _running_without_heartbeat(study: optuna.Study) -> set[int]:
    from optuna.storages._rdb import models  # Optuna's own tables, as its heartbeat code reads them

    rdb: Any = getattr(study._storage, "_backend", study._storage)
    session = rdb.scoped_session()
    try:
        rows = (session.query(models.TrialModel.trial_id)
                .outerjoin(models.TrialHeartbeatModel,
                           models.TrialHeartbeatModel.trial_id == models.TrialModel.trial_id)
                .filter(models.TrialModel.study_id == study._study_id,
                        models.TrialModel.state == TrialState.RUNNING,
                        models.TrialHeartbeatModel.trial_heartbeat_id.is_(None))
                .all())
        return {int(r[0]) for r in rows}
    finally:
        session.close()


def duplicate_of(study: optuna.Study, trial_id: int, number: int) -> int | None:
    """For a trial popped from the queue: the lower-numbered live trial with the same parameters."""
    fixed = study._storage.get_trial(trial_id).system_attrs.get("fixed_params")
    if fixed is None:
        return None
    for t in study.get_trials(deepcopy=False, states=_LIVE):
        if t.number < number and (t.system_attrs.get("fixed_params") or t.params) == fixed:
            return t.number
    return None


@contextlib.contextmanager
def seeding_lock(study: optuna.Study) -> Iterator[None]:
    """Hold a PostgreSQL advisory lock (per study) while the queue is seeded, so workers that start
    together enqueue each point once. Other databases: no lock; `duplicate_of` is the safety net."""
    engine = getattr(getattr(study._storage, "_backend", study._storage), "engine", None)
    if engine is None or engine.dialect.name != "postgresql":
        yield
        return
    key = int.from_bytes(hashlib.sha256(f"lmtune:{study.study_name}".encode()).digest()[:8], "big", signed=True)
    with engine.connect() as conn:
        conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": key})
        try:
            yield
        finally:
            conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
            conn.commit()


class Heartbeat:
    """Records one trial's heartbeat from a thread until `stop()`. When another worker has failed the
    trial meanwhile (it looked dead), ``on_lost`` runs once: its work is being redone elsewhere."""

    def __init__(self, storage: BaseStorage, trial_id: int, interval: float, on_lost: Callable[[], None]) -> None:
        self._storage, self._trial_id, self._interval, self._on_lost = storage, trial_id, interval, on_lost
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"heartbeat-{trial_id}")
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._storage.record_heartbeat(self._trial_id)  # type: ignore[attr-defined]
                if self._storage.get_trial(self._trial_id).state != TrialState.RUNNING and not self._stop.is_set():
                    log.warning("trial id %s was failed by another worker; stopping its trainer", self._trial_id)
                    self._on_lost()
                    return
            except Exception as exc:  # a database hiccup: try again at the next beat
                log.warning("heartbeat of trial id %s failed: %s", self._trial_id, exc)

    def stop(self) -> None:
        self._stop.set()
