"""``lmtune final``: retrain the default and the best configuration with several seeds, score on test.

The search chose its best trial on the validation split, so that trial's validation score is biased
upwards (it won a selection). The honest comparison retrains both configurations from scratch with
seeds 0..K-1 (the seed sets the new head's initialisation, dropout and data order) and scores them on
the test split, which no trial ever touched. Every run is a trainer process on the study's own
backend (``execution.backend``: local or ray; memory goes back to the system after each run) and is
not interactive: nothing prunes it.

Writes ``<study_dir>/final/results.json`` (the format ``lmtune.report`` reads) after every finished
run, so an interrupted ``final`` resumes where it stopped; see ``final_plan`` for what is reused. The
best configuration's seed-0 run saves its model, exported to ``<study_dir>/final/model/``.
"""

from __future__ import annotations

import itertools
import json
import math
import shutil
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from lmtune.config import StudyConfig, StudySection, TaskSection, validate
from lmtune.errors import StudyError
from lmtune.execution import Executor, TrialHandle, make_executor
from lmtune.protocol import (
    CHANGED_IN_PLACE,
    Continue,
    Decision,
    Ending,
    Outcome,
    Pause,
    TrialSpec,
    checkpoint_folder,
    failure_reason,
)
from lmtune.study.store import load_study
from lmtune.training.export import base_model_name
from lmtune.tuner.drive import Launch, drive
from lmtune.tuner.final_export import CONFIG_FILE, config_yaml, describe_machine, export_model
from lmtune.tuner.final_plan import WHICH, Choice, FinalJob, best_choice, default_choice, kept_runs, plan_jobs, todo
from lmtune.tuner.plan import Plan, make_plan, trial_spec
from lmtune.tuner.tracking import NoTracking, RunRecord, Tracker, make_tracker

__all__ = ["FINAL_DIR", "FinalRunError", "FinalRunner", "FinalSummary", "job_spec", "study_config"]

FINAL_DIR = "final"
Log = Callable[[str], None]


class FinalRunError(RuntimeError):
    """A final run ended without test metrics (its reason and log are in the message)."""


@dataclass
class FinalSummary:
    results: dict[str, Any]
    results_path: Path
    model_dir: Path | None  # None until the best configuration's seed-0 run has finished
    default: Choice
    best: Choice
    ran: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    wall_time_s: float = 0.0


def study_config(meta: dict[str, Any], study_dir: Path) -> StudyConfig:
    """The study's config from ``lmtune.json``, pointed at ``study_dir`` wherever it was run from.

    The search section is dropped: final runs search nothing, and lmtune.json stores keys sorted, which
    loses the order conditional parameters of ``search.space`` depend on."""
    raw = meta.get("config")
    if not isinstance(raw, dict):
        raise StudyError(f"{study_dir}: lmtune.json has no config; rerun 'lmtune tune' to rewrite it")
    raw = {**raw, "study": {**raw.get("study", {}), "dir": str(study_dir)}, "search": {}}
    return validate(raw, source=f"{study_dir / 'lmtune.json'}")


def job_spec(plan: Plan, job: FinalJob, *, number: int, run_dir: Path, device: str,
             threads: int | None, segment: int | None = None) -> TrialSpec:
    """The trainer's frozen trial file for one final run: not interactive (nothing prunes it), scored on
    the test split, the model saved when the job says so (a LoRA model saves its adapter there: what
    peft's ``save_pretrained`` writes), a PBT schedule replayed via ``extra``.

    ``segment`` k: a PBT schedule replayed as a chain of runs (by a script, which is never changed while
    it runs, as in the search; by lmtune's trainer when an entry changes a setting outside
    ``CHANGED_IN_PLACE``): run k trains entry k's settings from the checkpoint run k-1 saved at
    that entry's units, checkpointing at every boundary, and is paused at the next one; only the last run
    scores the test split and saves the model."""
    if segment is None:
        spec = trial_spec(plan, number=number, hparams=job.hparams, device=device, threads=threads,
                          interactive=False, evaluate_test=True, save_model=job.save_model, save_adapter=False,
                          extra={"schedule": job.schedule} if job.schedule else {})
        return replace(spec, output_dir=str(run_dir))
    schedule = job.schedule or []
    last = segment == len(schedule) - 1
    units = [int(e["units"]) for e in schedule]
    every = math.gcd(*[u for u in units if u]) if any(units) else 0
    spec = trial_spec(plan, number=number, hparams=dict(schedule[segment]["hparams"]), device=device,
                      threads=threads, interactive=not last, evaluate_test=last, save_model=job.save_model and last,
                      save_adapter=False, checkpoint_every=every,
                      resume_from=str(_boundary(run_dir, units[segment])) if segment else None)
    return replace(spec, output_dir=str(run_dir))


