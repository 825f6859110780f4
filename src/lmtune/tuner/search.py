"""The search: an Optuna study (sampler + pruner, ask/tell) as a `Scheduler` of the one trial loop.

`Tuner` sets a study up (plan, storage, sampler, the default trial and grid points in the queue, warm-start
priors) and hands `SearchScheduler` to `lmtune.tuner.drive.drive`, which runs it on the study's backend;
PBT (`tuner/pbt_run.py`) is another scheduler of the same loop.

Contract: only this (driver) process writes the study. Trainer processes stream metrics; each
evaluation is reported to Optuna as step = evaluation units, and the pruner's answer goes back to the
trainer before it trains further. A failing trial is recorded with its reason and the study goes on
until ``n_trials`` trials finished (COMPLETE or PRUNED), a budget runs out, or ``max_failures``
trials failed in this run.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import threading
import time
import warnings
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import optuna
from optuna.trial import TrialState

from lmtune.config import StudyConfig
from lmtune.config.schema import BudgetSection, SearchSection, lower_is_better
from lmtune.errors import ConfigError, LmtuneError, StudyFault
from lmtune.execution import Executor, LocalExecutor, TrialHandle, make_executor
from lmtune.protocol import Continue, Decision, Ending, Outcome, Stop, failure_reason
from lmtune.strategies import (
    make_pruner,
    make_sampler,
    prune_metric,
    pruner_name,
    pruning_value,
    startup_trials,
)
from lmtune.study import record
from lmtune.study.store import (
    INTERRUPTED,
    StudyPaths,
    check_not_lost,
    fault_message,
    finished,
    requeue,
    storage_fault,
    train_tokens_spent,
    write_meta,
)
from lmtune.training.models import resolve_model
from lmtune.tuner.coordination import Beat, Coordination, LocalCoordination, SharedCoordination
from lmtune.tuner.drive import Launch, drive
from lmtune.tuner.pbt_run import PBTRunner
from lmtune.tuner.plan import (
    Plan,
    longest_length,
    make_plan,
    shortest_examples,
    training_examples,
    trial_spec,
)
from lmtune.tuner.priors import enqueue_priors, prior_configs, within
from lmtune.tuner.progress import PlainReporter, Reporter
from lmtune.tuner.tracking import NoTracking, RunRecord, Tracker, make_tracker

optuna.logging.set_verbosity(optuna.logging.WARNING)
log = logging.getLogger("lmtune")


@dataclass
class RunSummary:
    plan: Plan
    study: optuna.Study
    stop_reason: str
    failures: int = 0
    wall_time_s: float = 0.0
    ran: list[int] = field(default_factory=list)


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
        self.unit_tokens = unit_tokens
        self.learn_unit = not unit_tokens  # no tokenized split here (a script): learn it from the reports
        self._seen = (0, 0)  # reported (tokens, examples), summed over reports, for that estimate
        self.live: dict[int, int] = {}  # running trials' train tokens so far
        self._lock = threading.Lock()

    def reason(self, study: optuna.Study, failures: int) -> str:
        b = self.budget
        if failures >= self.max_failures:
            return (f"stopped: {failures} trials failed in this run (search.max_failures="
                    f"{self.max_failures}); see the reasons with 'lmtune status'")
        if b.max_wall_time and time.monotonic() - self.t0 >= b.max_wall_time:
            return f"budget: max_wall_time {b.max_wall_time:.0f}s reached"
        if b.max_trials and len(study.get_trials(deepcopy=False)) >= b.max_trials:
            return f"budget: max_trials {b.max_trials} reached"
        if b.max_train_tokens and self.next_interval_crosses_cap(study):
            return f"budget: max_train_tokens {b.max_train_tokens} reached"
        return ""

    def running_at(self, study: optuna.Study, number: int, tokens: int, examples: int = 0,
                   examples_per_unit: int = 0) -> bool:
        """A running trial reached ``tokens``: True when it must stop now for the token cap. Without a
        tokenized split to estimate one interval from (a script trial's data is its own), the interval
        is taken from the tokens per example the trials report."""
        with self._lock:
            self.live[number] = tokens
            if self.learn_unit and tokens and examples:
                self._seen = (self._seen[0] + tokens, self._seen[1] + examples)
                self.unit_tokens = self._seen[0] / self._seen[1] * examples_per_unit
        return bool(self.budget.max_train_tokens) and self.next_interval_crosses_cap(study)

    def launch_reason(self, study: optuna.Study, examples: int, examples_per_unit: int) -> str:
        """Why a trial planned for ``examples`` train examples must not start: the tokens left under the cap
        cannot train it to its end ("" when they can, or while no tokens per example are known: a script
        study before its first report)."""
        cap = self.budget.max_train_tokens
        if not cap or not self.unit_tokens or examples_per_unit <= 0:
            return ""
        need = self.unit_tokens / examples_per_unit * examples
        with self._lock:
            live = sum(self.live.values())
        left = cap - train_tokens_spent(study) - live
        if need <= left:
            return ""
        return (f"budget: max_train_tokens {cap} reached: the {max(0, round(left))} tokens left cannot train "
                f"another trial to its end (~{round(need)} tokens), so none was started")

    def ended(self, number: int) -> None:
        """Call after the trial's record holds its train_tokens, so the cap never misses them."""
        with self._lock:
            self.live.pop(number, None)

    def next_interval_crosses_cap(self, study: optuna.Study) -> bool:
        cap = self.budget.max_train_tokens or 0
        with self._lock:
            live = sum(self.live.values())
        return train_tokens_spent(study) + live + self.unit_tokens > cap


class Tuner:
    """Runs (or resumes) the study a config describes. Keyword-only; one ``run()`` per instance.

    ``spec_extra`` goes into every trial's ``TrialSpec.extra`` (e.g. ``truncate_layers`` for a proxy
    stage); ``meta`` holds extra keys for ``lmtune.json`` (a two-stage study's ``stages``).
    ``shared``: one of several workers on a server-backed study (`lmtune worker`); see
    `lmtune.tuner.coordination`. Otherwise this process is the study's only writer. ``backend``: the
    executor to run trials on (e.g. `lmtune.execution.simulated.SimulatedExecutor`), instead of the one
    ``execution.backend`` names. ``queued_only``: run the study's queue (enqueued configurations: a proxy's
    transfers) and nothing else: the sampler is never asked for a new configuration, so a transfer that
    fails is recorded as failed, not replaced, and the run ends when the queue is empty.
    """

    def __init__(self, cfg: StudyConfig, *, n_trials: int | None = None, reporter: Reporter | None = None,
                 spec_extra: Mapping[str, Any] | None = None, meta: Mapping[str, Any] | None = None,
                 shared: bool = False, backend: Executor | None = None, queued_only: bool = False) -> None:
        self.cfg = cfg
        self.queued_only = queued_only
        self.backend = backend  # None: the one execution.backend names
        ex = cfg.execution
        if shared and cfg.search.strategy == "pbt":
            raise ConfigError("search.strategy: pbt runs from one driver (its population state is in the study "
                              "directory); spread a population over machines with 'lmtune tune' and "
                              "execution.backend: ray instead of 'lmtune worker'")
        self.coord: Coordination = (SharedCoordination(heartbeat_interval=ex.heartbeat_interval,
                                                       grace_period=ex.grace_period,
                                                       grid=cfg.search.strategy == "grid")
                                    if shared else LocalCoordination())
        self.n_trials = n_trials or cfg.search.n_trials
        self.reporter = reporter or PlainReporter()
        self.spec_extra = dict(spec_extra or {})
        self.meta = dict(meta or {})
        self.tracker: Tracker | None = None

    def run(self) -> RunSummary:
        """Set the study up and drive its scheduler on the backend until it stops. A fault of the study's
        storage or disk (full, connection lost) raises :class:`StudyFault` saying what is kept."""
        t0 = time.monotonic()
        try:
            with self.coord.driver(Path(self.cfg.study.dir)):  # one driver per study folder (worker: none)
                early = self._prestarted()
                try:
                    summary, scheduler = self.prepare(t0)
                except BaseException:
                    if early is not None:
                        early.close()
                    raise
                executor = self.backend or early or make_executor(self.cfg.execution)
                try:
                    reason = drive(scheduler, executor)
                    summary.stop_reason = reason or ("population finished" if isinstance(scheduler, PBTRunner)
                                                     else "n_trials reached")
                finally:
                    executor.close()
                    if self.tracker is not None:
                        self.tracker.close()
                    summary.wall_time_s = time.monotonic() - t0
                    self.reporter.close()
        except LmtuneError:
            raise  # input errors (an unreachable storage URL among them) keep their own message
        except Exception as exc:
            fault = storage_fault(exc)
            if fault is None:
                raise
            raise StudyFault(fault_message(fault, self.cfg.study.storage or
                                           f"sqlite:///{Path(self.cfg.study.dir) / 'study.db'}")) from exc
        return summary

    def prepare(self, t0: float) -> tuple[RunSummary, SearchScheduler | PBTRunner]:
        """Everything before the first trial: refuse bad input, tokenize, open (or resume) the study, fill
        its queue (default trial, grid points, priors) or its PBT population; returns the scheduler."""
        cfg = self.cfg
        # refused before any training (before tokenizing); restricted to the plan's space when enqueued
        priors = prior_configs(cfg.search, metric=cfg.study.metric, direction=cfg.study.direction,
                               study_dir=cfg.study.dir)
        plan = make_plan(cfg)  # the space is built once, in the plan: components get plan.space
        study = self._open_study(plan)
        summary = RunSummary(plan=plan, study=study, stop_reason="")
        if cfg.search.strategy == "pbt":
            population = cfg.search.pbt.population_size or self.n_trials
            if population < 2:
                raise ConfigError(f"search.pbt.population_size: PBT needs at least 2 members, got {population}; "
                                  "set search.pbt.population_size or --n-trials to 2 or more")
            pbt_budget = Budget(cfg.budget, max_failures=cfg.search.max_failures, t0=t0)
            runner = PBTRunner(plan, study, pbt=cfg.search.pbt, population=population, metric=cfg.study.metric,
                               seed=cfg.study.seed, eval_every=cfg.training.eval_every,
                               include_default=cfg.search.include_default, reporter=self.reporter,
                               budget_stop=lambda: pbt_budget.reason(study, 0), tracker=self._tracker())
            runner.start_population()
            self.reporter.study_started(cfg.study.name, population - len(runner.waiting), population,
                                        plan.max_units)
            return summary, runner
        self.coord.recover(study)
        with self.coord.seeding(study):
            target = self._seed_queue(study, plan)
            if priors:
                enqueue_priors(study, within(plan.space, priors))
        self.reporter.study_started(cfg.study.name, finished(study), target, plan.max_units)
        cap = cfg.budget.max_train_tokens
        self.reporter.study_budget(tokens_per_trial=plan.total_examples * plan.train_tokens / max(plan.train_rows, 1),
                                   tokens_left=None if cap is None else max(0, cap - train_tokens_spent(study)),
                                   seconds_left=cfg.budget.max_wall_time)
        # one evaluation interval's train tokens (mean tokens per train example): the token cap stops a
        # trial, or launches none, when the next interval would cross it
        budget = Budget(cfg.budget, max_failures=cfg.search.max_failures, t0=t0,
                        unit_tokens=plan.examples_per_unit * plan.train_tokens / max(plan.train_rows, 1))
        scheduler = SearchScheduler(plan, study, search=cfg.search, metric=cfg.study.metric,
                                    direction=cfg.study.direction, trial_timeout=cfg.execution.trial_timeout,
                                    coord=self.coord, reporter=self.reporter, budget=budget, target=target,
                                    summary=summary, spec_extra=self.spec_extra, tracker=self._tracker(),
                                    queued_only=self.queued_only)
        if scheduler.pinned:
            pins = ", ".join(f"{k}={v}" for k, v in scheduler.pinned.items())
            study.set_user_attr("lmtune.auto_length", scheduler.pinned)
            log.warning("strategy auto: the searched training length is ASHA's resource, not a choice: every "
                        "configuration it draws trains %s (the longest the space allows) and weaker ones stop "
                        "early; to compare lengths as choices use strategy bayes or hyperband", pins)
        return summary, scheduler

    # -- set-up ---------------------------------------------------------------------------------
    def _prestarted(self) -> LocalExecutor | None:
        """The local backend, made before the study is prepared, with its warm trainer parent started:
        the parent imports torch and reads the weights while this process tokenizes the data and opens
        the study, so trial 0 starts warm instead of waiting for it (None: another backend, no warm
        start, a script trial, or a model that is not a local folder yet: the usual order then)."""
        cfg = self.cfg
        if self.backend is not None or cfg.execution.backend != "local" or not cfg.execution.warm_start \
                or cfg.task.type == "script":
            return None
        paths = StudyPaths(Path(cfg.study.dir))
        try:  # a model that does not resolve is refused by prepare, with its own message
            model = resolve_model(cfg.task.model, fallback_cache=paths.cache)
        except Exception:
            return None
        if not Path(model).is_dir():
            return None
        executor = make_executor(cfg.execution)
        if isinstance(executor, LocalExecutor):
            executor.prestart(model, paths.root)
            return executor
        executor.close()
        return None

    def _tracker(self) -> Tracker:
        """The study's tracking sinks (tracking section), opened once when first needed."""
        if self.tracker is None:
            self.tracker = make_tracker(self.cfg.tracking, self.cfg.study.name)
        return self.tracker

    def _open_study(self, plan: Plan) -> optuna.Study:
        cfg = self.cfg
        pruner = make_pruner(pruner_name(cfg.search.strategy, cfg.search.pruner), max_units=plan.max_units,
                             reduction_factor=cfg.search.reduction_factor, min_units=cfg.search.min_units,
                             length_of=record.planned_examples_of)
        check_not_lost(plan.paths, plan.storage)
        study = optuna.create_study(storage=self.coord.storage(plan.storage), study_name=cfg.study.name,
                                    direction=cfg.study.direction, pruner=pruner, load_if_exists=True)
        study.sampler = make_sampler(strategy=cfg.search.strategy, sampler=cfg.search.sampler,
                                     seed=self._sampler_seed(study),
                                     n_startup_trials=startup_trials(self._expected_trials(plan),
                                                                     cfg.search.n_startup_trials))
        was = (study.user_attrs.get("lmtune.metric"), study.user_attrs.get("lmtune.direction"))
        # workers that open one new study at once: another may have written the metric and not yet the
        # direction (two writes); compare what is written
        if was[0] is not None and (was[0] != cfg.study.metric or was[1] not in (None, cfg.study.direction)):
            raise ConfigError(f"study.metric/direction: study '{cfg.study.name}' in {plan.storage} ranks trials by "
                              f"{was[0]} ({was[1]}), this config by {cfg.study.metric} ({cfg.study.direction}); "
                              "its finished trials would be compared by the wrong measure: use the study's metric "
                              "and direction, or a new study.name / study.dir")
        study.set_user_attr("lmtune.direction", cfg.study.direction)  # first: the check above keys on the metric
        study.set_user_attr("lmtune.metric", cfg.study.metric)
        name_objective(study, cfg.study.metric)
        study.set_user_attr("lmtune.intermediate_values", intermediate_meaning(
            prune_metric(cfg.search.strategy, cfg.search.prune_metric, cfg.study.metric), cfg.study.direction,
            plan.examples_per_unit))
        write_meta(plan.paths, {"study_name": cfg.study.name, "storage": plan.storage,
                                "metric": cfg.study.metric, "direction": cfg.study.direction,
                                "config": cfg.model_dump(mode="json"), "data_cache": str(plan.data_cache),
                                "examples_per_unit": plan.examples_per_unit,
                                "total_examples": plan.total_examples, **self.meta})
        return study

    def _sampler_seed(self, study: optuna.Study) -> int:
        """``study.seed`` for a new study (reproducible); for a resumed one a seed derived from it and the
        trials already there, so a re-run does not draw the configurations it drew before. Workers on a
        shared study add their own entropy: seeded alike, they would all draw one sequence."""
        seed = self.cfg.study.seed
        existing = len(study.get_trials(deepcopy=False))
        if existing:
            seed = (seed * 1_000_003 + existing) % 2**32
        if isinstance(self.coord, SharedCoordination):
            seed = (seed ^ int.from_bytes(os.urandom(4), "little")) % 2**32
        return seed

    def _expected_trials(self, plan: Plan) -> int:
        """Trials this run will reach: n_trials, or fewer where max_trials or a token budget (at the
        train split's tokens per example, full-length trials) ends it sooner."""
        b, n = self.cfg.budget, self.n_trials
        if b.max_trials:
            n = min(n, b.max_trials)
        if b.max_train_tokens:
            per_trial = plan.train_tokens / max(plan.train_rows, 1) * plan.total_examples
            n = min(n, max(1, math.ceil(b.max_train_tokens / max(per_trial, 1.0))))
        return n

    def _seed_queue(self, study: optuna.Study, plan: Plan) -> int:
        """Enqueue the default configuration (once per study) and, for grid, the missing points.
        Returns the number of finished trials to reach."""
        trials = study.get_trials(deepcopy=False)
        default = plan.space.restrict(plan.defaults)
        outside = plan.space.outside(plan.defaults)
        wants_default = self.cfg.search.include_default and not outside
        if self.cfg.search.include_default and outside and not trials:
            log.warning("no default-settings trial (the baseline): training.%s lies outside search.space; "
                        "widen the space or set the default inside it", ", training.".join(outside))
        has_default = any(r.is_default for r in record.records(trials))
        if self.cfg.search.strategy != "grid":
            if wants_default and not has_default:
                study.enqueue_trial(default, user_attrs=record.enqueue_attrs(is_default=True))
            return self.n_trials
        live = [t.system_attrs.get("fixed_params") or t.params for t in trials if t.state != TrialState.FAIL]
        points = plan.space.grid()
        for point in points[: self.n_trials]:
            if point not in live:
                is_default = wants_default and not has_default and point == default
                study.enqueue_trial(point, user_attrs=record.enqueue_attrs(is_default=is_default or None))
        return min(self.n_trials, len(points))


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


class SearchScheduler:
    """The Optuna study as a `lmtune.tuner.drive.Scheduler`: ``suggest`` asks the sampler (the queue first:
    default trial, grid points, priors), each evaluation goes to the pruner and the token cap, each ending
    is told to the study with its record. Keys are trial numbers.

    Built from its own parts of the config: the ``search`` section, the study's ``metric`` and
    ``direction``, and ``trial_timeout`` (execution.trial_timeout, seconds; None: none)."""

    def __init__(self, plan: Plan, study: optuna.Study, *, search: SearchSection, metric: str,
                 direction: Literal["maximize", "minimize"], trial_timeout: float | None, coord: Coordination,
                 reporter: Reporter, budget: Budget, target: int, summary: RunSummary,
                 spec_extra: Mapping[str, Any], tracker: Tracker | None = None, queued_only: bool = False) -> None:
        self.plan, self.study, self.coord, self.reporter = plan, study, coord, reporter
        self.search, self.metric, self.direction, self.trial_timeout = search, metric, direction, trial_timeout
        self.tracker: Tracker = tracker or NoTracking()
        self.budget, self.target, self.summary, self.spec_extra = budget, target, summary, dict(spec_extra)
        self.poll_s = coord.poll_s
        self._lock = threading.Lock()
        self._running: dict[int, _Running] = {}
        self._stop = ""
        self._done = self._others = 0
        # strategy auto: the searched training length is the pruner's resource, not a choice (see
        # ``auto_pins``): every configuration the sampler draws is planned at the longest length
        self.pinned = auto_pins(search.strategy, plan)
        self.queued_only = queued_only  # fixed configurations: the queue, then nothing

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
            if (self.queued_only or self.search.strategy == "grid") and not _waiting(self.study):
                if not self._others:  # else a dead worker's point may come back to the queue
                    self._stop = ("queued configurations done" if self.queued_only else
                                  "grid exhausted (failed points are not retried; see 'lmtune status')")
                return None
            self._stop = self._stop or self.budget.launch_reason(self.study, self._next_examples(),
                                                                 self.plan.examples_per_unit)
            if self._stop:
                return None
            launch = self._ask(device, threads)
            if launch is not None:
                return launch
        return None

    def _next_examples(self) -> int:
        """The fewest train examples the next trial can be planned for: a queued configuration's own length
        (the queue is served first, oldest first), auto's pinned longest length, else the shortest length
        the space allows (the sampler has not drawn it yet)."""
        plan, fixed = self.plan, dict(self.pinned)
        waiting = self.study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
        if waiting:
            fixed = dict(waiting[0].system_attrs.get("fixed_params") or waiting[0].params)
        elif not fixed:
            return shortest_examples(plan.space, plan.defaults, train_rows=plan.train_rows)
        return training_examples({**plan.defaults, **fixed}, train_rows=plan.train_rows,
                                 default_batch_size=int(plan.defaults["batch_size"]))

    def _ask(self, device: str, threads: int) -> Launch | None:
        """One trial from the study, or None when another worker holds it (it is failed unrun)."""
        study, plan = self.study, self.plan
        with self._lock:
            if self.pinned and not _waiting(study):  # the queue (default, priors, grid) keeps its lengths
                study.enqueue_trial(self.pinned)
            trial = study.ask()
            skip = self.coord.claim(study, trial)
            if skip:
                record.write(trial, fail_reason=skip)
                study.tell(trial, state=TrialState.FAIL)
                return None
            params = plan.space.suggest(trial)
            hparams = {**plan.defaults, **params}
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
                          extra=dict(self.spec_extra))
        trial_dir = plan.paths.trial_dir(trial.number)
        with self._lock:
            # planned_examples: the pruner compares a trial only with trials of its length
            record.write(trial, trial_dir=str(trial_dir), planned_examples=spec.total_examples)
        item.started = time.monotonic()  # before launch: a warm start's wait for its parent counts too
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
    def on_eval(self, key: Hashable, ev: dict[str, Any], curve: list[dict[str, Any]]) -> Decision:
        item = self._running[int(key)]  # type: ignore[call-overload]
        metric = self.metric
        prune = self._report(item.trial, ev, metric, curve)
        over = not prune and self.budget.running_at(self.study, item.trial.number, int(ev.get("tokens") or 0),
                                                    int(ev.get("examples") or 0), self.plan.examples_per_unit)
        item.budget_stopped = item.budget_stopped or over
        self.reporter.trial_advanced(item.trial.number, int(ev.get("examples") or 0), int(ev.get("tokens") or 0), 0)
        self.reporter.trial_progress(item.trial.number, ev["units"], self.plan.max_units, ev["metrics"].get(metric))
        return Stop() if prune or over else Continue()

    def on_event(self, key: Hashable, ev: dict[str, Any]) -> None:
        item = self._running[int(key)]  # type: ignore[call-overload]
        kind = ev.get("event")
        if kind == "start":  # startup_s: launch to the first step (process, imports, model, data)
            with self._lock:
                record.write(item.trial, precision=ev.get("precision"), precision_reason=ev.get("precision_reason"),
                             forward=ev.get("forward"), startup_s=time.monotonic() - item.started)
        elif kind == "progress":  # between evaluations, every few seconds from the first step
            self.reporter.trial_advanced(item.trial.number, int(ev.get("examples") or 0), int(ev.get("tokens") or 0),
                                         int(ev.get("total_examples") or 0))
        elif kind == "oom_retry":  # the trainer halved its micro-batch after running out of memory
            with self._lock:
                record.write(item.trial, micro_batch_size=ev.get("micro_batch_size"))

    def on_end(self, key: Hashable, outcome: Outcome) -> None:
        item = self._running[int(key)]  # type: ignore[call-overload]
        item.beat.stop()
        if item.timer is not None:
            item.timer.cancel()
        state, value, reason = self._record(self.study, item, outcome, budget_stopped=item.budget_stopped)
        self.budget.ended(item.trial.number)  # after the record holds its train_tokens
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

    def _report(self, trial: optuna.trial.Trial, ev: dict[str, Any], metric: str,
                curve: list[dict[str, Any]]) -> bool:
        """Report an evaluation; True when the pruner says stop."""
        s = self.search
        value = pruning_value(ev["metrics"], prune_metric(s.strategy, s.prune_metric, metric), self.direction)
        with self._lock:
            record.write(trial, curve=curve)
            if value is None or not math.isfinite(value):
                return False
            trial.report(float(value), step=int(ev["units"]))
            return bool(trial.should_prune())

    def _record(self, study: optuna.Study, item: _Running, outcome: Outcome, *,
                budget_stopped: bool = False) -> tuple[str, float | None, str]:
        trial, metric = item.trial, self.metric
        curve, end = outcome.curve, outcome.end
        wall = time.monotonic() - item.started
        tokens = (end or {}).get("train_tokens") or (curve[-1]["tokens"] if curve else 0)
        attrs: dict[str, Any] = {"curve": curve, "train_tokens": int(tokens), "wall_time_s": wall}
        if end is not None:
            busy = float(end.get("train_time_s", 0)) + float(end.get("eval_time_s", 0))
            attrs["overhead_s"] = max(0.0, wall - busy)
            attrs["stopped_by"] = end.get("stopped_by")
            attrs.update({k: end[k] for k in ("adapter_dir", "micro_batch_size") if end.get(k) is not None})
        state, value, reason = "FAIL", None, failure_reason(outcome)
        if reason or end is None:  # failed: an error event, or the trainer died without an end event
            pass
        elif Ending.of(end) is Ending.PRUNED:
            state, attrs["pruned_at_units"] = "PRUNED", end.get("units")
            if budget_stopped:
                attrs["stopped_by"] = "budget"
                reason = f"budget: max_train_tokens {self.budget.budget.max_train_tokens} reached during this trial"
        else:
            value = end["metrics"].get(metric)
            if value is None or not math.isfinite(value):
                reason = (f"metric '{metric}' was {value!r}; reported metrics: {sorted(end['metrics'])}; "
                          "set study.metric to one of them")
            else:
                state = "COMPLETE"
        if reason and state == "FAIL":
            attrs["fail_reason"] = reason
        elif reason:
            attrs["stop_reason"] = reason
        with self._lock:
            record.write(trial, **attrs)
            study.tell(trial, value if state == "COMPLETE" else None, state=TrialState[state])
        self.tracker.log_run(RunRecord(name=f"trial-{trial.number:04d}", params={**self.plan.defaults, **item.params},
                                       curve=curve, metrics=dict((end or {}).get("metrics") or {}), state=state,
                                       reason=reason, train_tokens=int(tokens), wall_time_s=wall))
        return state, value, reason


