"""Progress display: a live table on a terminal, plain log lines elsewhere (CI, files, pipes)."""

from __future__ import annotations

import sys
import threading
import time
from typing import Any, Protocol

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text


class Reporter(Protocol):
    def study_started(self, name: str, done: int, target: int, max_units: int) -> None: ...
    def trial_started(self, number: int, params: dict[str, Any], is_default: bool) -> None: ...
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
    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.done = 0
        self.target = 0
        self.finished_this_run = 0

    def eta(self) -> str:
        elapsed = time.monotonic() - self.t0
        if not self.finished_this_run:
            return f"elapsed {elapsed:.0f}s"
        remaining = max(0, self.target - self.done) * elapsed / self.finished_this_run
        return f"elapsed {elapsed:.0f}s, ETA {remaining:.0f}s"


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
        self._say(f"trial {number} started{' (default settings)' if is_default else ''}: {_params(params)}")

    def trial_progress(self, number: int, units: int, max_units: int, value: float | None) -> None:
        self._say(f"trial {number} eval {units}/{max_units}: {_fmt(value)}")

    def trial_finished(self, number: int, state: str, value: float | None, reason: str,
                       best: float | None) -> None:
        if state in ("COMPLETE", "PRUNED"):
            self.done += 1
            self.finished_this_run += 1
        detail = _fmt(value) if state == "COMPLETE" else reason or state.lower()
        self._say(f"trial {number} {state}: {detail} | best {_fmt(best)} | {self.done}/{self.target} "
                  f"| {self.eta()}")

    def close(self) -> None:
        pass


class LiveReporter(PlainReporter):
    """A rich live table of running trials above the plain log lines."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console()
        super().__init__(stream=None)
        self._rows: dict[int, list[str]] = {}
        self._best: float | None = None
        self._live = Live(self._table(), console=self.console, refresh_per_second=4, transient=True)
        self._live.start()

    def _say(self, text: str) -> None:
        with self._lock:
            self.console.print(Text(time.strftime("%H:%M:%S"), style="dim") + Text(f" {text}"))
            self._live.update(self._table())

    def _table(self) -> Table:
        table = Table(title=f"best {_fmt(self._best)} · {self.done}/{self.target} trials · {self.eta()}")
        for col in ("trial", "params", "eval", "latest"):
            table.add_column(col)
        for number, row in sorted(self._rows.items()):
            table.add_row(str(number), *(Text(c) for c in row))  # params may hold [brackets]
        return table

    def trial_started(self, number: int, params: dict[str, Any], is_default: bool) -> None:
        self._rows[number] = [_params(params)[:70], "0", "-"]
        super().trial_started(number, params, is_default)

    def trial_progress(self, number: int, units: int, max_units: int, value: float | None) -> None:
        if number in self._rows:
            self._rows[number][1:] = [f"{units}/{max_units}", _fmt(value)]
        with self._lock:
            self._live.update(self._table())

    def trial_finished(self, number: int, state: str, value: float | None, reason: str,
                       best: float | None) -> None:
        self._rows.pop(number, None)
        self._best = best
        super().trial_finished(number, state, value, reason, best)

    def close(self) -> None:
        self._live.stop()


def make_reporter() -> Reporter:
    return LiveReporter() if sys.stdout.isatty() else PlainReporter()
