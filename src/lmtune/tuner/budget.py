"""The tuner's budget and failure policy: why a run must stop (`Budget`), and what a run did (`RunSummary`)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from enum import Enum

import optuna

from lmtune.config import BudgetSection
from lmtune.study import train_tokens_spent
from lmtune.tuner.cost import CostMeter, device_kind
from lmtune.tuner.plan import Plan

__all__ = ["PLANNED_SLACK", "Budget", "RunSummary", "StopKind"]


# a study whose scheduler plans its trials to fit max_train_tokens (successive halving) may end up to this share
# above it: its plan estimates a trial's tokens from the train split's mean tokens per example
PLANNED_SLACK = 0.01

class StopKind(Enum):
    """Why a run stopped, as the CLI's exit code and the proxy stages need it (the stop reason is its words)."""

    FINISHED = "finished"  # it ran what it was asked: n_trials, the grid, the population, the queue
    BUDGET = "budget"      # a budget cap (tokens, wall time, trials)
    FAILURES = "failures"  # search.max_failures trials failed in this run
    STAGE = "stage"        # a proxy study's stage ended the run before the target was searched

    @property
    def failed(self) -> bool:
        """The run ended without doing what it was asked, for a reason that is not the user's cap."""
        return self in (StopKind.FAILURES, StopKind.STAGE)


@dataclass
class RunSummary:
    plan: Plan
    study: optuna.Study
    stop_reason: str
    stop_kind: StopKind = StopKind.FINISHED
    failures: int = 0
    wall_time_s: float = 0.0
    ran: list[int] = field(default_factory=list)


# the share of the cost caps' room left unplanned (`Budget.examples_left`), on top of the 2 % every planned last
# trial leaves (`lmtune.schedulers.search.LAST_TRIAL_MARGIN`): about 5 % in all
COST_MARGIN = 0.03


