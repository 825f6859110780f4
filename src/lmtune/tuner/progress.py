"""Progress display: rich progress bars on a terminal, plain log lines elsewhere (CI, files, pipes).

What both show: every trial's start, evaluations and end, and the study's ETA. The ETA is compute left
at the measured speed: the train tokens still to go (the trials left times the mean tokens of the trials
that ended this run, or, before any has, their planned length; capped by ``budget.max_train_tokens``)
over the tokens per second trained so far this run, and never past ``budget.max_wall_time``. On a
terminal, rich's progress bars draw it (one bar per running trial, in train examples of its planned
length, from its first step; one for the study, in train tokens) and the study's bar stays on screen
at the end with the final count.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any, Protocol

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text


class Reporter(Protocol):
    def study_started(self, name: str, done: int, target: int, max_units: int) -> None: ...
    def study_budget(self, *, tokens_per_trial: float, tokens_left: int | None,
                     seconds_left: float | None) -> None: ...
    def trial_started(self, number: int, params: dict[str, Any], is_default: bool) -> None: ...
    def trial_advanced(self, number: int, examples: int, tokens: int, total_examples: int) -> None: ...
    def trial_progress(self, number: int, units: int, max_units: int, value: float | None) -> None: ...
    def trial_finished(self, number: int, state: str, value: float | None, reason: str,
                       best: float | None) -> None: ...
    def close(self) -> None: ...


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _params(params: dict[str, Any]) -> str:
    return " ".join(f"{k}={_fmt(v)}" for k, v in params.items()) or "(no searched params)"


class _Clock:
    """The study's counts and its ETA from train tokens (see the module docstring)."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.done = 0
        self.target = 0
        self.finished_this_run = 0
        self.tokens_per_trial = 0.0  # planned, until trials of this run have ended
        self.tokens_left: int | None = None  # budget.max_train_tokens still to spend at the start
        self.seconds_left: float | None = None  # budget.max_wall_time of this run
        self.running: dict[int, int] = {}  # trial -> its train tokens so far
        self.ended_tokens = 0  # train tokens of the trials that ended this run
        self.clock_lock = threading.Lock()

    def study_budget(self, *, tokens_per_trial: float, tokens_left: int | None,
                     seconds_left: float | None) -> None:
        self.tokens_per_trial, self.tokens_left, self.seconds_left = tokens_per_trial, tokens_left, seconds_left

    def _advance(self, number: int, tokens: int) -> None:
        with self.clock_lock:
            self.running[number] = max(self.running.get(number, 0), tokens)

    def _ended(self, number: int, counted: bool) -> None:
        with self.clock_lock:
            self.ended_tokens += self.running.pop(number, 0)
            if counted:
                self.done += 1
                self.finished_this_run += 1

    def spent(self) -> int:
        """Train tokens trained this run (ended trials and running ones so far)."""
        with self.clock_lock:
            return self.ended_tokens + sum(self.running.values())

    def to_go(self) -> float | None:
        """Train tokens still to train before the study ends (None: nothing to estimate from)."""
        with self.clock_lock:
            per_trial = (self.ended_tokens / self.finished_this_run if self.finished_this_run
                         else self.tokens_per_trial)
            running = sum(self.running.values())
            trials_left = max(0, self.target - self.done - len(self.running))
            left = trials_left * per_trial + sum(max(0.0, per_trial - t) for t in self.running.values())
            if self.tokens_left is not None:
                left = min(left, max(0.0, self.tokens_left - self.ended_tokens - running))
        return left if per_trial > 0 or self.tokens_left is not None else None

    def eta_s(self) -> float | None:
        elapsed = time.monotonic() - self.t0
        spent, left = self.spent(), self.to_go()
        if left is None or spent <= 0 or elapsed <= 0:
            return None
        eta = left / (spent / elapsed)
        if self.seconds_left is not None:
            eta = min(eta, max(0.0, self.seconds_left - elapsed))
        return eta

    def eta(self) -> str:
        elapsed = time.monotonic() - self.t0
        eta = self.eta_s()
        return f"elapsed {elapsed:.0f}s" + (f", ETA {eta:.0f}s" if eta is not None else "")