def _boundary(run_dir: Path, units: int) -> Path:
    """Where a chained final run saved its state at ``units`` (a script: ``Trial.checkpoint_dir``)."""
    return checkpoint_folder(run_dir, units)


class FinalRunner:
    """Runs (or resumes) the final runs of one study directory. Keyword-only; one ``run()`` each."""

    def __init__(self, study_dir: Path | str, *, seeds: int = 3, workers: int | None = None,
                 log: Log = print, backend: Executor | None = None) -> None:
        self.study_dir = Path(study_dir)
        self.seeds = seeds
        self.workers = workers
        self.log = log
        self.backend = backend  # None: the study's own execution.backend
        self.tracker: Tracker = NoTracking()

    @property
    def final_dir(self) -> Path:
        return self.study_dir / FINAL_DIR

    def run(self) -> FinalSummary:
        t0 = time.monotonic()
        study, meta = load_study(self.study_dir)
        cfg = study_config(meta, self.study_dir)
        plan = make_plan(cfg)
        trials = study.get_trials(deepcopy=False)
        default = default_choice(trials, plan.defaults)
        best = best_choice(trials, plan.defaults, cfg.study.direction)
        jobs = plan_jobs(default, best, self.seeds)
        path = self.final_dir / "results.json"
        previous = _read(path)
        kept = kept_runs(previous.get("runs", []), [default, best])
        self._drop_stale(previous.get("runs", []), kept)
        model_dir = self.final_dir / "model"
        pending = todo(jobs, kept, model_exported=(model_dir / CONFIG_FILE).is_file())
        summary = FinalSummary(results={}, results_path=path, model_dir=None, default=default, best=best,
                               reused=[j.key for j in jobs if j not in pending])
        workers = self.workers or cfg.execution.workers
        # the study's own backend (local or ray), with --workers overriding its slots
        executor = self.backend or make_executor(cfg.execution.model_copy(update={
            "workers": workers, "threads_per_worker": None if self.workers else cfg.execution.threads_per_worker}))
        workers = executor.workers
        machine = describe_machine(gpu=executor.device_for(0).startswith("cuda"), workers=workers,
                                   threads=executor.threads)
        runs = {(r["which"], int(r["seed"])): r for r in kept}
        summary.results = self._write(path, cfg.study, default, best, runs, model_dir)
        if summary.reused:
            self.log(f"reusing {len(summary.reused)} finished run(s) from {path}: {', '.join(summary.reused)}")
        self.log(f"{len(pending)} final run(s) to do on {machine}")
        self.tracker = make_tracker(cfg.tracking, str(meta.get("study_name") or cfg.study.name))
        try:
            drive(_FinalScheduler(self, pending, plan, study=cfg.study, task=cfg.task, meta=meta, machine=machine,
                                  runs=runs, summary=summary), executor)
        finally:
            executor.close()  # Ray actors and their reserved resources go back
            self.tracker.close()
        summary.results = self._write(path, cfg.study, default, best, runs, model_dir)
        summary.model_dir = model_dir if (model_dir / CONFIG_FILE).is_file() else None
        summary.wall_time_s = time.monotonic() - t0
        return summary

    # -- running --------------------------------------------------------------------------------
    def _finished(self, job: FinalJob, outcome: Outcome, wall: float) -> dict[str, Any]:
        """The record of one ended final run; raises FinalRunError when it ended without test metrics."""
        end = outcome.end
        if failure_reason(outcome) or end is None:
            log = "" if outcome.error is None else f" (log: {outcome.log_path})"  # the no-end reason names it
            raise FinalRunError(failure_reason(outcome) + log)
        if not end.get("test_metrics"):
            raise FinalRunError(f"the run ended without test metrics; see {outcome.log_path}")
        run_dir = self.final_dir / "runs" / job.key
        record = _record(job, end, wall, run_dir.relative_to(self.study_dir))
        shown = ", ".join(f"{k}={v:.4f}" for k, v in sorted(record["metrics"].items()))
        self.log(f"{job.key} done in {wall:.0f}s: {shown}")
        return record

    def _export(self, job: FinalJob, record: dict[str, Any], task: TaskSection, plan: Plan,
                meta: dict[str, Any]) -> None:
        saved = self.study_dir / record["run_dir"] / "model"
        if not saved.is_dir():
            self.log(f"{job.key}: the trainer saved no model at {saved}; final/model not written")
            return
        source = "its PBT schedule replayed" if job.schedule else "its configuration"
        header = [f"Written by 'lmtune final': the best trial ({job.choice.source_trial}) of study "
                  f"'{meta.get('study_name')}', {source}, retrained with seed {job.seed} on the training split.",
                  "Test metrics of this model: " + ", ".join(f"{k}={v:.4f}" for k, v in
                                                             sorted(record["metrics"].items()))]
        text = config_yaml(meta["config"], job.hparams, header=header, schedule=job.schedule)
        dest = export_model(saved, self.final_dir / "model", tokenizer_from=plan.model, config_text=text,
                            trust_remote_code=task.trust_remote_code,
                            base_model=base_model_name(task.model or plan.model, plan.model))
        self.log(f"final model (best configuration, seed {job.seed}) written to {dest}")

    # -- results file ---------------------------------------------------------------------------
    def _drop_stale(self, previous: list[dict[str, Any]], kept: list[dict[str, Any]]) -> None:
        stale = [r for r in previous if r not in kept]
        if not stale:
            return
        self.log(f"dropping {len(stale)} recorded run(s) whose configuration is no longer the "
                 "default/best one (the study changed since the last 'lmtune final'); they are redone")
        if any(r.get("which") == "best" for r in stale):
            shutil.rmtree(self.final_dir / "model", ignore_errors=True)

    def _write(self, path: Path, study: StudySection, default: Choice, best: Choice,
               runs: dict[tuple[str, int], dict[str, Any]], model_dir: Path) -> dict[str, Any]:
        ordered = sorted(runs.values(), key=lambda r: (WHICH.index(r["which"]), int(r["seed"])))
        names = sorted({m for r in ordered for m in r["metrics"]})
        primary = "test_" + study.metric.removeprefix("eval_")
        names.sort(key=lambda m: m != primary)
        machines = list(dict.fromkeys(str(r["machine"]) for r in ordered if r.get("machine")))
        results = {
            "study_name": study.name, "search_metric": study.metric, "direction": study.direction,
            "metric_names": names, "seeds": sorted({int(r["seed"]) for r in ordered}), "runs": ordered,
            "machine": "; ".join(machines) or None, "default_trial": default.source_trial,
            "best_trial": best.source_trial,
            "model_dir": str(model_dir.relative_to(self.study_dir)) if (model_dir / CONFIG_FILE).is_file() else None,
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(results, indent=1, default=str), encoding="utf-8")
        tmp.replace(path)
        return results