def name_objective(study: optuna.Study, metric: str) -> None:
    """Name the objective after the study metric, so optuna-dashboard and ``optuna.load_study`` show
    ``eval_accuracy`` rather than "Objective 0" (Optuna marks the call experimental: its warning is
    silenced)."""
    if study.metric_names != [metric]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names([metric])


def intermediate_meaning(metric: str, direction: str, examples_per_unit: int) -> str:
    """What a trial's intermediate values are, for readers of the study without lmtune (user attr
    ``lmtune.intermediate_values``)."""
    negated = lower_is_better(metric) == (direction == "maximize")
    value = f"-{metric} (negated: the study {direction}s)" if negated else metric
    return (f"{value} at each evaluation; step = units of {examples_per_unit} train examples seen (equal data "
            "across batch sizes)")


def auto_pins(strategy: str, plan: Plan) -> dict[str, Any]:
    """What ``strategy: auto`` (``strategy``: search.strategy) fixes in every configuration its sampler draws:
    the length fields the space searches (``epochs``, ``max_steps``) at the longest value it allows; empty for
    other strategies.

    auto treats the training length as the resource ASHA allocates, not as a choice: every trial is
    planned at the longest length, so trials of one study are compared at equal data *and* at the same
    point of their schedules, and a weak configuration is stopped after a third of it. Searched as a
    choice, most of a small budget went to 1-epoch trials that the rungs could not compare with longer
    ones, and on BBC topics auto tested 2.2 points below the peer (docs/search.md); planned at the
    longest length it tied the peer at a third of its tokens. The default trial and warm-start
    configurations keep their own lengths (they are enqueued whole)."""
    if strategy != "auto":
        return {}
    return longest_length(plan.space, plan.defaults, train_rows=plan.train_rows)


def _waiting(study: optuna.Study) -> bool:
    return bool(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))


def _best_value(study: optuna.Study, lock: threading.Lock) -> float | None:
    with lock:
        try:
            return float(study.best_value)
        except ValueError:
            return None
