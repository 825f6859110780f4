"""The search recipe: `Tuner` reads a study's config, sets the study up and drives its scheduler.

`Tuner` sets a study up (plan, storage, sampler, the default trial and grid points in the queue, warm-start
priors, or PBT's population), picks the scheduler that serves ``search.strategy``
(`lmtune.schedulers.scheduler_for`: `lmtune.schedulers.search.SearchScheduler` for every strategy but PBT,
`lmtune.schedulers.pbt.PBTRunner` for PBT) and hands it to `lmtune.tuner.drive.drive`, which runs it on the
study's backend. The budget and the failure policy are the tuner's (`lmtune.tuner.budget`).
"""

from __future__ import annotations

import logging
import math
import os
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from lmtune.config import StudyConfig, lower_is_better
from lmtune.errors import ConfigError, LmtuneError, StudyError, StudyFault
from lmtune.execution import Executor, LocalExecutor, make_executor
from lmtune.schedulers import HALVING_STATE, HalvingScheduler, PBTRunner, Scheduler, SearchScheduler, scheduler_for
from lmtune.strategies import (
    HalvingPlan,
    asha_rungs,
    default_first_rung,
    earliest_choice,
    make_pruner,
    make_sampler,
    plan_halving,
    prune_metric,
    pruner_name,
    startup_trials,
    traits,
)
from lmtune.study import (
    StudyPaths,
    check_not_lost,
    fault_message,
    finished,
    read_meta,
    record,
    storage_fault,
    train_tokens_spent,
    write_meta,
)
from lmtune.training import resolve_model
from lmtune.tuner.budget import PLANNED_SLACK, Budget, RunSummary, StopKind
from lmtune.tuner.coordination import Coordination, LocalCoordination, SharedCoordination
from lmtune.tuner.drive import drive
from lmtune.tuner.plan import (
    Plan,
    halves,
    longest_length,
    make_plan,
)
from lmtune.tuner.priors import Prior, enqueue_priors, prior_configs, within
from lmtune.tuner.progress import PlainReporter, Reporter
from lmtune.tuner.tracking import Tracker, make_tracker

