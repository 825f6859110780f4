"""`lmtune final` without training: which configurations it retrains, the PBT replay spec, resume rules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from optuna.distributions import BaseDistribution, FloatDistribution
from optuna.trial import FrozenTrial, TrialState, create_trial

from lmtune.config import load_config
from lmtune.errors import StudyError
from lmtune.study.store import StudyPaths
from lmtune.tuner.final_export import describe_machine
from lmtune.tuner.final_plan import best_choice, default_choice, job_spec, kept_runs, plan_jobs, todo
from lmtune.tuner.plan import Plan, TrialBase, task_data_spec

ROOT = Path(__file__).parents[2]
QUICKSTART = ROOT / "examples" / "quickstart.yaml"
DEFAULTS: dict[str, Any] = {"learning_rate": 5e-5, "batch_size": 32, "weight_decay": 0.0, "seed": 0}
LR: dict[str, BaseDistribution] = {"learning_rate": FloatDistribution(1e-6, 1.0, log=True)}


def trial(number: int, lr: float, value: float | None, **attrs: Any) -> FrozenTrial:
    t = create_trial(state=TrialState.COMPLETE if value is not None else TrialState.FAIL, value=value,
                     params={"learning_rate": lr}, distributions=LR,
                     user_attrs={"config": {**DEFAULTS, "learning_rate": lr}, **attrs})
    t.number = number
    return t


PBT_SCHEDULE: list[dict[str, Any]] = [{"units": 0, "config": {"learning_rate": 1e-4, "weight_decay": 0.01}},
                {"units": 2, "config": {"learning_rate": 5e-5, "weight_decay": 0.02}},
                {"units": 4, "config": {"learning_rate": 2.5e-5, "weight_decay": 0.02}}]


def test_default_is_the_marked_trial_and_best_the_top_complete_one() -> None:
    trials = [trial(0, 5e-5, 0.70, is_default=True), trial(1, 3e-4, 0.82), trial(2, 1e-5, 0.75),
              trial(3, 1e-1, None)]
    default, best = default_choice(trials, DEFAULTS), best_choice(trials, DEFAULTS, "maximize")
    assert (default.source_trial, default.hparams["learning_rate"], default.schedule) == (0, 5e-5, None)
    assert (best.source_trial, best.hparams["learning_rate"], best.schedule) == (1, 3e-4, None)
    assert best_choice(trials, DEFAULTS, "minimize").source_trial == 0


def test_default_falls_back_to_the_training_section_and_no_completed_trial_is_an_error() -> None:
    failed = [trial(0, 1e-1, None)]
    assert default_choice(failed, DEFAULTS).hparams == DEFAULTS
    assert default_choice(failed, DEFAULTS).source_trial is None
    with pytest.raises(StudyError, match="lmtune tune"):
        best_choice(failed, DEFAULTS, "maximize")


def test_jobs_interleave_seeds_and_only_best_seed0_saves_the_model() -> None:
    trials = [trial(0, 5e-5, 0.70, is_default=True), trial(1, 3e-4, 0.82)]
    jobs = plan_jobs(default_choice(trials, DEFAULTS), best_choice(trials, DEFAULTS, "maximize"), 2)
    assert [j.key for j in jobs] == ["default-seed0", "best-seed0", "default-seed1", "best-seed1"]
    assert [j.save_model for j in jobs] == [False, True, False, False]
    assert [j.hparams["seed"] for j in jobs] == [0, 0, 1, 1]
    assert jobs[3].hparams["learning_rate"] == 3e-4
    with pytest.raises(StudyError):
        plan_jobs(jobs[0].choice, jobs[1].choice, 0)


def _plan(tmp_path: Path) -> Plan:
    from lmtune.space import Space

    cfg = load_config(QUICKSTART)
    base = TrialBase.of(cfg.task, cfg.training, Space(), metric=cfg.study.metric, direction=cfg.study.direction,
                        data=task_data_spec(cfg.task, seed=0), world_size=1, count_tokens=False)
    return Plan(paths=StudyPaths(tmp_path), storage="sqlite://", model="/models/m", data_cache=tmp_path / "cache",
                train_rows=100, train_tokens=1000, examples_per_unit=32, total_examples=192, space=Space(),
                defaults=DEFAULTS, trial=base)


def test_pbt_best_replays_its_schedule_in_the_trial_spec(tmp_path: Path) -> None:
    pbt = {"member": 1, "generation": 2, "parent_trial": 0, "schedule": PBT_SCHEDULE}
    trials = [trial(0, 5e-5, 0.70, is_default=True), trial(5, 2.5e-5, 0.85, pbt=pbt)]
    best = best_choice(trials, DEFAULTS, "maximize")
    assert best.source_trial == 5 and best.hparams == {**DEFAULTS, **PBT_SCHEDULE[0]["config"]}
    job = plan_jobs(default_choice(trials, DEFAULTS), best, 2)[3]  # best, seed 1
    spec = job_spec(_plan(tmp_path), job, number=3, run_dir=tmp_path / "r",
                    device="cpu", threads=2)
    assert spec.hparams == {**DEFAULTS, "learning_rate": 1e-4, "weight_decay": 0.01, "seed": 1}
    assert spec.extra["schedule"] == [
        {"units": u, "hparams": {**DEFAULTS, **c, "seed": 1}}
        for u, c in ((0, PBT_SCHEDULE[0]["config"]), (2, PBT_SCHEDULE[1]["config"]), (4, PBT_SCHEDULE[2]["config"]))
    ]
    assert not spec.interactive and spec.evaluate_test and not spec.save_model and not spec.save_adapter
    assert spec.output_dir == str(tmp_path / "r") and spec.examples_per_unit == 32
    assert spec.total_examples == 100  # the trial's own length: the quickstart's 1 epoch of the 100 train rows


def test_non_pbt_spec_has_no_schedule_and_best_seed0_saves(tmp_path: Path) -> None:
    trials = [trial(0, 5e-5, 0.70, is_default=True), trial(1, 3e-4, 0.82)]
    job = plan_jobs(default_choice(trials, DEFAULTS), best_choice(trials, DEFAULTS, "maximize"), 1)[1]
    spec = job_spec(_plan(tmp_path), job, number=1, run_dir=tmp_path, device="cpu",
                    threads=None)
    assert spec.extra == {} and spec.save_model and spec.hparams["learning_rate"] == 3e-4


def _run(job_which: str, seed: int, config: dict[str, Any]) -> dict[str, Any]:
    return {"which": job_which, "seed": seed, "config": {**config, "seed": seed}, "metrics": {"test_accuracy": 0.8}}


def test_resume_keeps_matching_runs_and_redoes_a_changed_best() -> None:
    trials = [trial(0, 5e-5, 0.70, is_default=True), trial(1, 3e-4, 0.82)]
    default, best = default_choice(trials, DEFAULTS), best_choice(trials, DEFAULTS, "maximize")
    jobs = plan_jobs(default, best, 2)
    old_best = {**DEFAULTS, "learning_rate": 1e-4}
    runs = [_run("default", 0, default.hparams), _run("best", 0, old_best), _run("best", 1, best.hparams),
            _run("default", 7, default.hparams)]
    kept = kept_runs(runs, [default, best])
    assert sorted((r["which"], r["seed"]) for r in kept) == [("best", 1), ("default", 0), ("default", 7)]
    assert [j.key for j in todo(jobs, kept, model_exported=True)] == ["best-seed0", "default-seed1"]
    all_done = [*kept, _run("best", 0, best.hparams), _run("default", 1, default.hparams)]
    assert todo(jobs, kept_runs(all_done, [default, best]), model_exported=True) == []
    assert [j.key for j in todo(jobs, all_done, model_exported=False)] == ["best-seed0"]


def test_machine_description_names_the_cpu() -> None:
    text = describe_machine(gpu=False, workers=1, threads=2)
    assert text.startswith("CPU: ") and "cores" in text and "2 threads each" in text


def test_a_schedule_that_changes_dropout_is_replayed_as_a_chain_of_runs(tmp_path: Path) -> None:
    """lmtune's trainer changes optimizer settings in place; a dropout change needs the model built again,
    so the replay runs once per schedule entry, each from the checkpoint the one before saved there."""
    from lmtune.schedulers.final import FinalScheduler
    from lmtune.tuner.final import FinalSummary

    steps = [{"units": 0, "config": {"learning_rate": 1e-4, "dropout": 0.1}},
             {"units": 2, "config": {"learning_rate": 1e-4, "dropout": 0.2}},
             {"units": 6, "config": {"learning_rate": 5e-5, "dropout": 0.2}}]
    trials = [trial(0, 5e-5, 0.70, is_default=True),
              trial(5, 1e-4, 0.85, pbt={"member": 1, "generation": 2, "parent_trial": 0, "schedule": steps})]
    best = best_choice(trials, DEFAULTS, "maximize")
    job = plan_jobs(default_choice(trials, DEFAULTS), best, 1)[1]
    plan, run_dir = _plan(tmp_path), tmp_path / "r"
    first = job_spec(plan, job, number=1, run_dir=run_dir, device="cpu", threads=1, segment=0)
    middle = job_spec(plan, job, number=1, run_dir=run_dir, device="cpu", threads=1, segment=1)
    last = job_spec(plan, job, number=1, run_dir=run_dir, device="cpu", threads=1, segment=2)
    assert first.checkpoint_every == 2 and first.interactive and not first.evaluate_test and first.resume_from is None
    assert middle.hparams["dropout"] == 0.2 and middle.resume_from == str(run_dir / "checkpoints" / "u00002")
    assert last.resume_from == str(run_dir / "checkpoints" / "u00006") and last.evaluate_test and not last.interactive
    assert last.hparams["learning_rate"] == 5e-5 and "schedule" not in last.extra
    runner = type("R", (), {"final_dir": tmp_path})()
    summary = FinalSummary({}, tmp_path / "results.json", None, job.choice, job.choice)
    cfg = load_config(QUICKSTART)
    scheduler = FinalScheduler(runner, [job], plan, study=cfg.study, task=cfg.task, meta={}, machine="",  # type: ignore[arg-type]
                                runs={}, summary=summary)
    assert scheduler._chained(job)
    lr_only = [{"units": 0, "hparams": {"learning_rate": 1e-4, "dropout": 0.1}},
               {"units": 2, "hparams": {"learning_rate": 3e-4, "dropout": 0.1}}]
    in_place = type(job)(choice=type(job.choice)("best", lr_only[0]["hparams"], lr_only, 5), seed=0, save_model=False)
    assert not scheduler._chained(in_place)  # a learning-rate change is replayed inside one run
