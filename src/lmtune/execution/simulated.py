"""The simulated backend: trials of the stand-in trainer (`lmtune.execution.simtrainer`) run in threads
of this process, with no subprocess and no training, so the one trial loop and every scheduler can be
tested (and timed) in-process. It passes the same backend contract as the local and Ray backends
(tests/execution/test_backend_contract.py). Another stand-in with `simulate`'s signature can be given as
``trainer`` (the search-replay benchmark's table lookups: benchmarks/tables/replay.py)."""

from __future__ import annotations

import dataclasses
import queue
import threading
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from lmtune.execution.checkpoints import FolderCheckpoints
from lmtune.execution.simtrainer import simulate
from lmtune.protocol import Decision, TrialSpec

__all__ = ["SimulatedExecutor", "SimulatedTrial"]

_END = object()
Trainer = Callable[..., int]  # simulate(spec, emit, receive, *, unit_s, sleep) -> exit code


class _Killed(Exception):
    pass


class SimulatedTrial:
    """One simulated trainer, running in a thread; the handle the loop reads like a process."""

    def __init__(self, spec: TrialSpec, trial_dir: Path, unit_s: float, trainer: Trainer = simulate) -> None:
        self.log_path = trial_dir / "trainer.log"
        self._events: queue.Queue[Any] = queue.Queue()
        self._answers: queue.Queue[Decision] = queue.Queue()
        self._killed = threading.Event()
        self._code: int | None = None
        self._trainer = trainer
        payload = dataclasses.asdict(spec)
        self._thread = threading.Thread(target=self._run, args=(payload, unit_s), daemon=True)
        self._thread.start()

    def _run(self, spec: dict[str, Any], unit_s: float) -> None:
        with self.log_path.open("w") as log:
            try:
                self._code = self._trainer(spec, self._emit, self._receive, unit_s=unit_s, sleep=self._sleep)
                log.write("simulated trial finished\n")
            except _Killed:
                self._code = -9
                log.write("killed\n")
            except Exception:  # a trainer's crash: its traceback in its log, a non-zero exit
                log.write(traceback.format_exc())
                self._code = 1
            finally:
                self._events.put(_END)

    def _emit(self, event: dict[str, Any]) -> None:
        if self._killed.is_set():
            raise _Killed
        self._events.put(event)

    def _receive(self) -> Decision | None:
        while not self._killed.is_set():
            try:
                return self._answers.get(timeout=0.05)
            except queue.Empty:
                continue
        raise _Killed

    def _sleep(self, seconds: float) -> None:
        if self._killed.wait(seconds):
            raise _Killed

    def events(self) -> Iterator[dict[str, Any]]:
        while True:
            item = self._events.get()
            if item is _END:
                self._events.put(_END)  # a second reader (wait after events) ends at once too
                return
            yield item

    def send(self, decision: Decision) -> None:
        self._answers.put(decision)

    def kill(self) -> None:
        self._killed.set()

    def wait(self) -> int:
        self._thread.join()
        return self._code if self._code is not None else 1


class SimulatedExecutor(FolderCheckpoints):
    """``workers`` slots of simulated trainers; ``unit_s`` seconds of (interruptible) sleep per unit;
    ``trainer``: the stand-in each trial runs (default `lmtune.execution.simtrainer.simulate`)."""

    def __init__(self, *, workers: int = 1, unit_s: float = 0.0, trainer: Trainer = simulate) -> None:
        self.workers, self.threads, self.unit_s, self.trainer = workers, 1, unit_s, trainer
        self._free = list(range(max(workers, 1)))
        self._lock = threading.Lock()

    def device_for(self, slot: int) -> str:
        return "cpu"

    def acquire(self) -> int:
        with self._lock:
            return self._free.pop(0)

    def release(self, slot: int) -> None:
        with self._lock:
            self._free.append(slot)

    def launch(self, spec: TrialSpec, trial_dir: Path, slot: int) -> SimulatedTrial:
        trial_dir.mkdir(parents=True, exist_ok=True)
        spec.write(trial_dir / "trial.json")
        return SimulatedTrial(spec, trial_dir, self.unit_s, self.trainer)

    def close(self) -> None:
        pass