optuna.logging.set_verbosity(optuna.logging.WARNING)
log = logging.getLogger("lmtune")
# halving: the token budget is planned this much short (a trial's examples differ from the mean in length), and
# at most this many configurations are drawn (each is one trial, paused with a checkpoint on disk)
HALVING_MARGIN = 0.005
MAX_HALVING_CONFIGS = 256


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
        self._budget: Budget | None = None  # the run's budget, once prepared (its stop kind goes in the summary)
        self.backend = backend  # None: the one execution.backend names
        ex = cfg.execution
        if shared and traits(cfg.search.strategy).changes_settings:
            raise ConfigError("search.strategy: pbt runs from one driver (its population state is in the study "
                              "directory); spread a population over machines with 'lmtune tune' and "
                              "execution.backend: ray instead of 'lmtune worker'")
        self.coord: Coordination = (SharedCoordination(heartbeat_interval=ex.heartbeat_interval,
                                                       grace_period=ex.grace_period,
                                                       grid=traits(cfg.search.strategy).points)
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
                    summary.stop_reason = reason or scheduler.finished_reason
                    summary.stop_kind = (self._budget.stopped if reason and self._budget else None) or StopKind.FINISHED
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

    def prepare(self, t0: float) -> tuple[RunSummary, Scheduler]:
        """Everything before the first trial: refuse bad input, tokenize, open (or resume) the study, fill
        its queue (default trial, grid points, priors) or its PBT population; returns the scheduler that
        serves the strategy (`lmtune.schedulers.scheduler_for`)."""
        cfg = self.cfg
        kind = scheduler_for(cfg.search.strategy)
        # refused before any training (before tokenizing); restricted to the plan's space when enqueued
        priors = prior_configs(cfg.search, metric=cfg.study.metric, direction=cfg.study.direction,
                               study_dir=cfg.study.dir)
        plan = make_plan(cfg)  # the space is built once, in the plan: components get plan.space
        study = self._open_study(plan)
        summary = RunSummary(plan=plan, study=study, stop_reason="")
        if kind is HalvingScheduler:
            return summary, self._halving(plan, study, priors, t0, self._halving_plan(plan, study))
        if traits(cfg.search.strategy).halves_under_token_budget:
            halving = self._auto_halves(plan, study, priors)
            if halving is not None:
                return summary, self._halving(plan, study, priors, t0, halving)
        build = {PBTRunner: self._population, SearchScheduler: self._search}[kind]
        return summary, build(plan, study, summary, priors, t0)

    def _auto_halves(self, plan: Plan, study: optuna.Study, priors: list[Prior]) -> HalvingPlan | None:
        """The successive halving ``strategy: auto`` runs here (`_halving`), or None where it runs TPE + ASHA
        (`_search`): it halves under a token budget that trains two or more configurations to their end through
        the halving, for one objective, from one driver, with no queued configurations (priors, transfers) to
        serve; a study that halved before goes on halving, one that ran auto's ASHA before goes on with it."""
        cfg = self.cfg
        if (plan.paths.root / HALVING_STATE).is_file():
            return self._halving_plan(plan, study)
        if (cfg.budget.max_train_tokens is None or len(cfg.study.objective_list()) > 1 or priors
                or self.queued_only or isinstance(self.coord, SharedCoordination) or cfg.search.pruner is not None
                or study.get_trials(deepcopy=False)):
            return None
        halving = self._halving_plan(plan, study)
        return halving if halving is not None and halving.configurations >= 2 else None

    def _halving_plan(self, plan: Plan, study: optuna.Study) -> HalvingPlan | None:
        """The halving for the budget left: rungs from search.min_units (else a quarter epoch, moved later where
        the finalist would be chosen within three quarters of an epoch: `plan_halving`'s ``decide_by``) by the reduction
        factor (search.reduction_factor, else 2) to the longest length; as many configurations as the token budget
        (less a 0.5 % margin: examples differ in length) pays for, at most search.n_trials when no token budget
        is set."""
        cfg = self.cfg
        saved = HalvingScheduler.saved_plan(plan.paths.root)
        if saved is not None:
            return saved
        room = None
        if cfg.budget.max_train_tokens is not None:
            spent = train_tokens_spent(study)
            room = max(0.0, cfg.budget.max_train_tokens - spent) / (plan.examples_per_unit * plan.tokens_per_example)
            room *= 1 - HALVING_MARGIN
        per_epoch = plan.train_rows / plan.examples_per_unit
        first = cfg.search.min_units or default_first_rung(per_epoch)
        return plan_halving(plan.max_units, room, first=first, factor=cfg.search.reduction_factor or 2,
                            most=self.n_trials if room is None else MAX_HALVING_CONFIGS,
                            decide_by=None if cfg.search.min_units else earliest_choice(per_epoch))

    def _halving(self, plan: Plan, study: optuna.Study, priors: list[Prior], t0: float,
                 halving: HalvingPlan | None) -> HalvingScheduler:
        """Synchronous successive halving (`lmtune.schedulers.halving`) by ``halving``, the plan sized to the
        budget (`_halving_plan`); refused before any training when the budget cannot train one configuration to
        its end (``halving`` None), and where it would leave out configurations it was given (warm-start priors,
        a proxy's transfers)."""
        cfg = self.cfg
        if priors or self.queued_only:
            raise ConfigError("search.strategy halving: draws its own configurations at the start and runs no "
                              "queued ones; for warm-start priors (search.prior_studies) or a proxy stage's "
                              "transfers use strategy auto, bayes or asha")
        if len(cfg.study.objective_list()) > 1:
            raise ConfigError("search.strategy halving: ranks configurations by one metric at each rung; with "
                              "study.objectives use strategy auto, asha or hyperband (multi-objective halving)")
        if isinstance(self.coord, SharedCoordination):
            raise ConfigError("search.strategy halving: runs from one driver (its rungs' state is in the study "
                              "directory); run 'lmtune tune' with execution.workers or execution.backend: ray "
                              "instead of 'lmtune worker'")
        if halving is None:
            per_run = plan.total_examples * plan.tokens_per_example
            raise ConfigError(
                f"search.strategy {cfg.search.strategy}: budget.max_train_tokens {cfg.budget.max_train_tokens:,} "
                f"(less what the study spent) cannot train one configuration to its end (~{per_run:,.0f} train "
                "tokens at the longest length the space allows); raise budget.max_train_tokens, shorten training "
                "(training.epochs or max_steps), or use strategy random or bayes")
        budget = self._budget = Budget(cfg.budget, max_failures=cfg.search.max_failures, t0=t0,
                                       unit_tokens=plan.examples_per_unit * plan.tokens_per_example)
        pinned = longest_length(plan.space, plan.defaults, train_rows=plan.train_rows)
        scheduler = HalvingScheduler(
            plan, study, halving=halving, pinned=pinned, metric=cfg.study.metric,
            prune_metric=prune_metric("halving", cfg.search.prune_metric, cfg.study.metric),
            direction=cfg.study.direction, include_default=cfg.search.include_default, reporter=self.reporter,
            budget_stop=lambda: budget.reason(study, 0, planned=True),
            tokens_left=lambda: (None if cfg.budget.max_train_tokens is None else
                                 cfg.budget.max_train_tokens - train_tokens_spent(study)),
            slack=(cfg.budget.max_train_tokens or 0) * PLANNED_SLACK,
            tracker=self._tracker(), rungs_only=self._rungs_only())
        scheduler.start()
        self.reporter.study_started(cfg.study.name, finished(study), halving.configurations, plan.max_units)
        log.warning("strategy %s: successive halving of %d configurations at the longest length (%s), rungs at %s "
                    "of %d evaluation units, %s per rung, paused configurations continued from their checkpoints",
                    cfg.search.strategy, halving.configurations,
                    ", ".join(f"{k}={v}" for k, v in pinned.items()) or "as set",
                    "/".join(map(str, halving.rungs[:-1])) or "none", plan.max_units,
                    "/".join(map(str, halving.sizes)))
        return scheduler

    def _population(self, plan: Plan, study: optuna.Study, summary: RunSummary, priors: list[Prior],
                    t0: float) -> PBTRunner:
        """PBT's scheduler, its population started (or resumed from the study's PBT state)."""
        cfg = self.cfg
        population = cfg.search.pbt.population_size or self.n_trials
        if population < 2:
            raise ConfigError(f"search.pbt.population_size: PBT needs at least 2 members, got {population}; "
                              "set search.pbt.population_size or --n-trials to 2 or more")
        cap = cfg.budget.max_train_tokens
        if cap and not study.get_trials(deepcopy=False):  # a fresh population (a resumed one has spent some)
            per_member = plan.total_examples * plan.tokens_per_example
            if population * per_member > cap:
                fits = int(cap // per_member)
                fix = (f"Set search.pbt.population_size to {fits} or fewer, shorten training (training.epochs or "
                       f"max_steps), or raise budget.max_train_tokens to {math.ceil(population * per_member)}"
                       if fits >= 2 else
                       "Shorten training (training.epochs or max_steps) or raise budget.max_train_tokens to at "
                       f"least {math.ceil(2 * per_member)} (two members)")
                raise ConfigError(
                    f"search.strategy pbt: {population} members trained to their end need about "
                    f"{population * per_member:,.0f} train tokens (~{per_member:,.0f} each), more than "
                    f"budget.max_train_tokens {cap:,}; PBT does not plan its members from the budget, so none "
                    f"would reach its end. {fix}.")
        pbt_budget = self._budget = Budget(cfg.budget, max_failures=cfg.search.max_failures, t0=t0)
        runner = PBTRunner(plan, study, pbt=cfg.search.pbt, population=population, metric=cfg.study.metric,
                           seed=cfg.study.seed, eval_every=cfg.training.eval_every,
                           include_default=cfg.search.include_default, reporter=self.reporter,
                           budget_stop=lambda: pbt_budget.reason(study, 0), tracker=self._tracker())
        runner.start_population()
        self.reporter.study_started(cfg.study.name, population - len(runner.waiting), population, plan.max_units)
        return runner

    def _rungs_only(self) -> bool:
        """Whether trials need evaluating only where the study decides (its rungs, `TrialSpec.eval_units`): where
        the study halves on the grid it chose itself (`lmtune.tuner.plan.halves`, eval_every unset). A grid the
        user set is kept; a deadline or cost cap stops trials at evaluations, so there every unit is evaluated."""
        cfg = self.cfg
        b = cfg.budget
        return (cfg.training.eval_every is None and not (b.max_wall_time or b.max_gpu_hours or b.max_cost)
                and halves(cfg.search, token_budget=b.max_train_tokens is not None,
                           objectives=len(cfg.study.objective_list())))

    def _search(self, plan: Plan, study: optuna.Study, summary: RunSummary, priors: list[Prior],
                t0: float) -> SearchScheduler:
        """The search scheduler, the study's queue filled first (default trial, grid points, priors)."""
        cfg = self.cfg
        self.coord.recover(study)
        with self.coord.seeding(study):
            target = self._seed_queue(study, plan)
            if priors:
                enqueue_priors(study, within(plan.space, priors))
        self.reporter.study_started(cfg.study.name, finished(study), target, plan.max_units)
        cap = cfg.budget.max_train_tokens
        self.reporter.study_budget(tokens_per_trial=plan.total_examples * plan.tokens_per_example,
                                   tokens_left=None if cap is None else max(0, cap - train_tokens_spent(study)),
                                   seconds_left=cfg.budget.max_wall_time)
        # one evaluation interval's train tokens (mean tokens per train example): the token cap stops a
        # trial, or launches none, when the next interval would cross it
        budget = self._budget = Budget(cfg.budget, max_failures=cfg.search.max_failures, t0=t0,
                                       unit_tokens=plan.examples_per_unit * plan.tokens_per_example)
        # auto's ASHA (where it does not halve: priors, shared workers, a budget for fewer than two configurations)
        # on the halving's fine grid: ASHA decides only at its rungs; evaluating every eighth of an epoch costs
        # time and decides nothing
        rungs = asha_rungs(pruner_name(cfg.search.strategy, cfg.search.pruner), max_units=plan.max_units,
                           reduction_factor=cfg.search.factor, min_units=cfg.search.min_units) \
            if self._rungs_only() else None
        scheduler = SearchScheduler(plan, study, search=cfg.search, metric=cfg.study.metric,
                                    direction=cfg.study.direction, trial_timeout=cfg.execution.trial_timeout,
                                    coord=self.coord, reporter=self.reporter, budget=budget, target=target,
                                    summary=summary, spec_extra=self.spec_extra, tracker=self._tracker(),
                                    queued_only=self.queued_only, objectives=cfg.study.objective_list(),
                                    eval_units=rungs or ())
        if plan.narrowed is not None:
            n = plan.narrowed
            study.set_user_attr("lmtune.practice_prior", {"name": n.name, "written": list(n.written),
                                                          "searched": list(n.searched)})
            log.warning("search.practice_prior: %s; set search.practice_prior: false to search the range as "
                        "written", n.describe())
        if scheduler.pinned:
            pins = ", ".join(f"{k}={v}" for k, v in scheduler.pinned.items())
            study.set_user_attr("lmtune.auto_length", scheduler.pinned)
            log.warning("strategy auto: the searched training length is ASHA's resource, not a choice: every "
                        "configuration it draws trains %s (the longest the space allows) and weaker ones stop "
                        "early (under a token budget, the last ones at the length the tokens left can train); "
                        "to compare lengths as choices use strategy bayes or hyperband", pins)
        return scheduler

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
        objectives = cfg.study.objective_list()
        several = len(objectives) > 1  # pruned by the scheduler's multi-objective halving, not Optuna's pruners
        pruner = make_pruner("none" if several else pruner_name(cfg.search.strategy, cfg.search.pruner),
                             max_units=plan.max_units, reduction_factor=cfg.search.factor,
                             min_units=cfg.search.min_units, length_of=record.planned_examples_of)
        check_not_lost(plan.paths, plan.storage)
        study = optuna.create_study(storage=self.coord.storage(plan.storage), study_name=cfg.study.name,
                                    directions=[d for _, d in objectives], pruner=pruner, load_if_exists=True)
        names = [m for m, _ in objectives]
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
        if study.metric_names is not None and study.metric_names != names:  # the same score, other objectives
            raise ConfigError(f"study.objectives: study '{cfg.study.name}' in {plan.storage} has the objectives "
                              f"{study.metric_names}, this config {names}; its trials were told other values: use "
                              "the study's objectives, or a new study.name / study.dir")
        self._check_grid(study, plan)
        study.set_user_attr("lmtune.direction", cfg.study.direction)  # first: the check above keys on the metric
        study.set_user_attr("lmtune.metric", cfg.study.metric)
        name_objective(study, names)
        study.set_user_attr("lmtune.intermediate_values", intermediate_meaning(
            prune_metric(cfg.search.strategy, cfg.search.prune_metric, cfg.study.metric), cfg.study.direction,
            plan.examples_per_unit))
        write_meta(plan.paths, {"study_name": cfg.study.name, "storage": plan.storage,
                                "metric": cfg.study.metric, "direction": cfg.study.direction,
                                **({"objectives": [{"metric": m, "direction": d} for m, d in objectives]}
                                   if several else {}),
                                "config": cfg.model_dump(mode="json"), "data_cache": str(plan.data_cache),
                                "examples_per_unit": plan.examples_per_unit,
                                "total_examples": plan.total_examples, **self.meta})
        return study

    def _check_grid(self, study: optuna.Study, plan: Plan) -> None:
        """Refuse to go on with a study whose trials were evaluated on another grid (training.eval_every, or its
        default, which depends on the strategy and the budget: `lmtune.tuner.plan.unit_examples`): curves, rungs and
        pruning would mix two units. Studies recorded before the unit was kept in the study read it from
        study.json."""
        was = study.user_attrs.get("lmtune.examples_per_unit")
        if was is None:
            try:  # a missing or damaged study.json is rewritten further on; it names no grid then
                was = read_meta(plan.paths.root).get("examples_per_unit")
            except StudyError:
                was = None
        if isinstance(was, int) and was != plan.examples_per_unit and study.get_trials(deepcopy=False):
            batch = int(self.cfg.training.batch_size)
            steps = f"training.eval_every={was // batch}" if was % batch == 0 else \
                f"training.eval_every so that it evaluates every {was} examples"
            raise ConfigError(f"training.eval_every: study '{self.cfg.study.name}' in {plan.storage} evaluated its "
                              f"trials every {was} training examples, this config every {plan.examples_per_unit} "
                              "(eval_every unset is 50 steps, or about 8 evaluations an epoch where the study "
                              f"halves); its rungs and curves would mix the two: set {steps} to go on with it, "
                              "or a new study.name / study.dir")
        study.set_user_attr("lmtune.examples_per_unit", plan.examples_per_unit)

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
            per_trial = plan.tokens_per_example * plan.total_examples
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
        if not traits(self.cfg.search.strategy).points:
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


def name_objective(study: optuna.Study, names: list[str]) -> None:
    """Name the objectives after their metrics, so optuna-dashboard and ``optuna.load_study`` show
    ``eval_accuracy`` and ``serve_params`` rather than "Objective 0" and "Objective 1" (Optuna marks the call
    experimental: its warning is silenced)."""
    if study.metric_names != names:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(names)


def intermediate_meaning(metric: str, direction: str, examples_per_unit: int) -> str:
    """What a trial's intermediate values are, for readers of the study without lmtune (user attr
    ``lmtune.intermediate_values``)."""
    negated = lower_is_better(metric) == (direction == "maximize")
    value = f"-{metric} (negated: the study {direction}s)" if negated else metric
    return (f"{value} at each evaluation; step = units of {examples_per_unit} train examples seen (equal data "
            "across batch sizes)")