class PlainReporter(_Clock):
    """One line per event, flushed; for logs and non-terminals."""

    def __init__(self, stream: Any = None) -> None:
        super().__init__()
        self.stream = stream or sys.stdout
        self._lock = threading.Lock()

    def _say(self, text: str) -> None:
        with self._lock:
            print(f"[{time.strftime('%H:%M:%S')}] {text}", file=self.stream, flush=True)

    def study_started(self, name: str, done: int, target: int, max_units: int) -> None:
        self.done, self.target = done, target
        self._say(f"study '{name}': {done}/{target} trials finished so far; {max_units} evaluations per trial")

    def trial_started(self, number: int, params: dict[str, Any], is_default: bool) -> None:
        self._advance(number, 0)
        self._say(f"trial {number} started{' (default settings)' if is_default else ''}: {_params(params)}")

    def trial_advanced(self, number: int, examples: int, tokens: int, total_examples: int) -> None:
        self._advance(number, tokens)  # counted in the ETA; a line only per evaluation

    def trial_progress(self, number: int, units: int, max_units: int, value: float | None) -> None:
        self._say(f"trial {number} eval {units}/{max_units}: {_fmt(value)}")

    def trial_finished(self, number: int, state: str, value: float | None, reason: str,
                       best: float | None) -> None:
        self._ended(number, state in ("COMPLETE", "PRUNED"))
        detail = _fmt(value) if state == "COMPLETE" else reason or state.lower()
        self._say(f"trial {number} {state}: {detail} | best {_fmt(best)} | {self.done}/{self.target} "
                  f"| {self.eta()}")

    def close(self) -> None:
        pass


class LiveReporter(PlainReporter):
    """rich progress bars (running trials, the study) below the plain log lines."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console()
        super().__init__(stream=None)
        self._best: float | None = None
        self._bars = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                              TextColumn("{task.fields[latest]}"), TimeElapsedColumn(), TextColumn("ETA"),
                              TimeRemainingColumn(), console=self.console, refresh_per_second=4)
        self._study = self._bars.add_task("study", total=None, latest="")
        self._trials: dict[int, TaskID] = {}
        self._bars.start()

    def _say(self, text: str) -> None:
        with self._lock:
            self.console.print(Text(time.strftime("%H:%M:%S"), style="dim") + Text(f" {text}"))
            self._refresh_study()

    def _refresh_study(self) -> None:
        """The study's bar in train tokens: done this run of done + still to go (the ETA's figures)."""
        spent, left = self.spent(), self.to_go()
        self._bars.update(self._study, description=f"study {self.done}/{self.target} trials",
                          completed=spent, total=None if left is None else spent + left,
                          latest=f"best {_fmt(self._best)} · train tokens")

    def trial_started(self, number: int, params: dict[str, Any], is_default: bool) -> None:
        with self._lock:
            label = Text(f"trial {number} " + _params(params)[:40]).plain
            self._trials[number] = self._bars.add_task(label, total=None, latest="-")
        super().trial_started(number, params, is_default)

    def trial_advanced(self, number: int, examples: int, tokens: int, total_examples: int) -> None:
        super().trial_advanced(number, examples, tokens, total_examples)
        with self._lock:
            if number in self._trials:  # total 0: unchanged (an evaluation does not carry it)
                task = self._trials[number]
                self._bars.update(task, completed=examples)
                if total_examples > 0:
                    self._bars.update(task, total=total_examples)
            self._refresh_study()

    def trial_progress(self, number: int, units: int, max_units: int, value: float | None) -> None:
        with self._lock:
            if number in self._trials:
                self._bars.update(self._trials[number], latest=f"eval {units}/{max_units}: {_fmt(value)}")
        super().trial_progress(number, units, max_units, value)

    def trial_finished(self, number: int, state: str, value: float | None, reason: str,
                       best: float | None) -> None:
        with self._lock:
            task = self._trials.pop(number, None)
            if task is not None:
                self._bars.remove_task(task)
            self._best = best
        super().trial_finished(number, state, value, reason, best)

    def close(self) -> None:
        with self._lock:
            self._refresh_study()
        self._bars.stop()  # not transient: the study's bar stays on screen with the final count


def make_reporter() -> Reporter:
    return LiveReporter() if sys.stdout.isatty() else PlainReporter()
