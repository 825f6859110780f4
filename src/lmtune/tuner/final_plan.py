"""What ``lmtune final`` retrains: the default and the best configuration, once per seed.

Pure functions over the study's trials and ``final/results.json`` (no training, no processes), so the
choice of configurations, the PBT schedule replay and the resume rule are testable on their own.

Resume rule: a run already in ``results.json`` is kept when its configuration (seed aside) is the one
that would be trained now; runs of a configuration that changed since (say, more trials found a new
best) are dropped and redone, so the comparison never mixes two "best" configurations.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from optuna.trial import FrozenTrial, TrialState

from lmtune.errors import StudyError
from lmtune.protocol import TrialSpec, checkpoint_folder
from lmtune.study import record
from lmtune.tuner.plan import Plan, trial_spec

WHICH = ("default", "best")


@dataclass(frozen=True)
class Choice:
    """A configuration to retrain: full training settings, and for PBT the schedule to replay."""

    which: str  # "default" | "best"
    hparams: dict[str, Any]  # the full training section (the schedule's first entry for PBT)
    schedule: list[dict[str, Any]] | None  # [{"units": u, "hparams": {...}}], first at units 0
    source_trial: int | None  # the trial it comes from; None for the config's own training section

    def fingerprint(self) -> str:
        return fingerprint(self.hparams, self.schedule)


@dataclass(frozen=True)
class FinalJob:
    """One final run: a configuration with one seed."""

    choice: Choice
    seed: int
    save_model: bool  # the best configuration's seed-0 run: its model becomes final/model

    @property
    def which(self) -> str:
        return self.choice.which

    @property
    def key(self) -> str:
        return f"{self.which}-seed{self.seed}"

    @property
    def hparams(self) -> dict[str, Any]:
        return {**self.choice.hparams, "seed": self.seed}

    @property
    def schedule(self) -> list[dict[str, Any]] | None:
        if self.choice.schedule is None:
            return None
        return [{"units": e["units"], "hparams": {**e["hparams"], "seed": self.seed}} for e in self.choice.schedule]


def _without_seed(hparams: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in hparams.items() if k != "seed"}


def fingerprint(hparams: Mapping[str, Any], schedule: Sequence[Mapping[str, Any]] | None) -> str:
    """Identity of a configuration with the seed left out (JSON, sorted keys)."""
    steps = None if schedule is None else [
        {"units": int(e["units"]), "hparams": _without_seed(e["hparams"])} for e in schedule]
    return json.dumps({"hparams": _without_seed(hparams), "schedule": steps}, sort_keys=True, default=str)


def _config_of(trial: FrozenTrial, defaults: Mapping[str, Any]) -> dict[str, Any]:
    """The full training settings a trial ran with (its ``config`` attr, else defaults + params)."""
    return {**defaults, **record.read(trial).config, **trial.params}


def default_choice(trials: Sequence[FrozenTrial], defaults: Mapping[str, Any]) -> Choice:
    """The trial marked ``is_default`` (a finished one first), else the config's training section."""
    marked = [t for t in trials if record.read(t).is_default]
    marked.sort(key=lambda t: (t.state != TrialState.COMPLETE, t.number))
    if marked:
        return Choice("default", _config_of(marked[0], defaults), None, marked[0].number)
    return Choice("default", dict(defaults), None, None)


def _best_trial(trials: Sequence[FrozenTrial], direction: str) -> FrozenTrial:
    best = record.best_of(list(trials), direction)
    if best is None:
        raise StudyError("no completed trial yet, so there is no best configuration to retrain; "
                         "run 'lmtune tune' first (see 'lmtune status' for failure reasons)")
    return best



def pbt_schedule(trial: FrozenTrial, defaults: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    """A PBT member's schedule (``pbt.schedule``: [{"units", "config"}]) as full settings per step."""
    pbt = record.read(trial).pbt
    steps = pbt.get("schedule") if pbt is not None else None
    if not isinstance(steps, list) or not steps:
        return None
    ordered = sorted(steps, key=lambda s: int(s["units"]))
    if int(ordered[0]["units"]) != 0:
        raise StudyError(f"trial {trial.number}: its PBT schedule starts at units {ordered[0]['units']}, not 0")
    return [{"units": int(s["units"]), "hparams": {**defaults, **s["config"]}} for s in ordered]


def best_choice(trials: Sequence[FrozenTrial], defaults: Mapping[str, Any], direction: str,
                trial: int | None = None) -> Choice:
    """The best COMPLETE trial's settings (``trial``: that COMPLETE trial's instead, e.g. a point of a
    multi-objective study's front); for a PBT member, its schedule replayed from the start."""
    best = _best_trial(trials, direction) if trial is None else record.chosen_of(list(trials), trial)
    schedule = pbt_schedule(best, defaults)
    if schedule is not None:
        return Choice("best", dict(schedule[0]["hparams"]), schedule, best.number)
    return Choice("best", _config_of(best, defaults), None, best.number)


def plan_jobs(default: Choice, best: Choice, seeds: int) -> list[FinalJob]:
    """Seeds 0..seeds-1 of both configurations, interleaved so a partial run stays balanced."""
    if seeds < 1:
        raise StudyError(f"--seeds {seeds}: need at least 1 (2+ to test the difference)")
    return [FinalJob(choice, seed, save_model=choice.which == "best" and seed == 0)
            for seed in range(seeds) for choice in (default, best)]


def kept_runs(runs: Sequence[Mapping[str, Any]], choices: Sequence[Choice]) -> list[dict[str, Any]]:
    """The recorded runs still valid for ``choices`` (same configuration, seed aside), one per seed."""
    current = {c.which: c.fingerprint() for c in choices}
    kept: dict[tuple[str, int], dict[str, Any]] = {}
    for run in runs:
        which = str(run.get("which"))
        if which in current and fingerprint(run.get("config", {}), run.get("schedule")) == current[which]:
            kept[(which, int(run["seed"]))] = dict(run)
    return list(kept.values())


def todo(jobs: Sequence[FinalJob], kept: Sequence[Mapping[str, Any]], *, model_exported: bool) -> list[FinalJob]:
    """Jobs without a valid recorded run; the model-saving run is redone if its export is missing."""
    done = {(str(r["which"]), int(r["seed"])) for r in kept}
    return [j for j in jobs if (j.which, j.seed) not in done or (j.save_model and not model_exported)]


class FinalRunError(RuntimeError):
    """A final run ended without test metrics (its reason and log are in the message)."""


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
                      resume_from=str(boundary(run_dir, units[segment])) if segment else None)
    return replace(spec, output_dir=str(run_dir))


def boundary(run_dir: Path, units: int) -> Path:
    """Where a chained final run saved its state at ``units`` (a script: ``Trial.checkpoint_dir``)."""
    return checkpoint_folder(run_dir, units)
