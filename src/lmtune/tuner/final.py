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

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lmtune.config import StudyConfig, StudySection, TaskSection, validate
from lmtune.errors import StudyError
from lmtune.execution import Executor, make_executor
from lmtune.protocol import End, Ending, Outcome
from lmtune.schedulers import FinalScheduler
from lmtune.study import load_study
from lmtune.study import record as trial_record
from lmtune.training import base_model_name
from lmtune.tuner.drive import drive
from lmtune.tuner.final_export import CONFIG_FILE, config_yaml, describe_machine, export_model
from lmtune.tuner.final_plan import (
    WHICH,
    Choice,
    FinalJob,
    FinalRunError,
    best_choice,
    default_choice,
    job_spec,
    kept_runs,
    plan_jobs,
    todo,
)
from lmtune.tuner.plan import Plan, make_plan
from lmtune.tuner.tracking import NoTracking, Tracker, make_tracker

__all__ = ["FINAL_DIR", "FinalRunError", "FinalRunner", "FinalSummary", "job_spec", "study_config"]

FINAL_DIR = "final"
Log = Callable[[str], None]


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


class FinalRunner:
    """Runs (or resumes) the final runs of one study directory. Keyword-only; one ``run()`` each. ``trial``:
    the configuration to compare with the default (its runs are labelled ``best``); None: the best trial."""

    def __init__(self, study_dir: Path | str, *, seeds: int = 3, workers: int | None = None,
                 log: Log = print, backend: Executor | None = None, trial: int | None = None) -> None:
        self.study_dir = Path(study_dir)
        self.trial = trial  # retrain this COMPLETE trial instead of the best (a point of a Pareto front)
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
        best = best_choice(trials, plan.defaults, cfg.study.direction, trial=self.trial)
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
            drive(FinalScheduler(self, pending, plan, study=cfg.study, task=cfg.task, meta=meta, machine=machine,
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
        """The record of one ended final run (`lmtune.study.record.ended`'s fields, as every trial's, and the
        test metrics); raises FinalRunError when it failed or ended without test metrics."""
        ended = trial_record.ended(outcome, metric=None, wall_s=wall)
        end = outcome.end
        if ended.ending is Ending.FAILED or end is None:
            log = "" if outcome.error is None else f" (log: {outcome.log_path})"  # the no-end reason names it
            raise FinalRunError(ended.reason + log)
        if not end.test_metrics:
            raise FinalRunError(f"the run ended without test metrics; see {outcome.log_path}")
        run_dir = self.final_dir / "runs" / job.key
        record = _record(job, end, ended.fields, run_dir.relative_to(self.study_dir))
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


def _record(job: FinalJob, end: End, fields: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """A final run's entry in results.json: the trial record's fields of the run (`fields`, from
    `lmtune.study.record.ended`) but its curve, and what a final run adds."""
    record: dict[str, Any] = {
        "which": job.which, "seed": job.seed, "config": job.hparams, "source_trial": job.choice.source_trial,
        "metrics": dict(end.test_metrics or {}), "validation_metrics": dict(end.metrics),
        "train_tokens": fields["train_tokens"], "wall_time_s": fields["wall_time_s"],
        "overhead_s": fields.get("overhead_s"), "train_time_s": end.train_time_s, "eval_time_s": end.eval_time_s,
        "precision": fields.get("precision"), "precision_reason": fields.get("precision_reason"),
        "forward": fields.get("forward"), "stopped_by": fields.get("stopped_by"), "run_dir": str(run_dir),
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
