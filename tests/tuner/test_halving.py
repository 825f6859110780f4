"""Synchronous successive halving (``search.strategy: halving``, and ``auto`` under ``budget.max_train_tokens``),
run by the tuner on the simulated backend: configurations pause at each rung and the best go on from their
checkpoints (nothing is trained twice), the token budget is spent, an interrupted study resumes, and a budget too
small for one configuration is refused before anything trains."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from conftest import interrupting_executor, run_lmtune, set_args, tiny_overrides
from lmtune.cli.views import trial_rows
from lmtune.config import load_config
from lmtune.errors import ConfigError
from lmtune.execution.simulated import SimulatedExecutor
from lmtune.schedulers import HALVING_STATE as STATE_FILE
from lmtune.strategies import HalvingPlan
from lmtune.study import load_study, record
from lmtune.tuner import Tuner, make_plan

QUICKSTART = str(Path(__file__).parents[2] / "examples" / "quickstart.yaml")


def _sets(tiny_model: Path, tiny_csv: Path, d: Path, *more: str) -> list[str]:
    # 24 steps of 16 evaluated every 2 steps: 12 units of 32 examples, 3 per epoch of the 96 train rows
    return [*tiny_overrides(tiny_model, tiny_csv, d), "training.max_steps=24", "training.eval_every=2",
            "execution.workers=1", *more]


def _run_tokens(sets: list[str]) -> float:
    plan = make_plan(load_config(QUICKSTART, sets))
    return plan.total_examples * plan.tokens_per_example


def _loss_at(curve: list[dict[str, Any]], units: int) -> float:
    return float(next(p for p in curve if int(p["units"]) >= units)["metrics"]["eval_loss"])


def test_auto_under_a_token_budget_halves_continues_and_spends_the_budget(tiny_model: Path, tiny_csv: Path,
                                                                         tmp_path: Path) -> None:
    sets = _sets(tiny_model, tiny_csv, tmp_path / "s", "search.strategy=auto")
    cap = int(4 * _run_tokens(sets))
    summary = Tuner(load_config(QUICKSTART, [*sets, f"budget.max_train_tokens={cap}"]),
                    backend=SimulatedExecutor(workers=1)).run()
    state = json.loads((tmp_path / "s" / STATE_FILE).read_text())
    rungs, sizes = state["rungs"], state["sizes"]
    assert summary.stop_reason == "successive halving finished"
    recs = record.records(summary.study.trials)
    assert len(recs) == sizes[0] >= 6  # four runs' tokens pay for many configurations, not four
    for r in recs:  # continued from where it paused: every unit trained once
        assert [int(p["units"]) for p in r.curve] == list(range(1, len(r.curve) + 1)), r.curve
        assert r.config["max_steps"] == 24  # the pinned (longest) length
    # at each rung the best by validation loss went on, the others were pruned there
    for k, rung in enumerate(rungs[:-1]):
        reached = [r for r in recs if r.curve and int(r.curve[-1]["units"]) >= rung]
        went_on = [r for r in reached if int(r.curve[-1]["units"]) > rung]
        assert len(reached) == sizes[k] and len(went_on) == sizes[k + 1]
        worst_kept = max(_loss_at(r.curve, rung) for r in went_on)
        assert all(_loss_at(r.curve, rung) >= worst_kept for r in reached if r not in went_on)
        assert all(r.state == "PRUNED" and r.pruned_at_units == rung and "successive halving" in (r.stop_reason or "")
                   for r in reached if r not in went_on)
    assert [r.state for r in recs].count("COMPLETE") == sizes[-1]
    spent = sum(r.train_tokens or 0 for r in recs)
    assert 0.95 * cap <= spent <= 1.01 * cap, (spent, cap)  # the plan may end up to 1 % above (PLANNED_SLACK)


@pytest.mark.parametrize("min_units", [None, 1])
def test_under_a_small_budget_auto_chooses_its_finalist_after_most_of_an_epoch(tiny_model: Path, tiny_csv: Path,
                                                                              tmp_path: Path,
                                                                              min_units: int | None) -> None:
    """1.5 runs' tokens (3 evaluation units an epoch, 12 in all): the quarter-epoch plan would cut 5
    configurations to 2 after one unit and to 1 after two, choosing the finalist a third of an epoch in; auto
    trains 2 and chooses between them at 5 units, more than an epoch in. A first rung the user set is kept."""
    more = ["search.strategy=auto"] + ([f"search.min_units={min_units}"] if min_units else [])
    sets = _sets(tiny_model, tiny_csv, tmp_path / "s", *more)
    cap = int(1.5 * _run_tokens(sets))
    summary = Tuner(load_config(QUICKSTART, [*sets, f"budget.max_train_tokens={cap}"]),
                    backend=SimulatedExecutor(workers=1)).run()
    state = json.loads((tmp_path / "s" / STATE_FILE).read_text())
    recs = record.records(summary.study.trials)
    pruned = [r.pruned_at_units for r in recs if r.state == "PRUNED"]
    assert [r.state for r in recs].count("COMPLETE") == 1
    if min_units is None:
        assert state["rungs"] == [5, 8, 12] and state["sizes"] == [2, 1, 1]
        assert len(recs) == 2 and pruned == [5]
    else:
        assert state["rungs"][0] == 1 and state["sizes"][0] == 5 and min(pruned) == 1
    # as much of the budget planned as the quarter-epoch plan (17 of the 17.9 units the cap pays for)
    assert HalvingPlan(tuple(state["rungs"]), tuple(state["sizes"])).cost_units == _plan_of(sets, cap).cost_units


def test_auto_without_a_token_budget_stays_tpe_with_asha(tiny_model: Path, tiny_csv: Path, tmp_path: Path) -> None:
    summary = Tuner(load_config(QUICKSTART, _sets(tiny_model, tiny_csv, tmp_path / "s", "search.strategy=auto")),
                    n_trials=3,
                    backend=SimulatedExecutor(workers=1)).run()
    assert not (tmp_path / "s" / STATE_FILE).exists() and summary.stop_reason == "n_trials reached"
    assert record.records(summary.study.trials)[0].is_default


def test_halving_without_a_budget_halves_n_trials_configurations(tiny_model: Path, tiny_csv: Path,
                                                                 tmp_path: Path) -> None:
    summary = Tuner(load_config(QUICKSTART, _sets(tiny_model, tiny_csv, tmp_path / "s", "search.strategy=halving")),
                    n_trials=8, backend=SimulatedExecutor(workers=1)).run()
    state = json.loads((tmp_path / "s" / STATE_FILE).read_text())
    assert state["rungs"] == [1, 2, 4, 8, 12] and state["sizes"] == [8, 4, 2, 1, 1]
    assert [r.state for r in record.records(summary.study.trials)].count("COMPLETE") == 1


@pytest.mark.slow
def test_a_budget_too_small_for_one_configuration_is_refused_before_training(tiny_model: Path, tiny_csv: Path,
                                                                             tmp_path: Path) -> None:
    sets = _sets(tiny_model, tiny_csv, tmp_path / "s", "search.strategy=halving")
    cap = f"budget.max_train_tokens={int(0.8 * _run_tokens(sets))}"
    with pytest.raises(ConfigError, match="cannot train one configuration to its end"):
        Tuner(load_config(QUICKSTART, [*sets, cap]), backend=SimulatedExecutor(workers=1)).run()
    out = run_lmtune("tune", QUICKSTART, *set_args([*sets, f"study.dir={tmp_path / 'cli'}", cap]))
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-800:]
    assert "raise budget.max_train_tokens" in out.stderr + out.stdout
    # auto falls back to its default trial and ASHA there instead (a budget of one run trains the default)
    auto = [*_sets(tiny_model, tiny_csv, tmp_path / "auto", "search.strategy=auto"), cap]
    summary = Tuner(load_config(QUICKSTART, auto), backend=SimulatedExecutor(workers=1)).run()
    assert not (tmp_path / "auto" / STATE_FILE).exists() and record.records(summary.study.trials)[0].is_default


def test_an_interrupted_halving_resumes_each_configuration_from_its_checkpoint(tiny_model: Path, tiny_csv: Path,
                                                                               tmp_path: Path) -> None:
    sets = _sets(tiny_model, tiny_csv, tmp_path / "s", "search.strategy=halving")
    cfg = load_config(QUICKSTART, sets)
    with pytest.raises(KeyboardInterrupt):
        Tuner(cfg, n_trials=8, backend=interrupting_executor(10, workers=1)).run()  # the 8 at rung 1, 2 of rung 2
    # meanwhile `lmtune status` shows the configurations waiting at the rung as PAUSED there, not RUNNING
    status = run_lmtune("status", str(tmp_path / "s"))
    assert status.returncode == 0, status.stderr[-800:]
    study, meta = load_study(tmp_path / "s")
    rows = trial_rows(study, meta["metric"])
    paused = [r for r in rows if r["state"] == "PAUSED"]
    assert {r["number"]: r["reason"].split(" with")[0] for r in paused} == {
        r.number: f"paused at {r.units} units" for r in record.records(study.trials) if r.state == "PAUSED"}
    assert len(paused) >= 2 and "PAUSED" in status.stdout and "paused at" in status.stdout
    summary = Tuner(cfg, n_trials=8, backend=SimulatedExecutor(workers=1)).run()
    recs = record.records(summary.study.trials)
    assert summary.stop_reason == "successive halving finished" and len(recs) == 8  # no configuration drawn again
    assert sorted(r.state for r in recs) == ["COMPLETE"] + ["PRUNED"] * 7
    assert all(r.paused_at_units is None for r in recs)
    for r in recs:  # each resumed where it paused: no unit trained twice, none skipped
        assert [int(p["units"]) for p in r.curve] == list(range(1, len(r.curve) + 1)), r.curve


def test_halving_with_several_objectives_or_queued_configurations_is_refused(tiny_model: Path, tiny_csv: Path,
                                                                            tmp_path: Path) -> None:
    sets = _sets(tiny_model, tiny_csv, tmp_path / "s", "search.strategy=halving",
                 "study.objectives=[{metric: eval_accuracy}, {metric: serve_params}]")
    with pytest.raises(ConfigError, match="ranks configurations by one metric"):
        Tuner(load_config(QUICKSTART, sets), backend=SimulatedExecutor(workers=1)).run()
    sets = _sets(tiny_model, tiny_csv, tmp_path / "q", "search.strategy=halving")
    with pytest.raises(ConfigError, match="runs no queued ones"):  # a proxy stage's transfers
        Tuner(load_config(QUICKSTART, sets), queued_only=True, backend=SimulatedExecutor(workers=1)).run()


@pytest.mark.slow  # real trainer processes: the slow tier
def test_halving_pauses_and_continues_real_trainers_from_their_checkpoints(tiny_model: Path, tiny_csv: Path,
                                                                        tmp_path: Path) -> None:
    """``lmtune tune`` on the local backend: each configuration's trainer saves an exact checkpoint at the rung,
    exits, and the promoted ones start again from it (the curve goes on where it paused); the checkpoints no
    configuration resumes from are deleted."""
    d = tmp_path / "s"
    sets = [*tiny_overrides(tiny_model, tiny_csv, d), "training.max_steps=12", "training.eval_every=2",
            "search.strategy=halving", "execution.workers=1"]
    out = run_lmtune("tune", QUICKSTART, *set_args(sets), "--n-trials", "4")
    assert out.returncode == 0, out.stderr[-2000:]
    from lmtune.study import load_study

    recs = record.records(load_study(d)[0].trials)
    assert sorted(r.state for r in recs) == ["COMPLETE", "PRUNED", "PRUNED", "PRUNED"]
    for r in recs:  # no evaluation twice (a larger batch than the default evaluates every few units)
        units = [int(p["units"]) for p in r.curve]
        assert units == sorted(set(units)) and units[0] <= 2, r.curve
    finalist = next(r for r in recs if r.state == "COMPLETE")
    assert int(finalist.curve[-1]["units"]) == 6 and finalist.train_tokens and finalist.value is not None
    # kept: at most the finalist's own checkpoints of its last run; every paused one was given up
    assert not any(p.is_dir() for r in recs if r.state == "PRUNED" for p in Path(r.trial_dir or "").glob("u?????"))



@pytest.mark.slow  # real trainer processes: the slow tier
def test_halving_on_its_own_grid_evaluates_real_trainers_only_at_its_rungs(tiny_model: Path, tiny_csv: Path,
                                                                           tmp_path: Path) -> None:
    """training.eval_every unset: 12 units of one step each; lmtune's trainer evaluates where a run passes a
    rung (and at its end), not at the 12 units, and the halving still pauses and promotes there."""
    d = tmp_path / "s"
    sets = [*tiny_overrides(tiny_model, tiny_csv, d), "training.max_steps=12", "training.eval_every=null",
            "search.strategy=halving", "execution.workers=1"]
    out = run_lmtune("tune", QUICKSTART, *set_args(sets), "--n-trials", "4")
    assert out.returncode == 0, out.stderr[-2000:]
    from lmtune.study import load_study

    rungs = json.loads((d / STATE_FILE).read_text())["rungs"]
    assert rungs[-1] == 12 and len(rungs) >= 3
    recs = record.records(load_study(d)[0].trials)
    assert sorted(r.state for r in recs).count("COMPLETE") == 1
    for r in recs:  # each evaluation is the first past a rung (a batch of 64 passes 4 units a step)
        units = [int(p["units"]) for p in r.curve]
        assert all(any(a < u <= b for u in rungs) for a, b in zip([0, *units], units, strict=False)), (units, rungs)
    finalist = next(r for r in recs if r.state == "COMPLETE")
    assert int(finalist.curve[-1]["units"]) == 12 and len(finalist.curve) <= len(rungs)

def _halve_with_examples_scaled(tiny_model: Path, tiny_csv: Path, d: Path,
                                factor: float) -> tuple[Any, int, dict[str, Any], Any]:
    """A halving under a cap of 4 runs whose trainer reports ``factor`` times the tokens the plan expects (a
    script's own data, longer or shorter than the train split's mean): the study's summary, the cap, the state
    file and the plan first made."""
    from lmtune.execution.simtrainer import simulate

    def scaled_trainer(spec: dict[str, Any], emit: Any, receive: Any, **kw: Any) -> int:
        def scaled(ev: dict[str, Any]) -> None:
            for k in ("tokens", "train_tokens"):
                if k in ev:
                    ev[k] = round(ev[k] * factor)
            emit(ev)
        return simulate(spec, scaled, receive, **kw)

    sets = _sets(tiny_model, tiny_csv, d, "search.strategy=halving")
    cap = int(4 * _run_tokens(sets))
    summary = Tuner(load_config(QUICKSTART, [*sets, f"budget.max_train_tokens={cap}"]),
                    backend=SimulatedExecutor(workers=1, trainer=scaled_trainer)).run()
    assert summary.stop_reason == "successive halving finished", summary.stop_reason
    return summary, cap, json.loads((d / STATE_FILE).read_text()), _plan_of(sets, cap)


def test_longer_examples_than_planned_promote_fewer_instead_of_overrunning(tiny_model: Path, tiny_csv: Path,
                                                                          tmp_path: Path) -> None:
    """Examples 30 % longer than the train split's mean: the plan over-promises, the rungs ahead are planned
    again from the tokens left at the rate trained, fewer go on, and a finalist still completes within the cap's
    slack."""
    summary, cap, state, planned = _halve_with_examples_scaled(tiny_model, tiny_csv, tmp_path / "s", 1.3)
    recs = record.records(summary.study.trials)
    assert "COMPLETE" in [r.state for r in recs]
    assert sum(r.train_tokens or 0 for r in recs) <= 1.01 * cap
    assert state["sizes"][1:] != list(planned.sizes[1:])  # fewer went on than first planned


def test_far_longer_examples_than_planned_draw_fewer_so_that_a_finalist_completes(tiny_model: Path, tiny_csv: Path,
                                                                                  tmp_path: Path) -> None:
    """Examples 2.5 times longer than the train split's mean (a script that counts its own tokens: a chat
    template, other truncation): planned at the split's rate, the first rung of every configuration ate most
    of the budget and the one finalist was stopped by it, so the study ended with nothing trained to its end.
    Once the first configuration reaches the first rung, the rate it trained at sizes the halving again: the
    configurations not yet started that the budget cannot carry are left out (recorded, with why), and a
    finalist completes within the cap."""
    summary, cap, state, planned = _halve_with_examples_scaled(tiny_model, tiny_csv, tmp_path / "s", 2.5)
    recs = record.records(summary.study.trials)
    assert [r.state for r in recs].count("COMPLETE") >= 1, [(r.state, r.stop_reason) for r in recs]
    assert sum(r.train_tokens or 0 for r in recs) <= 1.01 * cap
    assert state["sizes"][0] < planned.sizes[0]  # fewer configurations than first planned
    left_out = [r for r in recs if not r.train_tokens]
    assert left_out and all(r.state == "PRUNED" and "tokens per example" in (r.stop_reason or "") for r in left_out)


def test_shorter_examples_than_planned_promote_more_and_spend_the_budget(tiny_model: Path, tiny_csv: Path,
                                                                       tmp_path: Path) -> None:
    """Examples 30 % shorter than the train split's mean: the plan under-spends, so at each promotion the rungs
    ahead are planned again from the tokens left at the rate trained, more go on than first planned, and the
    budget is spent (>= 95 %) instead of a third of it left over (69 % before)."""
    summary, cap, state, planned = _halve_with_examples_scaled(tiny_model, tiny_csv, tmp_path / "s", 0.7)
    spent = sum(r.train_tokens or 0 for r in record.records(summary.study.trials))
    assert 0.95 * cap <= spent <= 1.01 * cap, (spent, cap, state["sizes"])
    assert state["sizes"][1:] != list(planned.sizes[1:])  # more went on than first planned


def _plan_of(sets: list[str], cap: int) -> Any:
    from lmtune.strategies import default_first_rung, plan_halving

    plan = make_plan(load_config(QUICKSTART, sets))
    room = cap * 0.995 / (plan.examples_per_unit * plan.tokens_per_example)
    return plan_halving(plan.max_units, room, first=default_first_rung(plan.train_rows / plan.examples_per_unit),
                        factor=2, most=256)


def test_auto_evaluates_often_enough_for_its_rungs_unless_eval_every_is_set(tiny_model: Path, tiny_csv: Path,
                                                                              tmp_path: Path) -> None:
    """training.eval_every unset: 50 steps of 16 is more than the whole run (24 steps), so every trial would be
    evaluated once, at its end, and halving would have no rung; where the study halves (halving, auto under a
    token budget) it evaluates about 8 times an epoch instead (96 rows: one step of 16, 6 an epoch); other
    strategies, auto without a token budget (TPE + ASHA) and a value the user set keep their grid."""
    base = [*tiny_overrides(tiny_model, tiny_csv, tmp_path / "s"), "training.max_steps=24", "training.eval_every=null"]
    budget = "budget.max_train_tokens=100000"

    def unit(*more: str) -> int:
        return make_plan(load_config(QUICKSTART, [*base, *more])).examples_per_unit

    assert unit("search.strategy=auto", budget) == unit("search.strategy=halving") == 16
    run = 24 * 16  # 50 steps, capped at the run's length
    assert unit("search.strategy=random") == unit("search.strategy=asha", budget) == run
    assert unit("search.strategy=auto") == unit("search.strategy=auto", budget, "search.pruner=asha") == run
    assert unit("search.strategy=auto", budget, "training.eval_every=3") == 48
    assert unit("search.strategy=auto", budget, "training.eval_every=50") == run  # the user's grid, however coarse
    assert unit("search.strategy=halving", "training.batch_size=8", "training.max_steps=48") == 16  # 2 steps of 8


def test_auto_with_eval_every_unset_halves_on_its_own_grid_and_spends_the_budget(tiny_model: Path, tiny_csv: Path,
                                                                                  tmp_path: Path) -> None:
    sets = [*tiny_overrides(tiny_model, tiny_csv, tmp_path / "s"), "training.max_steps=24", "training.eval_every=null",
            "execution.workers=1", "search.strategy=auto"]
    cap = int(2 * _run_tokens(sets))
    summary = Tuner(load_config(QUICKSTART, [*sets, f"budget.max_train_tokens={cap}"]),
                    backend=SimulatedExecutor(workers=1)).run()
    state = json.loads((tmp_path / "s" / STATE_FILE).read_text())
    assert state["rungs"][-1] == 24 and state["sizes"][0] >= 2  # 24 units of one step: rungs within an epoch
    recs = record.records(summary.study.trials)
    assert all(int(p["examples"]) == 16 * int(p["units"]) for r in recs for p in r.curve)
    spent = sum(r.train_tokens or 0 for r in recs)
    assert 0.95 * cap <= spent <= 1.01 * cap, (spent, cap, state)


@pytest.mark.parametrize("more,rungs_only", [((), True), (("budget.max_wall_time=3600",), False),
                                             (("budget.max_cost=10", "budget.prices={cpu: 1.0, cuda: 2.0}"), False),
                                             (("training.eval_every=2",), False)])
def test_trials_are_evaluated_only_at_the_rungs_unless_something_stops_them_at_any_evaluation(
        tiny_model: Path, tiny_csv: Path, tmp_path: Path, more: tuple[str, ...], rungs_only: bool) -> None:
    """On the halving's own grid the trial spec names the rungs (the trainer may skip the rest); a deadline or a
    cost cap stops a trial at an evaluation, so there, as on a grid the user set, every unit is evaluated."""
    import time

    from lmtune.schedulers import HalvingScheduler

    sets = [*tiny_overrides(tiny_model, tiny_csv, tmp_path / "s"), "training.max_steps=24", "training.eval_every=null",
            "search.strategy=halving", "execution.workers=1", *more]
    _, scheduler = Tuner(load_config(QUICKSTART, sets), n_trials=4, backend=SimulatedExecutor(workers=1)).prepare(
        time.time())
    assert isinstance(scheduler, HalvingScheduler)
    scheduler.start()
    launch = scheduler.suggest("cpu", 1)
    assert launch is not None
    assert launch.spec.eval_units == (list(scheduler.halving.rungs) if rungs_only else [])


@pytest.mark.parametrize("more,rungs_only", [((), True), (("training.eval_every=2",), False),
                                             (("budget.max_wall_time=3600",), False)])
def test_autos_asha_on_the_fine_grid_evaluates_only_at_its_rungs(tiny_model: Path, tiny_csv: Path, tmp_path: Path,
                                                                 more: tuple[str, ...], rungs_only: bool) -> None:
    """Where auto does not halve (here a budget for fewer than two configurations through the halving) it runs
    TPE + ASHA on the grid it chose for halving, an eighth of an epoch: ASHA decides only at its rungs, so the spec
    names them and lmtune's trainer skips the evaluations between (they cost time and decide nothing). A grid the
    user set, or a deadline, keeps every evaluation."""
    import time

    from lmtune.schedulers import SearchScheduler
    from lmtune.strategies import asha_rungs

    sets = [*tiny_overrides(tiny_model, tiny_csv, tmp_path / "s"), "training.max_steps=24", "training.eval_every=null",
            "execution.workers=1", "search.strategy=auto"]
    cap = int(1.05 * _run_tokens(sets))
    cfg = load_config(QUICKSTART, [*sets, f"budget.max_train_tokens={cap}", *more])
    _, scheduler = Tuner(cfg, n_trials=4, backend=SimulatedExecutor(workers=1)).prepare(time.time())
    assert isinstance(scheduler, SearchScheduler)  # auto's ASHA, not the halving
    plan = scheduler.plan
    launch = scheduler.suggest("cpu", 1)
    assert launch is not None
    rungs = asha_rungs("asha", max_units=plan.max_units, reduction_factor=cfg.search.factor)
    assert rungs and rungs[-1] < plan.max_units
    assert launch.spec.eval_units == (rungs if rungs_only else [])
    scheduler.abandon([launch.key])


@pytest.mark.parametrize("patience", [None, 2])
def test_autos_asha_stops_a_trial_at_the_rung_past_which_the_cap_would_be_crossed(tiny_model: Path, tiny_csv: Path,
                                                                                 tmp_path: Path,
                                                                                 patience: int | None) -> None:
    """Evaluated only at its rungs, a trial meets the token cap only there: at a rung where one more unit fits
    under the cap but the stretch to its end does not, it is stopped there, not trained past the cap (before:
    the cap counted one unit ahead, as if the trial were evaluated at every unit). Under early stopping the
    trainer evaluates every unit, so there the cap waits for the next one."""
    import time

    import optuna

    from lmtune.protocol import Eval, Stop

    sets = [*tiny_overrides(tiny_model, tiny_csv, tmp_path / "s"), "training.max_steps=24", "training.eval_every=null",
            "execution.workers=1", "search.strategy=auto",
            *([f"training.early_stopping_patience={patience}"] if patience else [])]
    cap = int(1.05 * _run_tokens(sets))
    cfg = load_config(QUICKSTART, [*sets, f"budget.max_train_tokens={cap}"])
    _, scheduler = Tuner(cfg, n_trials=4, backend=SimulatedExecutor(workers=1)).prepare(time.time())
    plan = scheduler.plan
    launch = scheduler.suggest("cpu", 1)
    assert launch is not None and launch.spec.eval_units
    rung = launch.spec.eval_units[0]
    unit = plan.examples_per_unit * plan.tokens_per_example
    assert plan.max_units - rung > 2  # the stretch from the rung to the end is more than two units
    # what other trials spent leaves this one its rung and two more units
    spent = int(cap - (rung + 2) * unit)
    scheduler.study.add_trial(optuna.trial.create_trial(value=0.5, user_attrs={"train_tokens": spent}))
    at_rung = Eval(units=rung, metrics={"eval_loss": 1.0, cfg.study.metric: 0.5}, step=rung,
                   examples=rung * plan.examples_per_unit, tokens=int(rung * unit))
    curve = [{"step": rung, "units": rung, "examples": at_rung.examples, "tokens": at_rung.tokens,
              "metrics": dict(at_rung.metrics)}]
    decision = scheduler.on_eval(launch.key, at_rung, curve)
    assert isinstance(decision, Stop) == (patience is None)
    scheduler.abandon([launch.key])
