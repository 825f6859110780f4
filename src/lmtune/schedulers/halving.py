"""Synchronous successive halving sized to the budget, with continuation, as a `Scheduler` of the one trial loop
(``search.strategy: halving``; ``auto`` under ``budget.max_train_tokens``: `lmtune.tuner.search`).

The plan (`lmtune.strategies.halving.plan_halving`) is made once, when the study starts: ``n`` configurations,
drawn by the study's sampler with the training length pinned to the longest the space allows, are the study's
first ``n`` trials. Each trains to the current rung, saving an exact checkpoint there, and is answered ``Pause``;
when every configuration of the rung has paused (or failed), they are ranked by the pruning metric at the rung
(search.prune_metric, else validation loss), the best go on from their checkpoints to the next rung and the
others are recorded as pruned. At the last rung the survivors train to their end and are told to the study with
their final score. An Optuna trial stays RUNNING while its configuration is paused; its record's
``paused_at_units`` says where (`lmtune status` shows it PAUSED).

The state (rung, each configuration's units and checkpoint) is written to ``<study_dir>/halving_state.json``
after every decision, so an interrupted study resumes every paused configuration from its checkpoint, and one
that was running from its last checkpoint (or from the start), without losing completed work. Checkpoints no
configuration will resume from are named after each decision (`removable_checkpoints`) and deleted by the
backend.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Literal

import optuna
from optuna.trial import TrialState

from lmtune.execution import TrialHandle
from lmtune.protocol import Continue, Decision, Ending, Eval, Event, Outcome, Pause, Progress, Start, Stop, ToolArgs
from lmtune.schedulers.base import Launch, Scheduler, register
from lmtune.strategies import HalvingPlan, fill, pruning_value, resize
from lmtune.study import INTERRUPTED, record
from lmtune.tuner import NoTracking, Plan, Reporter, RunRecord, Tracker, trial_spec

__all__ = ["HALVING_STATE", "HalvingScheduler"]

HALVING_STATE = "halving_state.json"
# how far the tokens per example the configurations trained may differ from the plan's (the train split's mean)
# before the rungs ahead are costed at the trained rate (`HalvingScheduler._fit_rest`)
RATE_TOLERANCE = 0.10
log = logging.getLogger("lmtune")


class Stage(Enum):
    """Where one configuration of the halving stands (its value is what the state file holds)."""

    WAITING = "waiting"   # to be started (or resumed) for the current rung
    RUNNING = "running"
    PAUSED = "paused"     # at the current rung, with a checkpoint
    DONE = "done"         # trained to its end: told to the study
    PRUNED = "pruned"
    FAILED = "failed"


@dataclass
class _Config:
    """One configuration of the halving: its trial, how far it trained and where it paused."""

    index: int
    trial: optuna.trial.Trial
    params: dict[str, Any]
    units: int = 0                      # units trained (where it paused, or ended)
    checkpoint: str | None = None       # the checkpoint it resumes from (None: from the start)
    state: Stage = Stage.WAITING
    curve: list[dict[str, Any]] = field(default_factory=list)
    tokens: int = 0
    wall: float = 0.0
    busy: float = 0.0
    started: float = 0.0
    startup: float | None = None
    handle: TrialHandle | None = None


@register("halving")
class HalvingScheduler(Scheduler):
    """Successive halving over the configurations of ``halving`` (its rungs and how many reach each), keys are
    configuration indices. Only this process writes the study.

    ``pinned``: the length fields every configuration is trained with (the longest the space allows);
    ``prune_metric``: what the configurations are ranked by at a rung; ``budget_stop``: the budget's stop reason
    (a safety: the plan is sized to fit it); ``tokens_left``: the token budget left (None: none), by which the
    rungs still ahead are planned again at each promotion (`_fit_rest`); ``slack``: the tokens past the cap a
    planned study may still train (the cap's 1 % slack: it keeps promotions that fit within it);
    ``rungs_only``: trials need evaluating only at the rungs (`TrialSpec.eval_units`: the grid is the halving's
    own, training.eval_every unset, so that rungs can fall within the first epoch; evaluating at each of its 8
    units an epoch would cost more than the training on small data; not under a deadline or cost cap, which
    stop a trial at an evaluation); ``include_default``: the first
    configuration is the default settings at the pinned length (marked as the default-settings trial only where
    that is their own length). In the sweep that chose the halving (benchmarks/tables/halving_sweep.py
    --default-first), that configuration in place of a random one moved the mean regret by -0.5 to +0.5 points
    at 2x-5x, both ways (docs/benchmarks/search-replay.md)."""

    poll_s: float | None = None
    finished_reason = "successive halving finished"

    def __init__(self, plan: Plan, study: optuna.Study, *, halving: HalvingPlan, pinned: dict[str, Any],
                 metric: str, prune_metric: str, direction: Literal["maximize", "minimize"],
                 include_default: bool, reporter: Reporter, budget_stop: Callable[[], str],
                 tokens_left: Callable[[], float | None] = lambda: None, slack: float = 0.0,
                 tracker: Tracker | None = None, rungs_only: bool = False) -> None:
        self.plan, self.study, self.halving, self.pinned = plan, study, halving, dict(pinned)
        self.metric, self.prune_metric, self.direction = metric, prune_metric, direction
        self.include_default, self.reporter = include_default, reporter
        self.tracker: Tracker = tracker or NoTracking()
        self._budget_stop, self._tokens_left, self._slack = budget_stop, tokens_left, slack
        self.rungs_only = rungs_only
        self.lock = threading.Lock()
        self.configs: list[_Config] = []
        self.rung = 0                       # index into halving.rungs of the rung being trained to
        self.waiting: deque[int] = deque()
        self.state_path = plan.paths.root / HALVING_STATE
        self.every = halving.checkpoint_every()
        self._removable: list[Path] = []
        self._stop = ""
        self._sized = False  # the plan sized again at the rate the first configuration trained (`_size_by_rate`)

    @staticmethod
    def saved_plan(study_root: Path) -> HalvingPlan | None:
        """The plan of a halving this study directory holds the state of (None: none), to resume it."""
        path = study_root / HALVING_STATE
        if not path.is_file():
            return None
        state = json.loads(path.read_text())
        return HalvingPlan(tuple(state["rungs"]), tuple(state["sizes"]), int(state.get("factor", 2)))

    # -- start -----------------------------------------------------------------------------------
    def start(self) -> None:
        """Draw the configurations (first run) or load them (resume); queue those that train to this rung."""
        if self.state_path.is_file():
            self._load(json.loads(self.state_path.read_text()))
        else:
            for i in range(self.halving.configurations):
                self.configs.append(self._new_config(i))
                self._save()
            self.waiting.extend(range(len(self.configs)))
            self._save()

    def _new_config(self, i: int) -> _Config:
        plan = self.plan
        default = i == 0 and self.include_default and not plan.space.outside(plan.defaults)
        fixed = {**plan.space.restrict(plan.defaults), **self.pinned} if default else dict(self.pinned)
        # the default settings at the pinned length: the baseline only where that is the default's own length
        same = all(plan.defaults.get(k) == v for k, v in self.pinned.items())
        self.study.enqueue_trial(fixed, user_attrs=record.enqueue_attrs(is_default=(default and same) or None))
        trial = self.study.ask()
        params = plan.space.suggest(trial)
        record.write(trial, config={**plan.defaults, **params}, trial_dir=str(plan.paths.trial_dir(trial.number)),
                     planned_examples=plan.total_examples)
        return _Config(i, trial, params)

    def _load(self, saved: dict[str, Any]) -> None:
        by_number = {t.number: t for t in self.study.get_trials(deepcopy=False)}
        self.rung = int(saved["rung"])
        self._sized = bool(saved.get("sized", False))
        for i, c in enumerate(saved["configs"]):
            frozen = by_number[int(c["trial"])]
            rec = record.read(frozen)
            conf = _Config(i, optuna.trial.Trial(self.study, frozen._trial_id), dict(frozen.params),
                          units=int(c["units"]), checkpoint=c.get("checkpoint"), state=Stage(c["state"]),
                          tokens=rec.train_tokens or 0, wall=rec.wall_time_s or 0.0)
            if conf.state is Stage.RUNNING:  # interrupted: from its last checkpoint, or from the start
                conf.state = Stage.WAITING
            # the evaluations after its checkpoint are trained again
            conf.curve = [p for p in rec.curve if int(p.get("units", 0)) <= conf.units]
            self.configs.append(conf)
            if conf.state is Stage.WAITING:
                self.waiting.append(i)
        mine = {c.trial.number for c in self.configs}
        for t in by_number.values():  # a trial asked but never recorded in the state: not ours to resume
            if t.state == TrialState.RUNNING and t.number not in mine:
                record.write_frozen(self.study, t, fail_reason=INTERRUPTED)
                self.study.tell(t.number, state=TrialState.FAIL)
        self._promote_if_done()

    def _save(self) -> None:
        state = {"rung": self.rung, "rungs": list(self.halving.rungs), "sizes": list(self.halving.sizes),
                 "factor": self.halving.factor, "sized": self._sized,
                 "configs": [{"trial": c.trial.number, "units": c.units, "checkpoint": c.checkpoint,
                              "state": c.state.value} for c in self.configs]}
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state))
        tmp.replace(self.state_path)

    # -- the loop's side -----------------------------------------------------------------------
    def stop_reason(self) -> str:
        self._stop = self._stop or self._budget_stop()
        return self._stop

    def suggest(self, device: str, threads: int) -> Launch | None:
        with self.lock:
            if not self.waiting:
                return None
            conf = self.configs[self.waiting.popleft()]
            conf.state = Stage.RUNNING
            if conf.units:
                record.write(conf.trial, paused_at_units=None)
            resume = conf.checkpoint
            if resume is not None and not self.checkpoints.checkpoint_ready(Path(resume)):
                log.warning("halving: trial %d's checkpoint %s is gone; it trains again from the start",
                            conf.trial.number, resume)
                resume, conf.checkpoint, conf.units = None, None, 0
                conf.curve = []
            self._save()
        hparams = {**self.plan.defaults, **conf.params}
        spec = trial_spec(self.plan, number=conf.trial.number, hparams=hparams, device=device, threads=threads,
                          checkpoint_every=self.every, resume_from=resume,
                          eval_units=list(self.halving.rungs) if self.rungs_only else [])
        conf.started = time.monotonic()
        if conf.startup is None:
            with self.lock:
                record.write(conf.trial, device=device, devices=max(1, spec.world_size))
        return Launch(conf.index, spec, self.plan.paths.trial_dir(conf.trial.number))

    def started(self, key: Hashable, handle: TrialHandle) -> None:
        conf = self.configs[int(key)]  # type: ignore[call-overload]
        conf.handle = handle
        if conf.units == 0:
            self.reporter.trial_started(conf.trial.number, conf.params, bool(conf.trial.user_attrs.get("is_default")))

    def removable_checkpoints(self) -> list[Path]:
        with self.lock:
            gone, self._removable = self._removable, []
        return gone

    def abandon(self, keys: list[Hashable]) -> None:
        """Interrupted: the trainers were killed; each configuration resumes from the state file next run."""

    # -- the trial's side ----------------------------------------------------------------------
    def on_eval(self, key: Hashable, ev: Eval, curve: list[dict[str, Any]]) -> Decision:
        conf = self.configs[int(key)]  # type: ignore[call-overload]
        conf.curve.append(ev.point())
        conf.tokens = max(conf.tokens, ev.tokens)
        target = self.halving.rungs[self.rung]
        with self.lock:
            record.write(conf.trial, curve=conf.curve, train_tokens=conf.tokens)
            if ev.checkpoint is not None and not (ev.units >= target and target < self.plan.max_units):
                self._removable.append(Path(ev.checkpoint))  # not a rung's: no one resumes from it
        self.reporter.trial_advanced(conf.trial.number, ev.examples, ev.tokens, 0)
        self.reporter.trial_progress(conf.trial.number, ev.units, self.plan.max_units, ev.metrics.get(self.metric))
        if self.stop_reason():
            return Stop()
        if ev.units >= target and target < self.plan.max_units and ev.checkpoint is not None:
            with self.lock:
                if conf.checkpoint is not None:
                    self._removable.append(Path(conf.checkpoint))  # the one it resumed from
                conf.checkpoint, conf.units = ev.checkpoint, ev.units
            return Pause()
        return Continue()

    def on_event(self, key: Hashable, ev: Event) -> None:
        conf = self.configs[int(key)]  # type: ignore[call-overload]
        if isinstance(ev, Start) and conf.startup is None:
            conf.startup = time.monotonic() - conf.started
            with self.lock:
                record.write(conf.trial, **record.started(ev, startup_s=conf.startup))
        elif isinstance(ev, Progress):
            self.reporter.trial_advanced(conf.trial.number, ev.examples, ev.tokens, ev.total_examples)
        elif isinstance(ev, ToolArgs):
            with self.lock:
                record.write(conf.trial, tool_args=ev.values)

    def on_end(self, key: Hashable, outcome: Outcome) -> None:
        conf = self.configs[int(key)]  # type: ignore[call-overload]
        conf.wall += time.monotonic() - conf.started
        if outcome.end is not None:
            conf.busy += outcome.end.busy_s
        ended = record.ended(outcome, metric=self.metric, wall_s=conf.wall, busy_s=conf.busy, curve=list(conf.curve),
                             train_tokens=conf.tokens, stopped_for_budget=self._stop)
        finished: tuple[str, float | None, str] | None = None
        with self.lock:
            if ended.ending is Ending.PAUSED:
                conf.state = Stage.PAUSED
                record.write(conf.trial, **{k: v for k, v in ended.fields.items() if k != "stopped_by"},
                             paused_at_units=conf.units)
                if self.rung == 0 and not self._sized:
                    self._size_by_rate(conf)
            else:
                record.write(conf.trial, **ended.fields)
                if ended.state == "COMPLETE":
                    conf.state, conf.units = Stage.DONE, self.plan.max_units
                    self.study.tell(conf.trial, ended.value)
                    finished = ("COMPLETE", ended.value, "")
                else:
                    reason = ended.reason or f"ended as {ended.state} without a result"
                    state = TrialState.PRUNED if ended.state == "PRUNED" else TrialState.FAIL
                    if state is TrialState.FAIL and "fail_reason" not in ended.fields:
                        record.write(conf.trial, fail_reason=reason)
                    conf.state = Stage.PRUNED if state is TrialState.PRUNED else Stage.FAILED
                    self.study.tell(conf.trial, state=state)
                    finished = (state.name, None, reason)
                if conf.checkpoint is not None:
                    self._removable.append(Path(conf.checkpoint))
                    conf.checkpoint = None
            self._promote_if_done()
            self._save()
        if finished is not None:
            self._finished(conf, *finished)

    def on_crash(self, key: Hashable, exc: Exception) -> None:
        conf = self.configs[int(key)]  # type: ignore[call-overload]
        reason = f"not recorded: {type(exc).__name__}: {exc}"
        with self.lock:
            record.write(conf.trial, fail_reason=reason)
            self.study.tell(conf.trial, state=TrialState.FAIL)
            conf.state = Stage.FAILED
            self._promote_if_done()
            self._save()
        self._finished(conf, "FAIL", None, reason)

    # -- the halving -----------------------------------------------------------------------------
    def _value_at(self, conf: _Config, rung: int) -> float:
        """Its pruning value (higher is better) at its first evaluation at or past ``rung``; -inf without one."""
        point = next((p for p in conf.curve if int(p.get("units", 0)) >= rung), None)
        value = pruning_value(point.get("metrics") or {}, self.prune_metric, self.direction) if point else None
        if value is None or not math.isfinite(value):
            return -math.inf
        return value if self.direction == "maximize" else -value

    def _promote_if_done(self) -> None:
        """Every configuration of this rung has paused, ended or failed: the best go on to the next rung, the
        others are pruned. Under the lock."""
        if self.waiting or any(c.state is Stage.RUNNING for c in self.configs):
            return
        if self.rung + 1 >= len(self.halving.rungs) or self._stop:
            return
        rung = self.halving.rungs[self.rung]
        here = [c for c in self.configs if c.state is Stage.PAUSED]
        self._fit_rest(len(here))
        keep = self.halving.sizes[self.rung + 1]
        ranked = sorted(here, key=lambda c: (-self._value_at(c, rung), c.index))  # ties: the earlier first
        for place, conf in enumerate(ranked[keep:], start=keep + 1):
            reason = (f"successive halving: ranked {place} of {len(ranked)} by {self.prune_metric} at {rung} of "
                      f"{self.plan.max_units} units; the best {keep} went on")
            record.write(conf.trial, stopped_by=Ending.PRUNED.wire, pruned_at_units=conf.units, stop_reason=reason,
                         paused_at_units=None)
            self.study.tell(conf.trial, state=TrialState.PRUNED)
            conf.state = Stage.PRUNED
            if conf.checkpoint is not None:
                self._removable.append(Path(conf.checkpoint))
                conf.checkpoint = None
            self.tracker.log_run(RunRecord(
                name=f"trial-{conf.trial.number:04d}", params={**self.plan.defaults, **conf.params}, curve=conf.curve,
                metrics=dict((conf.curve or [{}])[-1].get("metrics") or {}), state="PRUNED", reason=reason,
                train_tokens=conf.tokens, wall_time_s=conf.wall))
            self.reporter.trial_finished(conf.trial.number, "PRUNED", None, reason, None)
        self.rung += 1
        for conf in ranked[:keep]:
            conf.state = Stage.WAITING
            self.waiting.append(conf.index)

    def _rate(self, confs: list[_Config]) -> float | None:
        """The tokens per example ``confs`` trained, or the plan's (the train split's mean) where they are within
        ``RATE_TOLERANCE`` of it (`_fit_rest` says why); None before they trained any."""
        examples = sum(int(c.curve[-1].get("examples", 0)) for c in confs if c.curve)
        tokens = sum(c.tokens for c in confs)
        if examples <= 0 or tokens <= 0:
            return None
        rate, mean = tokens / examples, self.plan.tokens_per_example
        return mean if mean > 0 and abs(rate / mean - 1) <= RATE_TOLERANCE else rate

    def _size_by_rate(self, first: _Config) -> None:
        """The first configuration to reach the first rung measured what a unit costs. Where it trained more
        than ``RATE_TOLERANCE`` above the tokens per example the plan was costed at (a script that counts its
        own tokens: a chat template, other truncation), the plan drawn at the start would spend the budget on
        the first rung and leave too little to bring one configuration to its end: it is sized again for the
        whole budget at the rate trained (`resize`), and the configurations not yet started that it cannot carry
        are left out, recorded as pruned with why. (Cheaper than planned needs nothing here: `_fit_rest`
        promotes more at each rung.) Under the lock."""
        self._sized = True
        left, rate = self._tokens_left(), self._rate([first])
        if left is None or rate is None or self.plan.tokens_per_example <= 0 or rate <= self.plan.tokens_per_example:
            return
        unit = rate * self.plan.examples_per_unit
        room = (max(0.0, left) + sum(c.tokens for c in self.configs)) / unit  # units in all, trained ones counted
        unstarted = [c for c in self.configs if c.state is Stage.WAITING and c.units == 0 and c.startup is None]
        started = len(self.configs) - len(unstarted)
        sized = resize(self.halving, room, least=started)
        drop = unstarted[len(unstarted) - (len(self.configs) - sized.configurations):] \
            if sized.configurations < len(self.configs) else []
        reason = (f"successive halving: not trained: the first configuration trained {rate:.1f} tokens per "
                  f"example, not the {self.plan.tokens_per_example:.1f} planned, so the budget carries "
                  f"{sized.configurations} configurations through the halving, not {len(self.configs)}")
        for conf in drop:
            record.write(conf.trial, stopped_by=Ending.PRUNED.wire, pruned_at_units=0, stop_reason=reason)
            self.study.tell(conf.trial, state=TrialState.PRUNED)
            conf.state = Stage.PRUNED
            self.waiting.remove(conf.index)
            self.reporter.trial_finished(conf.trial.number, "PRUNED", None, reason, None)
        if drop or sized.sizes != self.halving.sizes:
            log.warning("%s; per rung: %s", reason.removeprefix("successive halving: not trained: "),
                        "/".join(map(str, sized.sizes)))
        self.halving = sized

    def _fit_rest(self, paused: int) -> None:
        """Plan the rungs ahead again from the token budget left: where what is planned would not fit, fewer go
        on, finalists first, at least one per rung; where it leaves more than a rung's step of the budget (the
        configurations trained fewer tokens than planned, or some failed), more go on, as `fill` would promote
        them (the highest rung first; never more than reached the rung below: ``paused`` at this one), up to
        the cap itself (not its slack). Under the lock.

        The rungs ahead are costed at the train split's mean tokens per example, as the plan was: whole epochs
        train exactly that, while the first fractions of an epoch the configurations trained so far run a few
        percent above it (3-6 % at a quarter epoch on the recorded tables), so their rate would cut promotions
        the budget pays for. Only where the rate they trained differs from the mean by more than
        ``RATE_TOLERANCE`` (a script's data, other data than the plan's) is it used instead."""
        left, rate = self._tokens_left(), self._rate(self.configs)
        if left is None or rate is None:
            return
        unit = rate * self.plan.examples_per_unit
        room = max(0.0, left + self._slack) / unit  # units the budget still pays for, its slack included
        rungs, sizes, k = self.halving.rungs, list(self.halving.sizes), self.rung

        def cost() -> int:
            return sum(sizes[j] * (rungs[j] - rungs[j - 1]) for j in range(k + 1, len(rungs)))

        while cost() > room:
            cut = [j for j in range(k + 1, len(rungs))
                   if sizes[j] > 1 and (j + 1 == len(rungs) or sizes[j] > sizes[j + 1])]
            if not cut:
                break
            sizes[cut[-1]] -= 1
        # more go on where the rest leaves budget: `fill` over the rungs ahead, counted from this one, with at
        # most the configurations paused here going on to the next
        strict = max(0.0, left) / unit
        ahead = tuple(r - rungs[k] for r in rungs[k + 1:])
        sizes[k + 1:] = fill(sizes[k + 1:], ahead, strict, paused)
        if sizes != list(self.halving.sizes):
            log.warning("successive halving: the tokens left pay for %s configurations at the rungs ahead, not %s "
                        "(costed at %.1f tokens per example)", "/".join(map(str, sizes[k + 1:])),
                        "/".join(map(str, self.halving.sizes[k + 1:])), rate)
            self.halving = HalvingPlan(rungs, tuple(sizes), self.halving.factor)

    def _finished(self, conf: _Config, state: str, value: float | None, reason: str) -> None:
        self.tracker.log_run(RunRecord(
            name=f"trial-{conf.trial.number:04d}", params={**self.plan.defaults, **conf.params}, curve=conf.curve,
            metrics=dict((conf.curve or [{}])[-1].get("metrics") or {}), state=state, reason=reason,
            train_tokens=conf.tokens, wall_time_s=conf.wall))
        try:
            best = float(self.study.best_value)
        except ValueError:
            best = None
        self.reporter.trial_finished(conf.trial.number, state, value, reason, best)
