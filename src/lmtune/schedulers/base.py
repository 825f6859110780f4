"""What every scheduler of the one trial loop (`lmtune.tuner.drive.drive`) is: a `Scheduler` subclass.

A scheduler decides: what to start (``suggest``), how to answer each evaluation (``on_eval``) and what a
trial's ending means for the study (``on_end``). The backend runs; the loop only connects the two. The
base class states the contract once and gives every method but ``suggest`` and ``on_end`` a default (as
Syne Tune's ``TrialScheduler`` does), so a scheduler writes only what it decides.

Threads: ``use`` (once, first), ``stop_reason``, ``suggest``, ``started``, ``waiting_on_others`` and
``abandon`` are called from the loop's thread; ``on_eval``, ``on_event``, ``on_end``, ``on_crash`` and
``removable_checkpoints`` from the trial's own thread (a scheduler guards what both touch). ``on_end`` is
called once per started trial that ended before any interrupt, before the loop hears that it ended.

Which scheduler serves a study is looked up by its ``search.strategy`` in a registry
(`scheduler_for`), filled by the `register` decorator, not decided by comparing strategy names.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from lmtune.errors import ConfigError
from lmtune.execution import Checkpoints, FolderCheckpoints, TrialHandle
from lmtune.protocol import Continue, Decision, Eval, Event, Outcome, TrialSpec

__all__ = ["Launch", "Scheduler", "register", "scheduler_for", "strategies_served"]


@dataclass(frozen=True)
class Launch:
    """One trial to start: the scheduler's key for it, its frozen spec and its folder."""

    key: Hashable
    spec: TrialSpec
    trial_dir: Path


class Scheduler:
    """Decides for `lmtune.tuner.drive.drive` (see the module docstring for the call order and threads).

    Subclasses implement ``suggest`` and ``on_end``; every other method has the default of a scheduler
    that runs a fixed list of trials, keeps no checkpoints and has nothing to wait for."""

    poll_s: float | None = None  # how long to wait for an ending before asking again (None: until one ends)
    finished_reason: ClassVar[str] = "n_trials reached"  # the run's stop reason when it ran out of trials
    # the backend's checkpoint operations (`use` sets the driving backend's): a scheduler names checkpoints
    # by trial folder and units, and never reads or deletes a checkpoint folder itself
    checkpoints: Checkpoints = FolderCheckpoints()

    def use(self, checkpoints: Checkpoints) -> None:
        """The loop is about to drive this scheduler on a backend with these checkpoint operations."""
        self.checkpoints = checkpoints

    def stop_reason(self) -> str:
        """Why no more trials may start ("" while they may). Sticky: once given, given again."""
        return ""

    def suggest(self, device: str, threads: int) -> Launch | None:
        """The next trial to start on a slot with ``device`` and ``threads``, or None for none now."""
        raise NotImplementedError

    def started(self, key: Hashable, handle: TrialHandle) -> None:
        """The trial's trainer was launched."""

    def on_eval(self, key: Hashable, event: Eval, curve: list[dict[str, Any]]) -> Decision:
        """The answer to one evaluation (``curve`` already holds it); only interactive trials ask."""
        return Continue()

    def on_event(self, key: Hashable, event: Event) -> None:
        """Any other event (`Start`, `Progress`, `OomRetry`, `Note`) but the end and the error (those are in
        the outcome)."""

    def on_end(self, key: Hashable, outcome: Outcome) -> None:
        """The trial ended (completed, stopped, failed or killed): record it."""
        raise NotImplementedError

    def on_crash(self, key: Hashable, exc: Exception) -> None:
        """Following the trial raised (e.g. the study refused its record): its trainer was killed."""

    def removable_checkpoints(self) -> list[Path]:
        """Checkpoints reported so far that no trial will resume from or copy any more (each named once);
        the loop has the backend delete them. A scheduler that keeps no checkpoints returns []."""
        return []

    def waiting_on_others(self) -> bool:
        """Nothing runs here and nothing can start now: wait for others (True) or end the run (False)."""
        return False

    def abandon(self, keys: list[Hashable]) -> None:
        """The loop was interrupted; these trials' trainers were killed (or never launched)."""


_REGISTRY: dict[str, type[Scheduler]] = {}
S = TypeVar("S", bound=type[Scheduler])


def register(*strategies: str) -> Callable[[S], S]:
    """Class decorator: the scheduler serves these ``search.strategy`` values."""

    def add(cls: S) -> S:
        for name in strategies:
            if name in _REGISTRY and _REGISTRY[name] is not cls:
                raise ValueError(f"strategy {name!r} is served by {_REGISTRY[name].__name__} already")
            _REGISTRY[name] = cls
        return cls

    return add


def scheduler_for(strategy: str) -> type[Scheduler]:
    """The scheduler class that serves ``search.strategy``."""
    _load()
    try:
        return _REGISTRY[strategy]
    except KeyError:
        raise ConfigError(f"search.strategy: no scheduler serves {strategy!r}; use one of "
                          f"{', '.join(sorted(_REGISTRY))}") from None


def strategies_served() -> dict[str, str]:
    """Each registered strategy and the scheduler class that serves it."""
    _load()
    return {name: cls.__name__ for name, cls in sorted(_REGISTRY.items())}


def _load() -> None:
    """Import the built-in schedulers (each registers itself)."""
    import lmtune.schedulers.halving
    import lmtune.schedulers.pbt
    import lmtune.schedulers.search  # noqa: F401
