"""`budget.max_train_tokens` is a cap: a running trial stops when the next evaluation interval would
cross it, and no trial starts that the tokens left could not train to its end (the cap would stop it
part-way, and a trial stopped part-way is never selected)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import optuna
import pytest

from conftest import run_lmtune, set_args, tiny_overrides
from lmtune.config.schema import BudgetSection
from lmtune.schedulers.search import units_ahead
from lmtune.tuner.budget import Budget

ROOT = Path(__file__).parents[2]
QUICKSTART = str(ROOT / "examples" / "quickstart.yaml")


@pytest.mark.slow
def test_no_trial_starts_that_the_token_budget_cannot_finish(tiny_model: Path, tiny_csv: Path,
                                                             tmp_path: Path) -> None:
    d = tmp_path / "cap"
    # 6 steps of 16 rows per trial, an evaluation every 3 steps; first learn one whole trial's tokens
    # (a space without batch_size or length: every trial trains the same 96 examples)
    first = run_lmtune("tune", QUICKSTART, *set_args(tiny_overrides(tiny_model, tiny_csv, d)), "--n-trials", "1")
    assert first.returncode == 0, first.stderr
    study = optuna.load_study(study_name=None, storage=f"sqlite:///{d / 'study.db'}")
    per_trial = study.trials[0].user_attrs["train_tokens"]
    # 2.6 trials' tokens: the second trial fits; a third would be cut half-way by the cap (before, it was
    # started and stopped at its first evaluation: 0.5 trial of tokens for nothing), so it never starts
    cap = int(2.6 * per_trial)
    over = [*tiny_overrides(tiny_model, tiny_csv, d), "search.strategy=random",
            "search.space={weight_decay: {type: float, low: 0.0, high: 0.1}}", f"budget.max_train_tokens={cap}"]
    out = run_lmtune("tune", QUICKSTART, *set_args(over), "--n-trials", "6")
    assert out.returncode == 0, out.stderr
    trials = optuna.load_study(study_name=None, storage=f"sqlite:///{d / 'study.db'}").trials
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]  # nothing launched that could not finish
    assert sum(t.user_attrs["train_tokens"] for t in trials) == 2 * per_trial <= cap
    assert "cannot train another trial to its end" in out.stdout + out.stderr


def test_a_running_trial_stops_at_the_evaluation_before_the_cap() -> None:
    """Running trials (parallel ones, or longer batches than the mean) still meet the cap mid-way."""
    study = optuna.create_study()
    study.add_trial(optuna.trial.create_trial(value=0.5, user_attrs={"train_tokens": 400}))
    budget = Budget(BudgetSection(max_train_tokens=1000), max_failures=3, t0=time.monotonic(), unit_tokens=100)
    assert not budget.running_at(study, 1, 300)  # 400 + 300 + the next interval 100 <= 1000
    assert not budget.running_at(study, 2, 200)  # a parallel trial: 400 + 300 + 200 + 100 = 1000
    assert budget.running_at(study, 1, 350)      # 400 + 350 + 200 + 100 > 1000: stop trial 1 now
    budget.ended(1)
    assert budget.reason(study, failures=0) == ""  # 400 + 200 + 100 <= 1000 (trial 1's record not counted here)


def test_a_trial_evaluated_only_at_rungs_stops_where_the_stretch_to_its_next_rung_would_cross_the_cap() -> None:
    """Evaluated only at the rungs (`TrialSpec.eval_units`), a trial meets the cap only there: at rung 1 with the
    next at 3, two units must fit, not one, or it trains past the cap before anything can stop it."""
    study = optuna.create_study()
    study.add_trial(optuna.trial.create_trial(value=0.5, user_attrs={"train_tokens": 700}))
    budget = Budget(BudgetSection(max_train_tokens=1000), max_failures=3, t0=time.monotonic(), unit_tokens=100)
    assert not budget.running_at(study, 1, 100, units_ahead=1)  # 700 + 100 + 100 <= 1000
    assert not budget.running_at(study, 1, 100, units_ahead=2)  # 700 + 100 + 200 = 1000
    assert budget.running_at(study, 1, 100, units_ahead=3)      # 700 + 100 + 300 > 1000: stop at this rung
    assert "max_train_tokens 1000 reached" in budget.why[1]


def test_the_budget_is_asked_about_the_stretch_to_a_trials_next_rung() -> None:
    rungs = [8]  # ASHA's one rung of a 3-epoch run on an eighth-epoch grid
    assert [units_ahead(rungs, u, 24) for u in (0, 7, 8, 9)] == [8, 1, 16, 15]  # to the rung, then to the end
    assert [units_ahead([], u, 24) for u in (0, 8)] == [1, 1]  # every unit evaluated


def test_a_trial_planned_to_end_at_the_cap_is_not_stopped_before_its_last_shorter_interval() -> None:
    """A default run at a budget of exactly one default run: 3,000 examples in units of 192, so its last
    interval is 120 examples. Counting a whole unit there stopped it one evaluation before its end."""
    study = optuna.create_study()
    per_example = 27.0
    budget = Budget(BudgetSection(max_train_tokens=int(3000 * per_example)), max_failures=3, t0=time.monotonic(),
                    unit_tokens=192 * per_example)
    budget.started(0, device="cpu", devices=1, examples=3000, at=time.monotonic())
    at = 15 * 192  # 2,880 examples: 120 left
    assert not budget.running_at(study, 0, int(at * per_example), at, 192, 15)
    # another trial planned longer is stopped there: its next whole unit would cross the cap
    budget.ended(0)
    budget.started(1, device="cpu", devices=1, examples=6000, at=time.monotonic())
    assert budget.running_at(study, 1, int(at * per_example), at, 192, 15)


def test_a_trial_starts_only_when_the_tokens_left_can_train_it_to_its_end() -> None:
    study = optuna.create_study()
    study.add_trial(optuna.trial.create_trial(value=0.5, user_attrs={"train_tokens": 600}))
    budget = Budget(BudgetSection(max_train_tokens=1000), max_failures=3, t0=time.monotonic(), unit_tokens=100)
    # 100 tokens per 10-example interval: a 40-example trial needs ~400 tokens, 400 are left
    assert budget.launch_reason(study, 40, 10) == ""
    reason = budget.launch_reason(study, 50, 10)  # ~500 needed
    assert reason.startswith("budget: max_train_tokens 1000 reached") and "400 tokens left" in reason
    budget.running_at(study, 7, 100)  # a running trial's tokens so far count as spent
    assert budget.launch_reason(study, 40, 10) != ""
    # no cap, or no tokens per example known yet (a script study before its first report): no launch rule
    assert Budget(BudgetSection(), max_failures=3, t0=0.0, unit_tokens=100).launch_reason(study, 10**9, 10) == ""
    assert Budget(BudgetSection(max_train_tokens=1), max_failures=3, t0=0.0).launch_reason(study, 10**9, 10) == ""


@pytest.mark.slow
def test_the_launch_rule_plans_the_next_trial_at_its_own_length(tiny_model: Path, tiny_csv: Path,
                                                                tmp_path: Path) -> None:
    """auto plans every drawn trial at the longest length (3 epochs) while the budget left can train it, then at
    what the budget left can train (it is spent, not left because the next trial is too long); random may still
    draw a 1-epoch trial, so it starts one while a 1-epoch trial fits."""
    def run(strategy: str, cap: int | None, n: int) -> list[optuna.trial.FrozenTrial]:
        d = tmp_path / f"{strategy}-{cap}"
        over = [*tiny_overrides(tiny_model, tiny_csv, d), "training.max_steps=null", "training.epochs=1",
                f"search.strategy={strategy}", "search.include_default=false",
                "search.space={epochs: {type: int, low: 1, high: 3}}",
                # auto as TPE + ASHA: an explicit pruner keeps it there under a token budget (without one it
                # runs successive halving, tests/tuner/test_halving.py)
                *(["search.pruner=asha"] if strategy == "auto" else []),
                *([f"budget.max_train_tokens={cap}"] if cap else [])]
        out = run_lmtune("tune", QUICKSTART, *set_args(over), "--n-trials", str(n))
        assert out.returncode == 0, out.stderr
        return optuna.load_study(study_name=None, storage=f"sqlite:///{d / 'study.db'}").trials

    three = run("auto", None, 1)[0].user_attrs["train_tokens"]  # auto's trial: the longest, 3 epochs
    auto = run("auto", int(1.5 * three), 6)
    # a second 3-epoch trial could not finish: the 1.5 epochs left train a trial of ~1.47 epochs, to its end (the
    # sampler sees the longest whole length that fits, 1)
    assert [t.state.name for t in auto] == ["COMPLETE", "COMPLETE"]
    assert [t.params["epochs"] for t in auto] == [3, 1]
    assert 1.4 < auto[1].user_attrs["config"]["epochs"] < 1.5
    spent = sum(t.user_attrs["train_tokens"] for t in auto)
    assert 0.95 * 1.5 * three <= spent <= 1.5 * three * 1.01  # nearly all of the 4.5 epochs the cap holds
    rand = run("random", int(1.5 * three), 6)
    assert len(rand) >= 2  # its next draw may be 1 epoch (a third of the tokens), so it may start
    # within the cap up to the estimate's slack (the README: tokens per trial are estimated from the mean tokens
    # per example, so a study may end slightly above the cap when its last batches are longer than the mean;
    # 7 tokens = 0.15 % here once the batch windows changed)
    assert sum(t.user_attrs["train_tokens"] for t in rand) <= 1.5 * three * 1.01


def test_the_first_stop_reason_keeps_its_kind() -> None:
    """The CLI's exit code and the proxy stages read the kind, not the words: failures first, then a cap."""
    from lmtune.tuner.budget import StopKind

    study = optuna.create_study()
    budget = Budget(BudgetSection(max_trials=1), max_failures=2, t0=time.monotonic())
    assert budget.reason(study, failures=0) == "" and budget.stopped is None
    assert budget.reason(study, failures=2).startswith("stopped: 2 trials failed")
    assert budget.stopped is StopKind.FAILURES
    study.ask()
    assert budget.reason(study, failures=0) == "budget: max_trials 1 reached"
    assert budget.stopped is StopKind.FAILURES  # the first reason given is the run's
    assert StopKind.FAILURES.failed and StopKind.STAGE.failed and not StopKind.BUDGET.failed
    capped = Budget(BudgetSection(max_train_tokens=100), max_failures=2, t0=time.monotonic(), unit_tokens=50)
    assert capped.launch_reason(study, 1000, 10).startswith("budget: max_train_tokens")  # a launch refused
    assert capped.stopped is StopKind.BUDGET