class Budget:
    """``budget`` and ``search.max_failures``: why a run must stop ("" while it may go on).

    ``max_train_tokens`` is a cap: finished trials' tokens (the study's record) + running trials' so far
    (``live``) + one evaluation interval (``unit_tokens``, estimated from the mean tokens per train example)
    may not cross it, so a trial stops at an evaluation when the next interval would. A study can still end
    a little above the cap when the next batches are longer than the mean. And no trial starts that the
    tokens left could not train to its end (``launch_reason``): the cap would stop it part-way, and a trial
    stopped part-way is never selected, so its tokens would be spent for nothing."""

    def __init__(self, budget: BudgetSection, *, max_failures: int, t0: float, unit_tokens: float = 0.0) -> None:
        self.budget, self.max_failures, self.t0 = budget, max_failures, t0
        self.stopped: StopKind | None = None  # the kind of the first stop reason given
        self.unit_tokens = unit_tokens
        self.learn_unit = not unit_tokens  # no tokenized split here (a script): learn it from the reports
        self._seen = (0, 0)  # reported (tokens, examples), summed over reports, for that estimate
        self.live: dict[int, int] = {}  # running trials' train tokens so far
        self.cost = CostMeter(budget)  # budget.max_gpu_hours / max_cost
        self.why: dict[int, str] = {}  # why a running trial was stopped for the budget (its record's stop_reason)
        self.planned: dict[int, int] = {}  # running trials' planned lengths (examples)
        self._lock = threading.Lock()

    def reason(self, study: optuna.Study, failures: int, *, planned: bool = False) -> str:
        """Why the run must stop now ("" while it may go on); `stopped` keeps the kind of the first reason.
        ``planned``: the scheduler planned its trials to fit ``max_train_tokens`` (successive halving), so the
        token cap stops it only once crossed by more than ``PLANNED_SLACK`` of it (the plan's tokens per example
        are the train split's mean), not when one more evaluation interval would not fit."""
        b = self.budget
        kind, why = StopKind.BUDGET, ""
        if failures >= self.max_failures:
            kind, why = StopKind.FAILURES, (f"stopped: {failures} trials failed in this run (search.max_failures="
                                            f"{self.max_failures}); see the reasons with 'lmtune status'")
        elif b.max_wall_time and time.monotonic() - self.t0 >= b.max_wall_time:
            why = f"budget: max_wall_time {b.max_wall_time:.0f}s reached"
        elif b.max_trials and len(study.get_trials(deepcopy=False)) >= b.max_trials:
            why = f"budget: max_trials {b.max_trials} reached"
        elif b.max_train_tokens and (self._tokens_left(study) < -PLANNED_SLACK * b.max_train_tokens if planned
                                     else self.next_interval_crosses_cap(study)):
            why = f"budget: max_train_tokens {b.max_train_tokens} reached"
        elif self.cost.active:
            why = self.cost.over(self.cost.spent(study))
        if why and self.stopped is None:
            self.stopped = kind
        return why

    def time_left(self, now: float | None = None) -> float | None:
        """Seconds left of ``max_wall_time`` in this run of the command (None: no such cap)."""
        cap = self.budget.max_wall_time
        if not cap:
            return None
        return cap - ((time.monotonic() if now is None else now) - self.t0)

    def running_at(self, study: optuna.Study, number: int, tokens: int, examples: int = 0,
                   examples_per_unit: int = 0, units: int = 0, units_ahead: int = 1) -> bool:
        """A running trial reached ``tokens`` (``examples``, ``units``): True when it must stop now for the token
        cap, a cost cap, or ``max_wall_time`` (its next evaluation, at its own pace so far, would end after the
        deadline). Without a tokenized split to estimate one interval from (a script trial's data is its
        own), the interval is taken from the tokens per example the trials report. ``units_ahead``: the units
        to the trial's next evaluation (more than one where it is evaluated only at rungs,
        `lmtune.protocol.TrialSpec.eval_units`: the cap can stop it only there, so the whole stretch must fit)."""
        now = time.monotonic()
        left, wait = self.time_left(now), self.cost.seconds_to_next_eval(number, examples=examples, units=units,
                                                                         now=now)
        if left is not None and wait is not None and wait > left:
            self.why[number] = (f"budget: max_wall_time {self.budget.max_wall_time:g}s would be crossed by this "
                                f"trial's next evaluation (~{wait:.0f}s at its pace; {max(0.0, left):.0f}s left)")
            return True
        if self.cost.running_at(study, number, examples=examples, units=units):
            caps = [f"{k} {v:g}" for k, v in (("max_gpu_hours", self.budget.max_gpu_hours),
                                              ("max_cost", self.budget.max_cost)) if v is not None]
            self.why[number] = f"budget: {' / '.join(caps)} would be crossed by this trial's next evaluation"
            return True
        with self._lock:
            self.live[number] = tokens
            if self.learn_unit and tokens and examples:
                self._seen = (self._seen[0] + tokens, self._seen[1] + examples)
                self.unit_tokens = self._seen[0] / self._seen[1] * examples_per_unit
        # its next interval: to its next evaluation, or what is left of its planned length when that is less (a
        # trial planned to end exactly at the cap is not stopped before its last, shorter interval)
        interval = self.unit_tokens * max(1, units_ahead)
        planned = self.planned.get(number)
        if planned and examples_per_unit > 0:
            interval = min(interval, self.unit_tokens / examples_per_unit * max(0, planned - examples))
        if self.budget.max_train_tokens and self.next_interval_crosses_cap(study, interval):
            self.why[number] = f"budget: max_train_tokens {self.budget.max_train_tokens} reached during this trial"
            return True
        return False

    def launch_reason(self, study: optuna.Study, examples: int, examples_per_unit: int, *, device: str = "cpu",
                      devices: int = 1) -> str:
        """Why a trial planned for ``examples`` train examples must not start: the tokens left under the cap
        cannot train it to its end ("" when they can, or while no tokens per example are known: a script
        study before its first report), or its predicted cost does not fit under a cost cap
        (`lmtune.tuner.cost.CostMeter.launch_reason`), or it would end after ``max_wall_time``'s deadline
        (`_wall_time_reason`)."""
        why = self.cost.launch_reason(study, device=device, devices=devices, examples=examples) or \
            self._wall_time_reason(device, examples)
        if why:
            if self.stopped is None:
                self.stopped = StopKind.BUDGET
            return why
        cap = self.budget.max_train_tokens
        if not cap or not self.unit_tokens or examples_per_unit <= 0:
            return ""
        need = self.unit_tokens / examples_per_unit * examples
        left = self._tokens_left(study)
        if need <= left:
            return ""
        if self.stopped is None:
            self.stopped = StopKind.BUDGET
        return (f"budget: max_train_tokens {cap} reached: the {max(0, round(left))} tokens left cannot train "
                f"another trial to its end (~{round(need)} tokens), so none was started")

    def _wall_time_reason(self, device: str, examples: int) -> str:
        """Why a trial planned for ``examples`` on ``device`` must not start under ``max_wall_time``: at the
        launch-to-end seconds per example measured on its kind, it would end after the deadline ("" when it
        would not, or while nothing was measured on that kind: the first trial starts)."""
        left, per = self.time_left(), self.cost.seconds_per_example(device)
        if left is None or per is None:
            return ""
        need = per * examples
        if need <= left:
            return ""
        return (f"budget: max_wall_time {self.budget.max_wall_time:g}s reached: the {max(0.0, left):.0f}s left "
                f"cannot train another trial to its end (~{need:.0f}s at the {per:.3g}s per example measured on "
                f"{device_kind(device)}), so none was started")

    def examples_left(self, study: optuna.Study, examples_per_unit: int, *, device: str = "cpu",
                      devices: int = 1) -> float | None:
        """How many train examples the budget left can still train: under ``max_train_tokens`` (at the mean
        tokens per example) and, for a trial on ``devices`` devices of ``device``, under the cost caps less
        ``COST_MARGIN`` (at the seconds per example measured on that kind; a shorter trial's start-up weighs
        more per example), and under ``max_wall_time`` in the seconds left (at the same speed, less the same
        margin: a trial started now must end by the deadline, whatever else runs beside it), the least of them,
        finished and running trials counted; None while no cap gives a number (none set, or nothing measured
        yet)."""
        rooms = []
        cap = self.budget.max_train_tokens
        if cap and self.unit_tokens and examples_per_unit > 0:
            rooms.append(max(0.0, self._tokens_left(study)) / (self.unit_tokens / examples_per_unit))
        cost = self.cost.examples_left(study, device=device, devices=devices)
        if cost is not None:
            rooms.append(cost * (1 - COST_MARGIN))
        left, per = self.time_left(), self.cost.seconds_per_example(device)
        if left is not None and per:
            rooms.append(max(0.0, left) / per * (1 - COST_MARGIN))
        return min(rooms) if rooms else None

    def started(self, number: int, *, device: str, devices: int, examples: int, at: float) -> None:
        """Trial ``number`` is launched at ``at`` (monotonic) on ``devices`` devices of ``device``, planned for
        ``examples``: the cost caps count it from then."""
        with self._lock:
            self.planned[number] = examples
        self.cost.started(number, device=device, devices=devices, examples=examples, at=at)

    def ended(self, number: int, *, examples: int = 0) -> None:
        """Call after the trial's record holds its train_tokens and wall time, so the caps never miss them."""
        with self._lock:
            self.live.pop(number, None)
            self.planned.pop(number, None)
        self.cost.ended(number, examples=examples)

    def next_interval_crosses_cap(self, study: optuna.Study, interval: float | None = None) -> bool:
        """Whether the tokens spent, the running trials' so far and one more ``interval`` (default: one evaluation
        unit's) cross ``max_train_tokens``."""
        return (self.unit_tokens if interval is None else interval) > self._tokens_left(study)

    def _tokens_left(self, study: optuna.Study) -> float:
        """``max_train_tokens`` (0 when unset) less the finished trials' tokens and the running trials' so far."""
        with self._lock:
            live = sum(self.live.values())
        return (self.budget.max_train_tokens or 0) - train_tokens_spent(study) - live
