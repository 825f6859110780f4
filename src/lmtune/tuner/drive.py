"""The one trial loop: it drives any :class:`Scheduler` on any backend (an ``Executor``).

Every kind of trial runs through :func:`drive`: the search (`lmtune.schedulers.search`, Optuna's sampler
and pruner), PBT (`lmtune.schedulers.pbt`), the final runs (`lmtune.schedulers.final`) and `lmtune train`'s
one run (`lmtune.schedulers.one`): each a `lmtune.schedulers.Scheduler`. The scheduler decides
(what to start, how to answer each evaluation, what an ending means for the study); the backend runs
(slots, trainer processes, their event streams); this loop only connects them:

1. while a slot is free and the scheduler has no reason to stop, ``acquire`` a slot and ask
   ``suggest(device, threads)`` for the next trial (None: nothing to start now); ``launch`` it and tell
   the scheduler ``started``;
2. each running trial is followed in its own thread: its events are relayed (``tuner/relay.py``),
   ``on_eval`` answers each evaluation (interactive specs only), ``on_event`` hears the others, and
   ``on_end`` hears the outcome (``on_crash`` if following it raised); after each answered evaluation
   and each ending, the checkpoints the scheduler names in ``removable_checkpoints`` are deleted by the
   backend (PBT keeps only those it can still hand out or resume from);
3. when a trial has ended its slot is released and the loop goes back to 1; with nothing running and
   nothing to start it returns, unless ``waiting_on_others()`` (trials of other workers on a shared
   study may still fail back into the queue), when it polls every ``poll_s`` seconds;
4. on an interrupt (Ctrl-C) or any error of the loop itself every running trainer is killed and the
   scheduler hears ``abandon`` with their keys before the error goes on; a trial whose trainer ends once
   the loop was interrupted is not reported to ``on_end`` (its "killed" exit is the loop's doing, and
   ``abandon`` records it);
5. a fault of the study's storage or disk (`lmtune.study.store.storage_fault`: disk full, database
   connection lost), met while following a trial or in a trainer's own failure, ends the loop as in 4
   with that error: no further trial would be recorded, and a study that went on would fail every one.

The contract for schedulers (which method is called from which thread) is `lmtune.schedulers.base`'s.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import queue
import threading
import time
from collections.abc import Hashable
from typing import Any

from lmtune.execution import Executor, TrialHandle
from lmtune.protocol import Decision, Eval, failure_reason
from lmtune.schedulers import Launch, Scheduler
from lmtune.study import storage_fault
from lmtune.tuner.relay import relay

__all__ = ["Launch", "Scheduler", "drive"]


def drive(scheduler: Scheduler, executor: Executor) -> str:
    """Run trials until the scheduler stops and none is left running; returns its stop reason ("" when
    it simply ran out of trials to start)."""
    # by launch (not by the scheduler's key: PBT starts a paused member again, under the same key, as soon
    # as it hears the end, maybe before this loop has released the ended launch's slot)
    running: dict[int, tuple[Hashable, TrialHandle | None, int]] = {}
    ended: queue.Queue[int] = queue.Queue()
    faults: list[BaseException] = []  # storage or disk faults met by the trials' threads
    interrupted = threading.Event()  # set before the loop kills trainers: their endings are abandon's
    launches = itertools.count()
    scheduler.use(executor)
    try:
        while True:
            if faults:
                raise faults[0]
            stop = scheduler.stop_reason()
            while not stop and len(running) < executor.workers:
                slot = executor.acquire()
                try:
                    launch = scheduler.suggest(executor.device_for(slot), executor.threads)
                except BaseException:
                    executor.release(slot)
                    raise
                if launch is None:
                    executor.release(slot)
                    stop = scheduler.stop_reason()  # suggest may have found a reason (queue or grid done)
                    break
                n = next(launches)
                running[n] = (launch.key, None, slot)  # abandoned as a key if the launch itself fails
                handle = executor.launch(launch.spec, launch.trial_dir, slot)
                running[n] = (launch.key, handle, slot)
                scheduler.started(launch.key, handle)
                threading.Thread(target=_follow, args=(scheduler, executor, launch, handle, n, ended, faults,
                                                       interrupted), daemon=True).start()
                stop = scheduler.stop_reason()
            if not running:
                if stop or not scheduler.waiting_on_others():
                    return stop
                time.sleep(scheduler.poll_s or 1.0)
                continue
            try:
                n = ended.get(timeout=scheduler.poll_s)
            except queue.Empty:
                continue
            _, _, slot = running.pop(n)
            executor.release(slot)
    except BaseException:
        interrupted.set()
        for _, started, _ in running.values():
            if started is not None:
                started.kill()
        scheduler.abandon(list(dict.fromkeys(key for key, _, _ in running.values())))
        raise


def _follow(scheduler: Scheduler, executor: Executor, launch: Launch, handle: TrialHandle, n: int,
            ended: queue.Queue[int], faults: list[BaseException], interrupted: threading.Event) -> None:
    key = launch.key

    def answer(ev: Eval, curve: list[dict[str, Any]]) -> Decision:
        decision = scheduler.on_eval(key, ev, curve)
        _delete_removable(scheduler, executor)  # before the trainer hears the decision
        return decision

    try:
        on_eval = answer if launch.spec.interactive else None
        outcome = relay(handle, on_eval=on_eval, on_event=lambda ev: scheduler.on_event(key, ev))
        if interrupted.is_set():  # the loop killed it (or is about to): ``abandon`` records it, not a -9 exit
            return
        scheduler.on_end(key, outcome)
        _delete_removable(scheduler, executor)
        if _disk_full(failure_reason(outcome)):  # recorded as failed with the reason; the next would fail too
            faults.append(OSError(errno.ENOSPC, f"trial {key}: {failure_reason(outcome)}"))
    except Exception as exc:
        handle.kill()
        if storage_fault(exc) is not None:
            faults.append(exc)  # the loop ends with it; the trial is left to the next run's recovery
        if interrupted.is_set():
            return
        with contextlib.suppress(Exception):
            scheduler.on_crash(key, exc)
    finally:
        ended.put(n)


def _delete_removable(scheduler: Scheduler, executor: Executor) -> None:
    for path in scheduler.removable_checkpoints():
        executor.delete_checkpoint(path)


def _disk_full(reason: str) -> bool:
    """A trainer's failure reason says its disk is full (it could not write its checkpoint or result)."""
    return any(s in reason for s in ("[Errno 28]", "No space left on device", "[Errno 122]", "Disk quota exceeded"))