@pytest.mark.parametrize("left", [1.5, 0.95, 0.5])
def test_autos_last_trial_is_planned_from_the_tokens_left(left: float, tiny_model: Path, tiny_csv: Path,
                                                           tmp_path: Path) -> None:
    """After a 3-epoch trial, a budget of 3 + ``left`` epochs: the last trial is planned at what is left (less a
    2 % margin) and completes, so it can be selected and the budget is spent; the sampler sees the longest
    whole length that fits (else the shortest). Less than 90 % of the shortest length left: none starts, and
    the stop reason says how many tokens were left."""
    from lmtune.config import load_config
    from lmtune.execution.simulated import SimulatedExecutor
    from lmtune.study.record import read
    from lmtune.tuner.budget import RunSummary
    from lmtune.tuner.search import Tuner

    def run(cap: int | None, d: Path) -> RunSummary:
        over = [*tiny_overrides(tiny_model, tiny_csv, d), "training.max_steps=null", "training.epochs=1",
                # auto as TPE + ASHA (an explicit pruner keeps it there under a token budget; without one it runs
                # successive halving, tests/tuner/test_halving.py)
                "search.strategy=auto", "search.pruner=asha", "search.include_default=false",
                "search.space={epochs: {type: int, low: 1, high: 3}, learning_rate: {type: float, low: 1e-5, "
                "high: 1e-2, log: true}}", *([f"budget.max_train_tokens={cap}"] if cap else [])]
        return Tuner(load_config(QUICKSTART, over), n_trials=8 if cap else 1,
                     backend=SimulatedExecutor(workers=1)).run()

    three = read(run(None, tmp_path / "one").study.trials[0]).train_tokens or 0
    cap = int((3 + left) / 3 * three)
    summary = run(cap, tmp_path / "capped")
    trials = [read(t) for t in summary.study.trials]
    assert trials[0].config["epochs"] == 3 and trials[0].state == "COMPLETE"
    spent = sum(t.train_tokens or 0 for t in trials)
    if left < 0.9:
        assert len(trials) == 1 and "cannot train another trial to its end" in summary.stop_reason
        assert "down to 90% of the shortest length" in summary.stop_reason  # why no shorter last trial ran
        import re

        cited = int(re.search(r"\(~(\d+) tokens\)", summary.stop_reason).group(1))  # type: ignore[union-attr]
        assert cited == pytest.approx(three / 3, rel=0.05)  # the shortest trial it refused, not a 3-epoch one
        return
    last = trials[-1]
    assert len(trials) == 2 and last.state == "COMPLETE" and last.value is not None
    assert last.params["epochs"] == 1  # what the sampler sees: the longest whole length that fits, else the shortest
    assert last.config["epochs"] == pytest.approx(left * 0.98, abs=0.02)  # trained at what was left
    assert 0.97 * cap <= spent <= cap * 1.01


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_sampled_length_is_planned_from_the_tokens_left_once_the_longest_no_longer_fits(
        seed: int, tiny_model: Path, tiny_csv: Path, tmp_path: Path) -> None:
    """random draws the length (1-3 epochs) while a 3-epoch trial fits the tokens left; after that the next
    trial's length is planned from them, so no trial is cut part-way by the cap and the budget is spent."""
    from lmtune.config import load_config
    from lmtune.execution.simulated import SimulatedExecutor
    from lmtune.study.record import read
    from lmtune.tuner.search import Tuner

    def run(cap: int | None, d: Path, epochs: str) -> list[Any]:
        over = [*tiny_overrides(tiny_model, tiny_csv, d), "training.max_steps=null", f"training.epochs={epochs}",
                f"study.seed={seed}", "search.strategy=random", "search.include_default=false",
                "search.space={epochs: {type: int, low: 1, high: 3}, learning_rate: {type: float, low: 1e-5, "
                "high: 1e-2, log: true}}" if cap else "search.space={learning_rate: {type: float, low: 1e-5, "
                "high: 1e-2, log: true}}", *([f"budget.max_train_tokens={cap}"] if cap else [])]
        summary = Tuner(load_config(QUICKSTART, over), n_trials=30 if cap else 1,
                        backend=SimulatedExecutor(workers=1)).run()
        return [read(t) for t in summary.study.trials]

    one = run(None, tmp_path / "one", "1")[0].train_tokens or 0  # one epoch
    cap = int(5.5 * one)
    trials = run(cap, tmp_path / "capped", "1")
    assert all(t.state == "COMPLETE" for t in trials), [(t.state, t.config["epochs"]) for t in trials]
    assert 0.97 * cap <= sum(t.train_tokens or 0 for t in trials) <= 1.01 * cap
