"""The final runs' scheduler: a fixed list of jobs (default and best configurations over seeds) for the one
trial loop. `lmtune.tuner.final.FinalRunner` plans the jobs, reads what is kept and writes results; this
scheduler starts each job, replays a PBT schedule as a chain of runs where it must, and hands each ending
back to the runner."""

from __future__ import annotations

import itertools
import shutil
import threading
import time
from collections.abc import Hashable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from lmtune.config import StudySection, TaskSection
from lmtune.protocol import CHANGED_IN_PLACE, Continue, Decision, Ending, Eval, Outcome, Pause
from lmtune.schedulers.base import Launch, Scheduler
from lmtune.tuner import FinalJob, FinalRunError, Plan, RunRecord, boundary, job_spec

if TYPE_CHECKING:
    from lmtune.tuner import FinalRunner, FinalSummary

__all__ = ["FinalScheduler"]


class FinalScheduler(Scheduler):
    """The final runs as a `lmtune.schedulers.Scheduler`: a fixed list of jobs (keys are job keys), none
    interactive; each ending is written to ``results.json`` at once, and the best configuration's seed-0
    run exports the final model. ``study`` (name, metric, direction) goes into results.json, ``task``
    (model, trust_remote_code) into the exported model."""

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

    def suggest(self, device: str, threads: int) -> Launch | None:
        with self.lock:
            if not self.todo:
                return None
            job = self.todo.pop(0)
        run_dir = self.runner.final_dir / "runs" / job.key
        segment = self.segment.get(job.key, 0) if self._chained(job) else None
        if not segment:  # a fresh run (a chain's later runs go on in the same folder)
            shutil.rmtree(run_dir / "model", ignore_errors=True)
            for old in self.checkpoints.list_checkpoints(run_dir):  # an interrupted run's: the backend's to delete
                self.checkpoints.delete_checkpoint(old)
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

    def on_eval(self, key: Hashable, event: Eval, curve: list[dict[str, Any]]) -> Decision:
        """Only a chained schedule replay is interactive: it pauses at the next entry's units (once it
        saved its state there), to be started again with that entry's settings."""
        job = self.jobs[str(key)]
        schedule = job.schedule or []
        k = self.segment.get(job.key, 0)
        if k + 1 < len(schedule) and event.units >= int(schedule[k + 1]["units"]):
            return Pause()
        return Continue()

    def on_end(self, key: Hashable, outcome: Outcome) -> None:
        job = self.jobs[str(key)]
        if self._chained(job) and job.schedule is not None:
            self.curves.setdefault(job.key, []).extend(outcome.curve)
            outcome = replace(outcome, curve=list(self.curves[job.key]))
            end = outcome.end
            if end is not None and outcome.ending is Ending.PAUSED:
                k = self.segment.get(job.key, 0) + 1
                if not boundary(self.runner.final_dir / "runs" / job.key,
                                 int(job.schedule[k]["units"])).is_dir():
                    self.on_crash(key, FinalRunError(
                        f"the run paused at units {end.units} without saving its state there (a "
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
