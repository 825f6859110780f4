"""The search scheduler: an Optuna study (sampler + pruner, ask/tell) deciding for the one trial loop.

`lmtune.tuner.search.Tuner` sets the study up (plan, storage, sampler, the default trial and grid points in
the queue, warm-start priors) and hands `SearchScheduler` to `lmtune.tuner.drive.drive`, which runs it on
the study's backend. Every strategy but PBT is this scheduler (`lmtune.schedulers.pbt` is PBT's).

Contract: only the driver process writes the study. Trainer processes stream metrics; each evaluation is
reported to Optuna as step = evaluation units, and the pruner's answer goes back to the trainer before it
trains further. A failing trial is recorded with its reason and the study goes on until ``target`` trials
finished (COMPLETE or PRUNED), a budget runs out, or ``max_failures`` trials failed in this run.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import optuna
from optuna.trial import TrialState

from lmtune.config import SearchSection
from lmtune.execution import TrialHandle
from lmtune.pareto import promotable
from lmtune.protocol import (
    Continue,
    Decision,
    Ending,
    Eval,
    Event,
    OomRetry,
    Outcome,
    Progress,
    Start,
    Stop,
    ToolArgs,
)
from lmtune.schedulers.base import Launch, Scheduler, register
from lmtune.strategies import (
    default_min_units,
    prune_metric,
    pruner_name,
    pruning_value,
    rungs_from_end,
    traits,
)
from lmtune.study import INTERRUPTED, finished, record, requeue, storage_fault
from lmtune.tuner import (
    Beat,
    Budget,
    Coordination,
    NoTracking,
    Plan,
    Reporter,
    RunRecord,
    RunSummary,
    Tracker,
    length_of,
    longest_fitting,
    longest_length,
    shortest_examples,
    shortest_length,
    training_examples,
    trial_spec,
)

__all__ = ["LAST_TRIAL_FRACTION", "SearchScheduler", "auto_pins"]

# auto's last trial, planned from the budget left (`SearchScheduler._pins`): not shorter than this fraction of the
# shortest length the space allows, and planned this much short of the tokens left (the cost caps keep their own
# margin, `lmtune.tuner.budget.COST_MARGIN`)
LAST_TRIAL_FRACTION = 0.9
LAST_TRIAL_MARGIN = 0.02

log = logging.getLogger("lmtune")


@dataclass
class _Running:
    trial: optuna.trial.Trial
    params: dict[str, Any]
    is_default: bool
    beat: Beat
    lost: threading.Event            # another worker failed it as dead: its trainer is killed
    handles: list[TrialHandle]       # its trainer, once launched (what on_lost kills)
    started: float = 0.0
    timer: threading.Timer | None = None
    budget_stopped: bool = False
    devices: int = 1                 # processes it holds (its device-hours: wall time x devices)
    planned: int | None = None       # its planned length in train examples (the rungs compare equal lengths)
    eval_units: list[int] = field(default_factory=list)  # where alone its trainer evaluates (none: every unit)


@register("auto", "grid", "random", "bayes", "asha", "hyperband")
class SearchScheduler(Scheduler):
    """The Optuna study as a `lmtune.schedulers.Scheduler`: ``suggest`` asks the sampler (the queue first:
    default trial, grid points, priors), each evaluation goes to the pruner and the token cap, each ending
    is told to the study with its record. Keys are trial numbers.

    Built from its own parts of the config: the ``search`` section, the study's ``metric`` and
    ``direction``, and ``trial_timeout`` (execution.trial_timeout, seconds; None: none). ``objectives``
    ((metric, direction) each, the first being ``metric``): a multi-objective study, told every objective
    and pruned by multi-objective successive halving (`lmtune.pareto.promotable`) where the strategy prunes."""

    def __init__(self, plan: Plan, study: optuna.Study, *, search: SearchSection, metric: str,
                 direction: Literal["maximize", "minimize"], trial_timeout: float | None, coord: Coordination,
                 reporter: Reporter, budget: Budget, target: int, summary: RunSummary,
                 spec_extra: Mapping[str, Any], tracker: Tracker | None = None, queued_only: bool = False,
                 objectives: Sequence[tuple[str, str]] = (), eval_units: Sequence[int] = ()) -> None:
        self.plan, self.study, self.coord, self.reporter = plan, study, coord, reporter
        self.search, self.metric, self.direction, self.trial_timeout = search, metric, direction, trial_timeout
        self.tracker: Tracker = tracker or NoTracking()
        self.budget, self.target, self.summary, self.spec_extra = budget, target, summary, dict(spec_extra)
        self.poll_s = coord.poll_s
        self.eval_units = list(eval_units)  # the pruner's rungs, where trials need evaluating only there
        self._lock = threading.Lock()
        self._running: dict[int, _Running] = {}
        self._stop = ""
        self._done = self._others = 0
        # strategy auto: the searched training length is the pruner's resource, not a choice (see
        # ``auto_pins``): every configuration the sampler draws is planned at the longest length
        self.objectives = list(objectives) if len(objectives) > 1 else []  # [] : one objective
        # ... unless the training cost is an objective: then the length is a choice the front trades off
        trades_length = any(m in TRAIN_COSTS for m, _ in self.objectives)
        self.pinned = {} if trades_length else auto_pins(search.strategy, plan)
        self.queued_only = queued_only  # fixed configurations: the queue, then nothing
        # a strategy whose sampler draws the length as a choice: once the longest length no longer fits the budget
        # left, the next trial's length is planned from it (`_pins`), not drawn and then cut part-way by the cap
        self.fits_length = (not self.pinned and not trades_length and not queued_only
                            and traits(search.strategy).samples
                            and any(plan.space.get(k) is not None for k in ("epochs", "max_steps")))
        self.halving = halving_of(search, plan.max_units) if self.objectives else None

    # -- the loop's side ------------------------------------------------------------------------
    def stop_reason(self) -> str:
        with self._lock:
            self.coord.recover(self.study)
            self._done = finished(self.study)
            self._others = self.coord.others_running(self.study, self._running)  # other workers' trials
        self._stop = self._stop or self.budget.reason(self.study, self.summary.failures)
        return self._stop

    def removable_checkpoints(self) -> list[Path]:
        return []  # it hands no trial's checkpoint to another, so it deletes none either

    def waiting_on_others(self) -> bool:
        return self._others > 0  # a dead worker's trial may come back to the queue

    def suggest(self, device: str, threads: int) -> Launch | None:
        while self._done + len(self._running) + self._others < self.target:
            if (self.queued_only or traits(self.search.strategy).points) and not waiting(self.study):
                if not self._others:  # else a dead worker's point may come back to the queue
                    self._stop = ("queued configurations done" if self.queued_only else
                                  "grid exhausted (failed points are not retried; see 'lmtune status')")
                return None
            if self._stop:
                return None
            kind = self.budget.stopped  # launch_reason records a stop's kind; a launch that waits keeps none
            why = self.budget.launch_reason(self.study, self._next_examples(device), self.plan.examples_per_unit,
                                            device=device, devices=self.plan.trial.world_size)
            if why and self._running:
                # not yet: the running trials' predicted rest is counted against the cap, and a trial that is
                # pruned ends sooner than predicted; ask again when one ends (the driver waits for it)
                self.budget.stopped = kind
                return None
            if why and (self.pinned or self.fits_length):  # `_pins` planned from what every cap leaves
                why += (f" (the last trials are planned from the budget left, down to {LAST_TRIAL_FRACTION:.0%} of "
                        "the shortest length the space allows; less than that was left)")
            self._stop = why
            if self._stop:
                return None
            launch = self._ask(device, threads)
            if launch is not None:
                return launch
        return None

    def _next_examples(self, device: str) -> int:
        """The fewest train examples the next trial can be planned for: a queued configuration's own length
        (the queue is served first, oldest first), auto's planned length (`_pins`: the longest, or what the
        tokens left can train), else the shortest length the space allows (the sampler has not drawn it
        yet)."""
        plan = self.plan
        waiting_ = self.study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
        if waiting_:
            fixed = dict(waiting_[0].system_attrs.get("fixed_params") or waiting_[0].params)
        else:
            fixed, planned = self._pins(device)
            if planned is not None:
                return planned
            if not fixed:
                return shortest_examples(plan.space, plan.defaults, train_rows=plan.train_rows)
        return training_examples({**plan.defaults, **fixed}, train_rows=plan.train_rows,
                                 default_batch_size=int(plan.defaults["batch_size"]))

    def _pins(self, device: str) -> tuple[dict[str, Any], int | None]:
        """The next configuration's length: the length fields enqueued for it (what the sampler sees; empty: the
        sampler draws them) and, where the trial trains another length than they give, that length in train
        examples.

        auto: the longest length the space allows while the budget left (tokens, and the cost caps at the
        measured speed: `Budget.examples_left`) can train it to its end; another strategy whose sampler draws
        the length: a drawn length while the longest fits. After that the last trials are planned from the
        budget left (a trial that completes can be selected, and the budget is spent instead of left over
        because the next trial is a little too long, or cut part-way by the cap): at what is left,
        enqueued as the longest length that fits (the shortest where none does), as long as that is at least
        ``LAST_TRIAL_FRACTION`` of the shortest length the space allows. Below that, nothing fits and the launch
        rule stops the search, saying so. A last trial of 1.4 epochs in a space of whole epochs is trained with
        its schedule ending at the budget; the sampler sees the whole length it was enqueued with."""
        if not self.pinned and not self.fits_length:
            return {}, None
        plan = self.plan
        room = self.budget.examples_left(self.study, plan.examples_per_unit, device=device,
                                         devices=max(1, plan.trial.world_size))
        bs = int(plan.defaults["batch_size"])
        longest = self.pinned or longest_length(plan.space, plan.defaults, train_rows=plan.train_rows)
        full = training_examples({**plan.defaults, **longest}, train_rows=plan.train_rows, default_batch_size=bs)
        if room is None or full <= room:
            return dict(self.pinned), None
        # a small margin: the tokens per example of the examples the trial will draw differ from the mean a little,
        # and a trial the cap stops at its last evaluation has no score
        planned = int(room * (1 - LAST_TRIAL_MARGIN))
        fit = longest_fitting(plan.space, plan.defaults, train_rows=plan.train_rows, max_examples=room)
        short = shortest_length(plan.space, plan.defaults, train_rows=plan.train_rows)
        shortest = training_examples({**plan.defaults, **short}, train_rows=plan.train_rows, default_batch_size=bs)
        if planned < LAST_TRIAL_FRACTION * shortest:  # nothing fits (no length does here, see above): the launch
            return short, None  # rule refuses the shortest trial, naming its tokens
        fields = fit if fit is not None else short
        if planned <= training_examples({**plan.defaults, **fields}, train_rows=plan.train_rows,
                                        default_batch_size=bs) <= room:
            return fields, None  # that length fits and is (about) what is left: trained as it is
        return fields, planned

    def _ask(self, device: str, threads: int) -> Launch | None:
        """One trial from the study, or None when another worker holds it (it is failed unrun)."""
        study, plan = self.study, self.plan
        with self._lock:
            if (self.pinned or self.fits_length) and not waiting(study):  # the queue keeps its lengths
                fields, planned = self._pins(device)
                if fields or planned is not None:  # else the sampler draws the length too
                    study.enqueue_trial(fields, user_attrs={} if planned is None else {"planned_examples": planned})
            trial = study.ask()
            skip = self.coord.claim(study, trial)
            if skip:
                record.write(trial, fail_reason=skip)
                study.tell(trial, state=TrialState.FAIL)
                return None
            params = plan.space.suggest(trial)
            hparams = {**plan.defaults, **params}
            planned = trial.user_attrs.get("planned_examples")
            if planned:  # auto's last trial, planned from the budget left (`_pins`): trained at that length
                hparams.update(length_of(int(planned), hparams, train_rows=plan.train_rows,
                                         default_batch_size=int(plan.defaults["batch_size"])))
            is_default = bool(trial.user_attrs.get("is_default"))  # marked when it was enqueued
            record.write(trial, config=hparams, is_default=is_default)
        # The heartbeat starts before the launch: a launch can take seconds (a warm start waits for its
        # parent to import torch and read the weights), longer than other workers' grace period.
        handles: list[TrialHandle] = []
        lost = threading.Event()

        def on_lost() -> None:
            lost.set()
            for handle in handles:
                handle.kill()

        beat = self.coord.heartbeat(study, trial, on_lost)
        item = self._running[trial.number] = _Running(trial, params, is_default, beat, lost, handles)
        spec = trial_spec(plan, number=trial.number, hparams=hparams, device=device, threads=threads,
                          extra=dict(self.spec_extra), eval_units=list(self.eval_units))
        trial_dir = plan.paths.trial_dir(trial.number)
        with self._lock:
            # planned_examples: the pruner compares a trial only with trials of its length; device and devices:
            # what it holds, for the cost caps
            record.write(trial, trial_dir=str(trial_dir), planned_examples=spec.total_examples, device=device,
                         devices=max(1, spec.world_size))
        item.devices, item.planned = max(1, spec.world_size), spec.total_examples
        # under early stopping the trainer evaluates every unit (its patience counts evaluations)
        item.eval_units = [] if hparams.get("early_stopping_patience") else list(spec.eval_units)
        item.started = time.monotonic()  # before launch: a warm start's wait for its parent counts too
        self.budget.started(trial.number, device=device, devices=max(1, spec.world_size),
                            examples=spec.total_examples, at=item.started)
        return Launch(trial.number, spec, trial_dir)

    def started(self, key: Hashable, handle: TrialHandle) -> None:
        item = self._running[int(key)]  # type: ignore[call-overload]
        item.handles.append(handle)
        if item.lost.is_set():  # failed elsewhere while it launched
            handle.kill()
        limit = self.trial_timeout
        if limit:
            item.timer = threading.Timer(limit, handle.kill)
            item.timer.daemon = True
            item.timer.start()
        self.reporter.trial_started(item.trial.number, item.params, item.is_default)

    def abandon(self, keys: list[Hashable]) -> None:
        """On Ctrl-C or a crash of the driver (trainers already killed): mark their trials failed with the
        reason and enqueue their configurations again, so the next run redoes exactly that work."""
        study = self.study
        with self._lock:
            for key in keys:
                item = self._running.get(int(key))  # type: ignore[call-overload]
                if item is None:
                    continue
                item.beat.stop()  # its follower does not report a trial the loop killed
                if item.timer is not None:
                    item.timer.cancel()
                t = item.trial
                try:
                    frozen = study._storage.get_trial(t._trial_id)
                    if frozen.state != TrialState.RUNNING:
                        continue
                    record.write(t, fail_reason=INTERRUPTED)
                    study.tell(t, state=TrialState.FAIL)
                    requeue(study, study._storage.get_trial(t._trial_id))
                except Exception as exc:
                    if storage_fault(exc) is None:
                        raise
                    return  # the storage is gone: the next run's recovery fails and re-queues what ran

    # -- the trial's side -----------------------------------------------------------------------
    def on_eval(self, key: Hashable, ev: Eval, curve: list[dict[str, Any]]) -> Decision:
        item = self._running[int(key)]  # type: ignore[call-overload]
        metric = self.metric
        prune = self._report_several(item.trial, curve) if self.objectives else \
            self._report(item.trial, ev, metric, curve)
        over = not prune and self.budget.running_at(self.study, item.trial.number, ev.tokens, ev.examples,
                                                    self.plan.examples_per_unit, ev.units,
                                                    units_ahead(item.eval_units, ev.units, self.plan.max_units))
        item.budget_stopped = item.budget_stopped or over
        self.reporter.trial_advanced(item.trial.number, ev.examples, ev.tokens, 0)
        self.reporter.trial_progress(item.trial.number, ev.units, self.plan.max_units, ev.metrics.get(metric))
        return Stop() if prune or over else Continue()

    def on_event(self, key: Hashable, ev: Event) -> None:
        item = self._running[int(key)]  # type: ignore[call-overload]
        if isinstance(ev, Start):  # startup_s: launch to the first step (process, imports, model, data)
            with self._lock:
                record.write(item.trial, **record.started(ev, startup_s=time.monotonic() - item.started))
        elif isinstance(ev, Progress):  # between evaluations, every few seconds from the first step
            self.reporter.trial_advanced(item.trial.number, ev.examples, ev.tokens, ev.total_examples)
        elif isinstance(ev, OomRetry):  # the trainer halved its micro-batch after running out of memory
            with self._lock:
                record.write(item.trial, micro_batch_size=ev.micro_batch_size)
        elif isinstance(ev, ToolArgs):  # a tool trial: what the tool's Trainer runs with
            with self._lock:
                record.write(item.trial, tool_args=ev.values)

    def on_end(self, key: Hashable, outcome: Outcome) -> None:
        item = self._running[int(key)]  # type: ignore[call-overload]
        item.beat.stop()
        if item.timer is not None:
            item.timer.cancel()
        state, value, reason = self._record(self.study, item, outcome, budget_stopped=item.budget_stopped)
        # after the record holds its train_tokens and wall time
        self.budget.ended(item.trial.number, examples=int(outcome.curve[-1]["examples"]) if outcome.curve else 0)
        self._finished(item, state, value, reason)

    def on_crash(self, key: Hashable, exc: Exception) -> None:
        """Following the trial raised (e.g. another worker failed it as dead meanwhile and the study refuses
        the result): it is failed with the reason, and the loop hears that it ended."""
        item = self._running[int(key)]  # type: ignore[call-overload]
        item.beat.stop()
        reason = f"not recorded: {type(exc).__name__}: {exc}"
        with self._lock, contextlib.suppress(Exception):
            record.write(item.trial, fail_reason=reason)
            self.study.tell(item.trial, state=TrialState.FAIL)
        self.budget.ended(item.trial.number)
        self._finished(item, "FAIL", None, reason, best=False)

    def _finished(self, item: _Running, state: str, value: float | None, reason: str, *, best: bool = True) -> None:
        self.reporter.trial_finished(item.trial.number, state, value, reason,
                                     _best_value(self.study, self._lock) if best else None)
        with self._lock:
            self._running.pop(item.trial.number, None)
            self.summary.ran.append(item.trial.number)
            if state == "FAIL":
                self.summary.failures += 1

    def _report(self, trial: optuna.trial.Trial, ev: Eval, metric: str,
                curve: list[dict[str, Any]]) -> bool:
        """Report an evaluation; True when the pruner says stop."""
        s = self.search
        value = pruning_value(ev.metrics, prune_metric(s.strategy, s.prune_metric, metric), self.direction)
        with self._lock:
            record.write(trial, curve=curve)
            if value is None or not math.isfinite(value):
                return False
            trial.report(float(value), step=ev.units)
            return bool(trial.should_prune())

    def _report_several(self, trial: optuna.trial.Trial, curve: list[dict[str, Any]]) -> bool:
        """Record an evaluation of a multi-objective trial; True when multi-objective successive halving
        says stop: at each rung the evaluation crossed, the trial goes on only when it ranks among the first
        1/reduction_factor of the trials (of its planned length) that reached that rung (`lmtune.pareto`)."""
        with self._lock:
            record.write(trial, curve=curve)
            if self.halving is None or not curve:
                return False
            rungs, factor = self.halving
            before = int(curve[-2]["units"]) if len(curve) > 1 else 0
            crossed = [r for r in rungs if before < r <= int(curve[-1]["units"])]
            if not crossed:
                return False
            item = self._running.get(trial.number)
            length = item.planned if item is not None and item.planned is not None else \
                record.planned_examples_of(self.study._storage.get_trial(trial._trial_id))
            peers = [t for t in self.study.get_trials(deepcopy=False, states=_RANKED) if t.number != trial.number
                     and (length is None or record.planned_examples_of(t) in (None, length))]
            for rung in crossed:
                mine = self._rung_values(curve, rung)
                if mine is None:
                    continue
                points = [p for p in (self._rung_values(record.read(t).curve, rung, keys=mine) for t in peers)
                          if p is not None]
                points.append(mine)  # last: on a full tie the older trials rank first
                names = list(mine)
                if not promotable([tuple(p[k] for k in names) for p in points], len(points) - 1, factor):
                    return True
            return False

    def _rung_values(self, curve: list[dict[str, Any]], rung: int,
                     keys: Mapping[str, float] | None = None) -> dict[str, float] | None:
        """The objectives of a trial at ``rung`` (its first evaluation at or past it), lower-is-better, by
        name; None when it has not reached the rung or lacks one of ``keys``. The score is compared on the
        pruning metric (search.prune_metric, else the strategy's); train costs are left out (at a rung
        trials are compared at equal data, so they differ only by noise); a cost known only at the end is left
        out until every trial has it."""
        point = next((p for p in curve if int(p.get("units", 0)) >= rung), None)
        if point is None:
            return None
        metrics = point.get("metrics") or {}
        out: dict[str, float] = {}
        for i, (name, direction) in enumerate(self.objectives):
            if i == 0:
                name = prune_metric(self.search.strategy, self.search.prune_metric, name)
                value = pruning_value(metrics, name, self.direction)
                direction = self.direction
            elif name in TRAIN_COSTS:
                continue
            else:
                value = metrics.get(name)
            if isinstance(value, int | float) and math.isfinite(value):
                out[name] = -float(value) if direction == "maximize" else float(value)
        if keys is not None:
            if any(k not in out for k in keys):
                return None
            return {k: out[k] for k in keys}
        return out if out else None

    def _record(self, study: optuna.Study, item: _Running, outcome: Outcome, *,
                budget_stopped: bool = False) -> tuple[str, float | None, str]:
        trial, curve, end = item.trial, outcome.curve, outcome.end
        wall = time.monotonic() - item.started
        why = self.budget.why.get(item.trial.number, "budget: reached during this trial") if budget_stopped else ""
        ended = record.ended(outcome, metric=self.metric, wall_s=wall, stopped_for_budget=why,
                             objectives=[m for m, _ in self.objectives],
                             costs={"train_gpu_hours": wall * item.devices / 3600.0})
        state, value, reason, attrs = ended.state, ended.value, ended.reason, dict(ended.fields)
        tokens = attrs["train_tokens"]
        if ended.ending is Ending.PAUSED:  # the search never pauses a trial: a trainer that says so did not finish
            state, reason = "FAIL", "the trainer paused, but the search never asks a trial to pause"
            attrs["fail_reason"] = reason
        with self._lock:
            record.write(trial, **attrs)
            told = (ended.values if self.objectives else value) if state == "COMPLETE" else None
            study.tell(trial, told, state=TrialState[state])
        self.tracker.log_run(RunRecord(name=f"trial-{trial.number:04d}", params={**self.plan.defaults, **item.params},
                                       curve=curve, metrics=dict(end.metrics if end else {}), state=state,
                                       reason=reason, train_tokens=int(tokens), wall_time_s=wall))
        return state, value, reason


def auto_pins(strategy: str, plan: Plan) -> dict[str, Any]:
    """What ``strategy: auto`` (``strategy``: search.strategy) fixes in every configuration its sampler draws:
    the length fields the space searches (``epochs``, ``max_steps``) at the longest value it allows; empty for
    other strategies.

    auto treats the training length as the resource ASHA allocates, not as a choice: every trial is
    planned at the longest length, so trials of one study are compared at equal data *and* at the same
    point of their schedules, and a weak configuration is stopped after a third of it. Searched as a
    choice, most of a small budget went to 1-epoch trials that the rungs could not compare with longer
    ones, and on BBC topics auto tested 2.2 points below the peer (docs/benchmarks/search-small-cells.md);
    planned at the longest length it tied the peer at a third of its tokens. The default trial and warm-start
    configurations keep their own lengths (they are enqueued whole)."""
    if not traits(strategy).pins_length:
        return {}
    return longest_length(plan.space, plan.defaults, train_rows=plan.train_rows)


def waiting(study: optuna.Study) -> bool:
    """The study has queued configurations (WAITING trials) not yet run."""
    return bool(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))


def units_ahead(eval_units: Sequence[int], units: int, max_units: int) -> int:
    """Units from ``units`` to a trial's next evaluation: one, or, where it is evaluated only at ``eval_units``
    (`lmtune.protocol.TrialSpec.eval_units`), to the next of them or its end ``max_units`` (a budget cap can stop
    a trial only at an evaluation)."""
    if not eval_units:
        return 1
    return max(1, next((u for u in sorted(eval_units) if u > units), max_units) - units)


def halving_of(search: SearchSection, max_units: int) -> tuple[list[int], int] | None:
    """Multi-objective successive halving's rungs and reduction factor, where the strategy prunes (asha,
    hyperband, auto; None: it does not). Rungs in evaluation units, laid from the end as Hyperband lays them:
    max_units / reduction_factor^k for k = 1, 2, ... down to the first rung (search.min_units, else ASHA's
    default), so no rung falls just before the end (counted from the first rung up, 10 units gave rungs at 3
    and 9, and a trial stopped at 9 had spent nine tenths of its run for nothing). Hyperband's brackets become
    one asynchronous bracket."""
    if pruner_name(search.strategy, search.pruner) not in ("asha", "hyperband"):
        return None
    factor = search.factor
    first = search.min_units or default_min_units("asha", max_units, factor)
    return rungs_from_end(max_units, first, factor), factor


# the states whose curves a rung compares: finished, stopped, and running trials (asynchronous halving)
_RANKED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
TRAIN_COSTS = ("train_tokens", "train_gpu_hours")


def _best_value(study: optuna.Study, lock: threading.Lock) -> float | None:
    """The best value so far (the first objective's in a multi-objective study)."""
    with lock:
        best = record.best_of(study.get_trials(deepcopy=False), study.directions[0].name.lower())
        return None if best is None else float(best.values[0])
