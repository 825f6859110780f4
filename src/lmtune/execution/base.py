"""What the tuner needs from an executor, whatever runs the trainers (local processes, Ray actors).

Call order, per trial: ``acquire()`` a slot → ``launch(spec, trial_dir, slot)`` → iterate the handle's
``events()`` (answering each ``eval`` event with ``send(decision)`` when the spec is interactive) →
``wait()`` → ``release(slot)``; ``close()`` once at the end. ``kill()`` may be called from any thread.

Pausing and resuming a trial are not calls of their own: a trial is paused by answering an evaluation
with ``Pause`` (its trainer saves an exact checkpoint and exits with ``stopped_by: paused``) and resumed by
launching it again with ``TrialSpec.resume_from`` set to that checkpoint; it is stopped by answering
``Stop`` (or, at once, by ``kill()``). The checkpoint operations (list, size, delete) are the backend's,
so no scheduler or loop touches a trial's folders itself (`lmtune.execution.checkpoints`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from lmtune.protocol import Decision, TrialSpec


class TrialHandle(Protocol):
    """One running trainer, wherever it runs."""

    log_path: Path

    def events(self) -> Iterator[dict[str, Any]]:
        """The trainer's protocol events (start, eval, end | error), until it exits."""
        ...

    def send(self, decision: Decision) -> None:
        """Answer the last eval (`lmtune.protocol` encodes it on the wire)."""
        ...

    def kill(self) -> None: ...

    def wait(self) -> int:
        """The trainer's exit code (0 after an end event)."""
        ...


class Checkpoints(Protocol):
    """A backend's checkpoint operations: schedulers name a checkpoint by its trial's folder and the units it
    was saved at (`lmtune.protocol.CheckpointRef` in decisions); the backend says where it lies, whether it
    is whole, what a trial holds, how big it is, and deletes what no scheduler needs. No scheduler or loop
    touches a trial's checkpoint folders itself."""

    def checkpoint_path(self, trial_dir: Path, units: int) -> Path:
        """Where the trial in ``trial_dir`` saves (saved) its checkpoint after ``units`` evaluation units."""
        ...

    def checkpoint_ready(self, path: Path) -> bool:
        """The checkpoint is whole: a trainer can resume from it (False: gone, half-written, damaged)."""
        ...

    def checkpoint_units(self, path: Path) -> int | None:
        """The units a checkpoint was saved at, None for a path that is not one."""
        ...

    def list_checkpoints(self, trial_dir: Path) -> list[Path]:
        """The checkpoints a trial has saved, oldest first."""
        ...

    def checkpoint_bytes(self, path: Path) -> int: ...

    def delete_checkpoint(self, path: Path) -> None:
        """Remove a checkpoint no scheduler needs any more (no error when it is already gone)."""
        ...


class Executor(Checkpoints, Protocol):
    workers: int  # trials at once
    threads: int  # CPU threads per trainer

    def device_for(self, slot: int) -> str: ...

    def acquire(self) -> int: ...

    def release(self, slot: int) -> None: ...

    def launch(self, spec: TrialSpec, trial_dir: Path, slot: int) -> TrialHandle: ...

    def close(self) -> None:
        """Give back what the executor holds (Ray actors and their reserved resources)."""
        ...
