"""The one loop that connects strategy, executor and study.

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
import queue
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import TrialState

from lmtune.config import StudyConfig, resolved_space
from lmtune.errors import ConfigError
from lmtune.execution import Executor, TrialHandle, make_executor
from lmtune.protocol import Continue, Decision, Outcome, Stop, failure_reason
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
    carried_attrs,
    finished,
    train_tokens_spent,
    write_meta,
)
from lmtune.tuner.coordination import Beat, Coordination, LocalCoordination, SharedCoordination
from lmtune.tuner.pbt_run import PBTRunner
from lmtune.tuner.plan import Plan, make_plan, trial_spec
from lmtune.tuner.priors import enqueue_priors, prior_configs
from lmtune.tuner.progress import PlainReporter, Reporter
from lmtune.tuner.relay import relay

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


@dataclass
class _Running:
    trial: optuna.trial.Trial
    proc: TrialHandle
    slot: int
    started: float
    is_default: bool
    beat: Beat


class Tuner:
    """Runs (or resumes) the study a config describes. Keyword-only; one ``run()`` per instance.

    ``spec_extra`` goes into every trial's ``TrialSpec.extra`` (e.g. ``truncate_layers`` for a proxy
    stage); ``meta`` holds extra keys for ``lmtune.json`` (a two-stage study's ``stages``).
    ``shared``: one of several workers on a server-backed study (`lmtune worker`); see
    `lmtune.tuner.coordination`. Otherwise this process is the study's only writer.
    """

    def __init__(self, cfg: StudyConfig, *, n_trials: int | None = None, reporter: Reporter | None = None,
                 spec_extra: Mapping[str, Any] | None = None, meta: Mapping[str, Any] | None = None,
                 shared: bool = False) -> None:
        self.cfg = cfg
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
        self._lock = threading.Lock()
        self._live_tokens: dict[int, int] = {}  # running trials' train tokens so far (budget is a cap)
        self._unit_tokens = 0.0  # one evaluation interval's train tokens (set per run)
        self._done: queue.Queue[tuple[int, str]] = queue.Queue()

    def run(self) -> RunSummary:
        t0 = time.monotonic()
        priors = prior_configs(self.cfg, resolved_space(self.cfg))  # refused before any training
        plan = make_plan(self.cfg)
        study = self._open_study(plan)
        executor = make_executor(self.cfg.execution)
        summary = RunSummary(plan=plan, study=study, stop_reason="")
        if self.cfg.search.strategy == "pbt":
            return self._run_pbt(plan, study, executor, summary, t0)
        self.coord.recover(study)
        with self.coord.seeding(study):
            target = self._seed_queue(study, plan)
            if priors:
                enqueue_priors(study, priors)
        self.reporter.study_started(self.cfg.study.name, finished(study), target, plan.max_units)
        # one evaluation interval's train tokens (mean tokens per train example): the token cap stops a
        # trial, or launches none, when the next interval would cross it
        self._unit_tokens = plan.examples_per_unit * plan.train_tokens / max(plan.train_rows, 1)
        running: dict[int, _Running] = {}
        try:
            summary.stop_reason = self._loop(study, plan, executor, running, target, summary, t0)
        except BaseException:
            self._abandon(study, running)
            raise
        finally:
            executor.close()
            summary.wall_time_s = time.monotonic() - t0
            self.reporter.close()
        return summary

    def _run_pbt(self, plan: Plan, study: optuna.Study, executor: Executor, summary: RunSummary,
                 t0: float) -> RunSummary:
        population = self.cfg.search.pbt.population_size or self.n_trials
        if population < 2:
            raise ConfigError(f"search.pbt.population_size: PBT needs at least 2 members, got {population}; "
                              "set search.pbt.population_size or --n-trials to 2 or more")
        runner = PBTRunner(self.cfg, plan, study, executor, self.reporter, population)
        runner.start_population()
        self.reporter.study_started(self.cfg.study.name, population - len(runner.waiting), population,
                                    plan.max_units)
        try:
            summary.stop_reason = runner.run(lambda: self._budget_stop(study, 0, population, summary, t0))
        finally:
            for member in runner.members.values():
                if member.proc is not None:
                    member.proc.kill()
            executor.close()
            summary.wall_time_s = time.monotonic() - t0
            self.reporter.close()
        return summary

    # -- set-up ---------------------------------------------------------------------------------
    def _open_study(self, plan: Plan) -> optuna.Study:
        cfg = self.cfg
        pruner = make_pruner(pruner_name(cfg.search.strategy, cfg.search.pruner), max_units=plan.max_units,
                             reduction_factor=cfg.search.reduction_factor, min_units=cfg.search.min_units,
                             length_of=record.planned_examples_of)
        study = optuna.create_study(storage=self.coord.storage(plan.storage), study_name=cfg.study.name,
                                    direction=cfg.study.direction, pruner=pruner, load_if_exists=True)
        study.sampler = make_sampler(strategy=cfg.search.strategy, sampler=cfg.search.sampler,
                                     seed=self._sampler_seed(study),
                                     n_startup_trials=startup_trials(self._expected_trials(plan),
                                                                     cfg.search.n_startup_trials))
        was = (study.user_attrs.get("lmtune.metric"), study.user_attrs.get("lmtune.direction"))
        if was[0] is not None and was != (cfg.study.metric, cfg.study.direction):
            raise ConfigError(f"study.metric/direction: study '{cfg.study.name}' in {plan.storage} ranks trials by "
                              f"{was[0]} ({was[1]}), this config by {cfg.study.metric} ({cfg.study.direction}); "
                              "its finished trials would be compared by the wrong measure: use the study's metric "
                              "and direction, or a new study.name / study.dir")
        study.set_user_attr("lmtune.metric", cfg.study.metric)
        study.set_user_attr("lmtune.direction", cfg.study.direction)
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

    # -- the loop -------------------------------------------------------------------------------
    def _loop(self, study: optuna.Study, plan: Plan, executor: Executor, running: dict[int, _Running],
              target: int, summary: RunSummary, t0: float) -> str:
        stop = ""
        while True:
            with self._lock:
                self.coord.recover(study)
                done = finished(study)
                others = self.coord.others_running(study, running)  # other workers' trials (shared study)
            stop = stop or self._budget_stop(study, done, target, summary, t0)
            while not stop and len(running) < executor.workers and done + len(running) + others < target:
                if self.cfg.search.strategy == "grid" and not _waiting(study):
                    if not others:  # else a dead worker's point may come back to the queue
                        stop = "grid exhausted (failed points are not retried; see 'lmtune status')"
                    break
                self._launch(study, plan, executor, running)
            if not running:
                if stop or not others:
                    return stop or "n_trials reached"
                time.sleep(self.coord.poll_s or 1.0)
                continue
            try:
                number, state = self._done.get(timeout=self.coord.poll_s)
            except queue.Empty:
                continue
            item = running.pop(number)
            executor.release(item.slot)
            summary.ran.append(number)
            if state == "FAIL":
                summary.failures += 1

    def _budget_stop(self, study: optuna.Study, done: int, target: int, summary: RunSummary, t0: float) -> str:
        b = self.cfg.budget
        if summary.failures >= self.cfg.search.max_failures:
            return (f"stopped: {summary.failures} trials failed in this run (search.max_failures="
                    f"{self.cfg.search.max_failures}); see the reasons with 'lmtune status'")
        if b.max_wall_time and time.monotonic() - t0 >= b.max_wall_time:
            return f"budget: max_wall_time {b.max_wall_time:.0f}s reached"
        if b.max_trials and len(study.get_trials(deepcopy=False)) >= b.max_trials:
            return f"budget: max_trials {b.max_trials} reached"
        if b.max_train_tokens and self._next_interval_crosses_cap(study):
            return f"budget: max_train_tokens {b.max_train_tokens} reached"
        return ""

    def _launch(self, study: optuna.Study, plan: Plan, executor: Executor,
                running: dict[int, _Running]) -> None:
        with self._lock:
            trial = study.ask()
            skip = self.coord.claim(study, trial)
            if skip:
                record.write(trial, fail_reason=skip)
                study.tell(trial, state=TrialState.FAIL)
                return
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
        try:
            slot = executor.acquire()
            spec = trial_spec(self.cfg, plan, number=trial.number, hparams=hparams, device=executor.device_for(slot),
                              threads=executor.threads, extra=dict(self.spec_extra))
            trial_dir = plan.paths.trial_dir(trial.number)
            with self._lock:
                # planned_examples: the pruner compares a trial only with trials of its length
                record.write(trial, trial_dir=str(trial_dir), planned_examples=spec.total_examples)
            launched = time.monotonic()  # before launch: a warm start's wait for its parent counts too
            proc = executor.launch(spec, trial_dir, slot)
        except BaseException:
            beat.stop()
            raise
        handles.append(proc)
        if lost.is_set():  # failed elsewhere while it launched
            proc.kill()
        running[trial.number] = _Running(trial, proc, slot, launched, is_default, beat)
        self.reporter.trial_started(trial.number, params, is_default)
        threading.Thread(target=self._watch_safely, args=(study, running[trial.number], plan), daemon=True).start()

    def _watch_safely(self, study: optuna.Study, item: _Running, plan: Plan) -> None:
        """`_watch`, but the loop always hears that the trial ended (e.g. when another worker failed it
        as dead meanwhile and the study refuses the result)."""
        try:
            self._watch(study, item, plan)
        except Exception as exc:
            item.proc.kill()
            item.beat.stop()
            reason = f"not recorded: {type(exc).__name__}: {exc}"
            with self._lock, contextlib.suppress(Exception):
                record.write(item.trial, fail_reason=reason)
                study.tell(item.trial, state=TrialState.FAIL)
            self.reporter.trial_finished(item.trial.number, "FAIL", None, reason, None)
            self._done.put((item.trial.number, "FAIL"))

    def _watch(self, study: optuna.Study, item: _Running, plan: Plan) -> None:
        """Relay one trainer's events into the study; runs in its own thread."""
        trial, metric = item.trial, self.cfg.study.metric
        budget_stopped = False
        timer = self._watchdog(item)

        def on_eval(ev: dict[str, Any], curve: list[dict[str, Any]]) -> Decision:
            nonlocal budget_stopped
            prune = self._report(trial, ev, metric, curve)
            over = not prune and self._over_budget(study, trial.number, int(ev.get("tokens") or 0))
            budget_stopped = budget_stopped or over
            self.reporter.trial_progress(trial.number, ev["units"], plan.max_units, ev["metrics"].get(metric))
            return Stop() if prune or over else Continue()

        def on_event(ev: dict[str, Any]) -> None:
            kind = ev.get("event")
            if kind == "start":  # startup_s: launch to the first step (process, imports, model, data)
                with self._lock:
                    record.write(trial, precision=ev.get("precision"), startup_s=time.monotonic() - item.started)
            elif kind == "oom_retry":  # the trainer halved its micro-batch after running out of memory
                with self._lock:
                    record.write(trial, micro_batch_size=ev.get("micro_batch_size"))

        outcome = relay(item.proc, on_eval=on_eval, on_event=on_event)
        item.beat.stop()
        if timer is not None:
            timer.cancel()
        state, value, reason = self._record(study, item, outcome, budget_stopped=budget_stopped)
        with self._lock:  # after the record holds its train_tokens, so the budget never misses them
            self._live_tokens.pop(trial.number, None)
        self.reporter.trial_finished(trial.number, state, value, reason, _best_value(study, self._lock))
        self._done.put((trial.number, state))

    def _report(self, trial: optuna.trial.Trial, ev: dict[str, Any], metric: str,
                curve: list[dict[str, Any]]) -> bool:
        """Report an evaluation; True when the pruner says stop."""
        s = self.cfg.search
        value = pruning_value(ev["metrics"], prune_metric(s.strategy, s.prune_metric, metric), self.cfg.study.direction)
        with self._lock:
            record.write(trial, curve=curve)
            if value is None or not math.isfinite(value):
                return False
            trial.report(float(value), step=int(ev["units"]))
            return bool(trial.should_prune())

    def _over_budget(self, study: optuna.Study, number: int, tokens: int) -> bool:
        """``budget.max_train_tokens`` is a cap, not a launch rule: True when the trials would cross it
        during the next evaluation interval (this one at ``tokens``), so this trial stops now (recorded as
        pruned by the budget) instead of overshooting by up to one whole trial."""
        with self._lock:
            self._live_tokens[number] = tokens
        return bool(self.cfg.budget.max_train_tokens) and self._next_interval_crosses_cap(study)

    def _next_interval_crosses_cap(self, study: optuna.Study) -> bool:
        """Finished trials' tokens (the study's record) + running trials' so far + one evaluation interval
        > the cap. The interval is estimated from the mean tokens per train example, so a study can still
        end a little above the cap when the next batches are longer than the mean."""
        cap = self.cfg.budget.max_train_tokens or 0
        with self._lock:
            live = sum(self._live_tokens.values())
        return train_tokens_spent(study) + live + self._unit_tokens > cap

    def _record(self, study: optuna.Study, item: _Running, outcome: Outcome, *,
                budget_stopped: bool = False) -> tuple[str, float | None, str]:
        trial, metric = item.trial, self.cfg.study.metric
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
        elif end.get("stopped_by") == "pruned":
            state, attrs["pruned_at_units"] = "PRUNED", end.get("units")
            if budget_stopped:
                attrs["stopped_by"] = "budget"
                reason = f"budget: max_train_tokens {self.cfg.budget.max_train_tokens} reached during this trial"
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
        return state, value, reason

    def _watchdog(self, item: _Running) -> threading.Timer | None:
        limit = self.cfg.execution.trial_timeout
        if not limit:
            return None
        timer = threading.Timer(limit, item.proc.kill)
        timer.daemon = True
        timer.start()
        return timer

    def _abandon(self, study: optuna.Study, running: dict[int, _Running]) -> None:
        """On Ctrl-C or a crash of the driver: stop trainers, mark their trials failed with the reason
        and enqueue their configurations again, so the next run redoes exactly that work."""
        for item in running.values():
            item.proc.kill()
        with self._lock:
            for item in running.values():
                t = item.trial
                frozen = study._storage.get_trial(t._trial_id)
                if frozen.state != TrialState.RUNNING:
                    continue
                record.write(t, fail_reason=INTERRUPTED)
                study.tell(t, state=TrialState.FAIL)
                study.enqueue_trial(t.params, user_attrs=carried_attrs(frozen))


def _waiting(study: optuna.Study) -> bool:
    return bool(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))


def _best_value(study: optuna.Study, lock: threading.Lock) -> float | None:
    with lock:
        try:
            return float(study.best_value)
        except ValueError:
            return None