class _FinalScheduler:
    """The final runs as a `lmtune.tuner.drive.Scheduler`: a fixed list of jobs (keys are job keys), none
    interactive; each ending is written to ``results.json`` at once, and the best configuration's seed-0
    run exports the final model. ``study`` (name, metric, direction) goes into results.json, ``task``
    (model, trust_remote_code) into the exported model."""

    poll_s: float | None = None

    def __init__(self, runner: FinalRunner, pending: list[FinalJob], plan: Plan, *, study: StudySection,
                 task: TaskSection, meta: dict[str, Any], machine: str, runs: dict[tuple[str, int], dict[str, Any]],
                 summary: FinalSummary) -> None:
        self.runner, self.plan, self.meta, self.machine = runner, plan, meta, machine
        self.study, self.task = study, task
        self.runs, self.summary = runs, summary
        self.todo = list(pending)
        self.jobs = {j.key: j for j in pending}
        self.number = {j.key: i for i, j in enumerate(pending)}
        self.started_at: dict[str, float] = {}
        self.lock = threading.Lock()
        # a PBT schedule is replayed as a chain of runs (see job_spec) by a script, and by lmtune's trainer
        # when it changes a setting the running trainer cannot (CHANGED_IN_PLACE); the run each job is at
        self.script = plan.trial.task_type == "script"
        self.segment: dict[str, int] = {}
        self.curves: dict[str, list[dict[str, Any]]] = {}

    def stop_reason(self) -> str:
        return ""

    def removable_checkpoints(self) -> list[Path]:
        return []  # it hands no trial's checkpoint to another, so it deletes none either

    def waiting_on_others(self) -> bool:
        return False

    def suggest(self, device: str, threads: int) -> Launch | None:
        with self.lock:
            if not self.todo:
                return None
            job = self.todo.pop(0)
        run_dir = self.runner.final_dir / "runs" / job.key
        segment = self.segment.get(job.key, 0) if self._chained(job) else None
        if not segment:  # a fresh run (a chain's later runs go on in the same folder)
            shutil.rmtree(run_dir / "model", ignore_errors=True)
            shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
            self.started_at[job.key] = time.monotonic()
            self.runner.log(f"{job.key} started" + (" (saves the final model)" if job.save_model else ""))
        spec = job_spec(self.plan, job, number=self.number[job.key], run_dir=run_dir, device=device,
                        threads=threads, segment=segment)
        return Launch(job.key, spec, run_dir)

    def _chained(self, job: FinalJob) -> bool:
        steps = job.schedule or []
        return bool(steps) and (self.script or any(
            a["hparams"].get(k) != b["hparams"].get(k) for a, b in itertools.pairwise(steps)
            for k in {*a["hparams"], *b["hparams"]} - CHANGED_IN_PLACE))

    def started(self, key: Hashable, handle: TrialHandle) -> None:
        pass

    def on_eval(self, key: Hashable, event: dict[str, Any], curve: list[dict[str, Any]]) -> Decision:
        """Only a chained schedule replay is interactive: it pauses at the next entry's units (once it
        saved its state there), to be started again with that entry's settings."""
        job = self.jobs[str(key)]
        schedule = job.schedule or []
        k = self.segment.get(job.key, 0)
        if k + 1 < len(schedule) and int(event["units"]) >= int(schedule[k + 1]["units"]):
            return Pause()
        return Continue()

    def on_event(self, key: Hashable, event: dict[str, Any]) -> None:
        pass

    def on_end(self, key: Hashable, outcome: Outcome) -> None:
        job = self.jobs[str(key)]
        if self._chained(job) and job.schedule is not None:
            self.curves.setdefault(job.key, []).extend(outcome.curve)
            outcome = replace(outcome, curve=list(self.curves[job.key]))
            end = outcome.end
            if end is not None and Ending.of(end) is Ending.PAUSED and not failure_reason(outcome):
                k = self.segment.get(job.key, 0) + 1
                if not _boundary(self.runner.final_dir / "runs" / job.key,
                                 int(job.schedule[k]["units"])).is_dir():
                    self.on_crash(key, FinalRunError(
                        f"the run paused at units {end.get('units')} without saving its state there (a "
                        "script saves it in trial.checkpoint_dir(...)), which replaying the PBT schedule needs; "
                        f"see {outcome.log_path}"))
                    return
                with self.lock:
                    self.segment[job.key] = k
                    self.todo.insert(0, job)  # the chain's next run, before any other job
                return
        wall = time.monotonic() - self.started_at[job.key]
        try:
            record = {**self.runner._finished(job, outcome, wall), "machine": self.machine}
        except FinalRunError as exc:
            self.on_crash(key, exc)
            return
        self.runner.tracker.log_run(RunRecord(
            name=f"final-{job.key}", params=dict(job.hparams), curve=list(outcome.curve), metrics=record["metrics"],
            state="COMPLETE", train_tokens=int(record["train_tokens"]), wall_time_s=wall))
        with self.lock:
            self.runs[(job.which, job.seed)] = record
            self.runner._write(self.summary.results_path, self.study, self.summary.default, self.summary.best,
                               self.runs, self.runner.final_dir / "model")
            self.summary.ran.append(job.key)
        if job.save_model:
            self.runner._export(job, record, self.task, self.plan, self.meta)

    def on_crash(self, key: Hashable, exc: Exception) -> None:
        with self.lock:
            self.summary.failed.append((str(key), str(exc)))
        self.runner.log(f"{key} FAILED: {exc}")

    def abandon(self, keys: list[Hashable]) -> None:
        """Interrupted: what finished is in results.json; the rest is redone next time."""


def _record(job: FinalJob, end: dict[str, Any], wall: float, run_dir: Path) -> dict[str, Any]:
    record: dict[str, Any] = {
        "which": job.which, "seed": job.seed, "config": job.hparams, "source_trial": job.choice.source_trial,
        "metrics": dict(end["test_metrics"]), "validation_metrics": dict(end.get("metrics") or {}),
        "train_tokens": int(end.get("train_tokens") or 0), "wall_time_s": wall,
        "train_time_s": end.get("train_time_s"), "eval_time_s": end.get("eval_time_s"),
        "precision": end.get("precision"),
        "precision_reason": end.get("precision_reason"), "stopped_by": end.get("stopped_by"), "run_dir": str(run_dir),
    }
    if job.schedule is not None:
        record["schedule"] = job.schedule
    return record


def _read(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise StudyError(f"{path} is not valid JSON ({exc}); delete it to redo the final runs") from None
    return data if isinstance(data, dict) else {}
