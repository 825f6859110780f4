"""Cost budgets that hold: ``budget.max_gpu_hours`` and ``budget.max_cost`` (docs/budgets.md).

A trial costs the wall time it holds its devices (launch to end: start-up, training, evaluation, saving) ×
its devices (processes) × the price of a device-hour of its kind (``budget.prices``: ``cpu``, ``cuda``, ...);
its GPU-hours are the same without the price, for any kind but ``cpu``. Finished trials are costed from their
records (``wall_time_s``, ``device``, ``devices``), so a resumed study counts what earlier runs spent;
running trials by their time so far.

The cap is held by prediction, as the token cap is:

- **before a launch** the trial's cost is predicted from the seconds per training example measured so far on
  its device kind (finished trials of this run), × its planned examples; it starts only if the spent cost,
  the predicted rest of the running trials and its own prediction fit under the cap (the first trial of a
  kind has no measurement: it starts, and the next rule guards it);
- **at each evaluation** a running trial goes on only if, with every running trial projected to its next
  evaluation (its own seconds per evaluation unit so far), the cap still holds; else it is stopped there
  (recorded as stopped by the budget).

What can still overrun: the tail of a trial after its last evaluation (saving, the end), and trials whose
speed changes between evaluations; `benchmarks/cost_cap.py` measures the overrun with simulated trials of
varying speed (docs/benchmarks/cost/cap.json).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import optuna

from lmtune.config import BudgetSection
from lmtune.study import Spent, device_kind, per_second, trials_spent

__all__ = ["CostMeter", "Spent", "device_kind"]


@dataclass
class _Run:
    kind: str
    devices: int
    started: float
    planned: int  # examples
    examples: int = 0
    units: int = 0

    def to_next_eval(self, now: float) -> float | None:
        """Seconds until its next evaluation at its pace so far: one unit, or what is left of its planned length
        when less; None at its end (no next evaluation) or before its first evaluation."""
        if not self.units or self.examples >= self.planned:
            return None
        left = min(1.0, (self.planned - self.examples) / max(self.examples / self.units, 1.0))
        return (now - self.started) / self.units * left


class CostMeter:
    """Accounts a study's device-hours and money against ``budget.max_gpu_hours`` / ``budget.max_cost``."""

    def __init__(self, budget: BudgetSection) -> None:
        self.budget = budget
        self.running: dict[int, _Run] = {}
        self._measured: dict[str, tuple[float, int]] = {}  # kind -> (seconds, examples) of finished trials
        self._lock = threading.Lock()

    @property
    def active(self) -> bool:
        return self.budget.max_gpu_hours is not None or self.budget.max_cost is not None

    # -- rates ---------------------------------------------------------------------------------------------
    def _per_second(self, kind: str, devices: int) -> Spent:
        return per_second(self.budget, kind, devices)

    def spent(self, study: optuna.Study, *, now: float | None = None) -> Spent:
        """What the study has spent: its finished trials (records) and the running ones (their time so far)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            running = list(self.running.items())
        total = trials_spent(study.get_trials(deepcopy=False), self.budget, skip=[n for n, _ in running])
        for _, run in running:
            total = total + self._per_second(run.kind, run.devices).times(now - run.started)
        return total

    def over(self, spent: Spent) -> str:
        """The cap ``spent`` reaches ("" when none)."""
        b = self.budget
        if b.max_gpu_hours is not None and spent.gpu_hours >= b.max_gpu_hours:
            return f"budget: max_gpu_hours {b.max_gpu_hours:g} reached ({spent.gpu_hours:.4g} spent)"
        if b.max_cost is not None and spent.cost >= b.max_cost:
            return f"budget: max_cost {b.max_cost:g} reached ({spent.cost:.4g} spent)"
        return ""

    # -- the rules --------------------------------------------------------------------------------------------
    def launch_reason(self, study: optuna.Study, *, device: str, devices: int, examples: int) -> str:
        """Why a trial planned for ``examples`` on ``devices`` devices of ``device`` must not start ("" when its
        predicted cost fits, or while nothing was measured on that kind)."""
        if not self.active:
            return ""
        kind = device_kind(device)
        spent, rest, measured = self._outlook(study, kind)
        why = self.over(spent)
        if why:
            return why
        if measured is None or not measured[1]:
            return ""
        seconds = measured[0] / measured[1] * examples
        rate = self._per_second(kind, devices)
        need = Spent(rate.gpu_hours * seconds, rate.cost * seconds)
        total = Spent(spent.gpu_hours + rest.gpu_hours + need.gpu_hours, spent.cost + rest.cost + need.cost)
        b = self.budget
        if b.max_gpu_hours is not None and total.gpu_hours > b.max_gpu_hours and need.gpu_hours > 0:
            return (f"budget: max_gpu_hours {b.max_gpu_hours:g} reached: {spent.gpu_hours:.4g} spent and "
                    f"{rest.gpu_hours:.4g} to come leave too little for another trial (~{need.gpu_hours:.4g} "
                    f"GPU-hours at the {seconds / examples:.3g} s per example measured on {kind})")
        if b.max_cost is not None and total.cost > b.max_cost and need.cost > 0:
            return (f"budget: max_cost {b.max_cost:g} reached: {spent.cost:.4g} spent and {rest.cost:.4g} to come "
                    f"leave too little for another trial (~{need.cost:.4g} at the {seconds / examples:.3g} s per "
                    f"example measured on {kind})")
        return ""

    def _outlook(self, study: optuna.Study, kind: str) -> tuple[Spent, Spent, tuple[float, int] | None]:
        """What is spent, the running trials' predicted rest (each at its own speed so far, else its kind's
        measured speed), and the (seconds, examples) measured on ``kind`` (None: not yet)."""
        now = time.monotonic()
        spent = self.spent(study, now=now)
        with self._lock:
            measured = self._measured.get(kind)
            rest = Spent(0.0, 0.0)
            for run in self.running.values():
                per = (now - run.started) / run.examples if run.examples else None
                if per is None:
                    m = self._measured.get(run.kind)
                    per = m[0] / m[1] if m and m[1] else 0.0
                rate = self._per_second(run.kind, run.devices)
                left = max(0, run.planned - run.examples) * per
                rest = Spent(rest.gpu_hours + rate.gpu_hours * left, rest.cost + rate.cost * left)
        return spent, rest, measured

    def examples_left(self, study: optuna.Study, *, device: str, devices: int) -> float | None:
        """How many train examples a trial on ``devices`` devices of ``device`` can still train under the cost
        caps, at the seconds per example measured on that kind, after what is spent and the running trials'
        predicted rest; None without a cost cap that binds this kind, or before the kind was measured."""
        if not self.active:
            return None
        kind = device_kind(device)
        spent, rest, measured = self._outlook(study, kind)
        if measured is None or not measured[1]:
            return None
        per_example = measured[0] / measured[1]
        rate = self._per_second(kind, devices)
        b, room = self.budget, None
        for cap, used, per_s in ((b.max_gpu_hours, spent.gpu_hours + rest.gpu_hours, rate.gpu_hours),
                                 (b.max_cost, spent.cost + rest.cost, rate.cost)):
            if cap is not None and per_s > 0 and per_example > 0:
                fits = max(0.0, cap - used) / (per_s * per_example)
                room = fits if room is None else min(room, fits)
        return room

    def running_at(self, study: optuna.Study, number: int, *, examples: int, units: int) -> bool:
        """Trial ``number`` reported an evaluation: True when it must stop here, because with every running trial
        projected to its next evaluation (its own seconds per unit so far) the cap would be crossed."""
        if not self.active:
            return False
        now = time.monotonic()
        with self._lock:
            run = self.running.get(number)
            if run is None:
                return False
            run.examples, run.units = examples, units
            ahead = Spent(0.0, 0.0)
            for r in self.running.values():
                interval = r.to_next_eval(now)
                if interval is None:  # at its end: no next evaluation to project
                    continue
                rate = self._per_second(r.kind, r.devices)
                ahead = Spent(ahead.gpu_hours + rate.gpu_hours * interval, ahead.cost + rate.cost * interval)
        spent = self.spent(study, now=now)
        projected = Spent(spent.gpu_hours + ahead.gpu_hours, spent.cost + ahead.cost)
        b = self.budget
        return bool((b.max_gpu_hours is not None and projected.gpu_hours > b.max_gpu_hours)
                    or (b.max_cost is not None and projected.cost > b.max_cost))

    def seconds_per_example(self, device: str) -> float | None:
        """Launch-to-end seconds per train example of the trials this run finished on ``device``'s kind (their
        start-up included: a shorter trial's weighs more per example); None before one finished there."""
        with self._lock:
            measured = self._measured.get(device_kind(device))
        return measured[0] / measured[1] if measured and measured[1] else None

    def seconds_to_next_eval(self, number: int, *, examples: int, units: int, now: float) -> float | None:
        """At running trial ``number``'s own pace so far, the seconds until its next evaluation (or its planned
        end, when that comes first); None at its end, before its first evaluation, or for an unknown trial."""
        with self._lock:
            run = self.running.get(number)
            if run is None:
                return None
            run.examples, run.units = examples, units
            return run.to_next_eval(now)

    def started(self, number: int, *, device: str, devices: int, examples: int, at: float) -> None:
        with self._lock:
            self.running[number] = _Run(device_kind(device), max(1, devices), at, examples)

    def ended(self, number: int, *, examples: int) -> None:
        """Call once the trial's record holds its wall time: it is costed from the record from now on, and its
        speed joins its kind's measurement."""
        with self._lock:
            run = self.running.pop(number, None)
            if run is not None and examples:
                seconds, seen = self._measured.get(run.kind, (0.0, 0))
                self._measured[run.kind] = (seconds + time.monotonic() - run.started, seen + examples)
