"""Cost budgets (`lmtune.tuner.cost`): a trial costs its wall time x devices x the price of its device kind; a
trial starts only if its predicted cost fits, a running one stops at the evaluation before the cap, so a study
of trials of varying speed ends at or under its cap; `lmtune status` shows spent against the cap."""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import optuna
import pytest

from conftest import run_lmtune, tiny_overrides
from lmtune.config import BudgetSection, load_config
from lmtune.errors import ConfigError
from lmtune.execution.simtrainer import simulate
from lmtune.execution.simulated import SimulatedExecutor
from lmtune.study import record
from lmtune.tuner import Tuner
from lmtune.tuner.budget import COST_MARGIN
from lmtune.tuner.cost import CostMeter, device_kind

QUICKSTART = str(Path(__file__).parents[2] / "examples" / "quickstart.yaml")


def test_a_money_cap_needs_a_price_for_every_device_the_study_may_use(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"budget\.max_cost: set budget\.prices for cpu, cuda"):
        load_config(QUICKSTART, [f"study.dir={tmp_path}", "budget.max_cost=10"])
    load_config(QUICKSTART, [f"study.dir={tmp_path}", "budget.max_cost=10", "execution.device=cpu",
                             "budget.prices={cpu: 0.05}"])


def test_a_launch_is_refused_when_its_predicted_cost_does_not_fit() -> None:
    meter = CostMeter(BudgetSection(max_cost=10.0, prices={"cpu": 3600.0}))  # 1 per device-second
    study = optuna.create_study()
    assert meter.launch_reason(study, device="cpu", devices=1, examples=100) == ""  # nothing measured yet
    meter.started(0, device="cpu", devices=1, examples=100, at=time.monotonic() - 4.0)  # ran 4 s for 100
    meter.ended(0, examples=100)
    t = study.ask()
    record.write(t, wall_time_s=4.0, device="cpu", devices=1)
    study.tell(t, 1.0)
    assert meter.spent(study).cost == pytest.approx(4.0)
    assert meter.launch_reason(study, device="cpu", devices=1, examples=100) == ""  # 4 + 4 <= 10
    assert "max_cost 10 reached" in meter.launch_reason(study, device="cpu", devices=2, examples=100)  # 4 + 8
    assert device_kind("cuda:1") == "cuda" and CostMeter(BudgetSection(max_gpu_hours=1.0))._per_second(
        "cpu", 4).gpu_hours == 0.0  # a CPU trial spends no GPU-hours


def test_the_room_left_under_a_cost_cap_is_counted_in_examples_at_the_measured_speed() -> None:
    meter = CostMeter(BudgetSection(max_cost=10.0, prices={"cpu": 3600.0}))  # 1 per device-second
    study = optuna.create_study()
    assert meter.examples_left(study, device="cpu", devices=1) is None  # nothing measured yet
    meter.started(0, device="cpu", devices=1, examples=100, at=time.monotonic() - 4.0)  # 0.04 s per example
    meter.ended(0, examples=100)
    t = study.ask()
    record.write(t, wall_time_s=4.0, device="cpu", devices=1)
    study.tell(t, 1.0)
    assert meter.examples_left(study, device="cpu", devices=1) == pytest.approx(150, rel=0.01)  # 6 left / 0.04
    assert meter.examples_left(study, device="cpu", devices=2) == pytest.approx(75, rel=0.01)  # twice the rate
    assert CostMeter(BudgetSection(max_train_tokens=5)).examples_left(study, device="cpu", devices=1) is None


def test_autos_last_trial_is_planned_from_the_cost_left(tiny_model: Path, tiny_csv: Path, tmp_path: Path) -> None:
    """Under a cost cap, once a trial at the longest length no longer fits, auto plans its last one at what the
    cost left buys at the measured speed (less 5 %), and that trial completes, so it can be selected."""
    sets = [*tiny_overrides(tiny_model, tiny_csv, tmp_path / "s"), "training.max_steps=null", "training.epochs=1",
            "search.strategy=auto", "search.include_default=false", "execution.workers=1", "execution.device=cpu",
            "search.space={epochs: {type: int, low: 1, high: 3}, learning_rate: {type: float, low: 1e-5, "
            "high: 1e-2, log: true}}", "budget.max_cost=5", "budget.prices={cpu: 3600}"]
    # a 3-epoch trial here: 6 evaluation units of 0.5 s, ~3 device-seconds; 5 leave ~2 for a second. Units of
    # 0.5 s, not 0.15: the loop's own time per evaluation is real time too, and on a loaded machine it made the
    # first trial cost nearly the whole cap
    summary = Tuner(load_config(QUICKSTART, sets), n_trials=8, backend=SimulatedExecutor(workers=1, unit_s=0.5)).run()
    recs = record.records(summary.study.trials)
    assert recs[0].config["epochs"] == 3 and recs[0].state == "COMPLETE"
    assert len(recs) == 2, [(r.state, r.config.get("epochs"), r.stop_reason) for r in recs]
    assert summary.stop_reason.startswith("budget: max_cost")  # and it says why no shorter third trial ran:
    assert "down to 90% of the shortest length" in summary.stop_reason
    last = recs[1]
    assert last.state == "COMPLETE" and last.value is not None, (last.state, last.stop_reason)
    # planned from what the cost left buys at the first trial's speed (less the margins): ~1.9 epochs on an idle
    # machine; a loaded one measures a slower first trial and leaves less. A length of whole epochs that is
    # (about) what is left is trained as it is, so the check is the plan, not a fraction
    first_s, first_epochs = recs[0].wall_time_s or 0.0, 3
    buys = (5 - first_s) / (first_s / first_epochs) * (1 - COST_MARGIN)
    assert 0.9 <= last.config["epochs"] < 3, last.config
    assert last.config["epochs"] == pytest.approx(min(buys, 3), rel=0.15), (last.config, first_s, buys)
    spent = sum(r.wall_time_s or 0 for r in recs)
    assert 0.75 * 5 <= spent <= 5 * 1.05


def _varying(spec: dict[str, Any], emit: Any, receive: Any, *, unit_s: float, sleep: Any) -> int:
    rng = random.Random(spec["trial"])
    factor = rng.choice([0.5, 1.0, 2.0])  # trials of varying speed, and every interval +-30 %
    return simulate(spec, emit, receive, unit_s=unit_s * factor, sleep=lambda s: sleep(s * rng.uniform(0.7, 1.3)))


@pytest.mark.slow
def test_a_study_of_trials_of_varying_speed_ends_at_or_under_its_cost_cap(tiny_model: Path, tiny_csv: Path,
                                                                         tmp_path: Path) -> None:
    # device-seconds (price 3600 per device-hour): about 4 trials' worth at this speed. Evaluation intervals of
    # 0.5 s, not 0.2: the loop's own overhead per evaluation (process scheduling, the trainer's messages) is
    # real time too, and on a loaded machine it put 0.2 s intervals 10 % over the cap
    cap = 15.0
    cfg = load_config(QUICKSTART, [*tiny_overrides(tiny_model, tiny_csv, tmp_path / "s"), "training.max_steps=24",
                                   "training.eval_every=3", "search.strategy=random", "execution.workers=2",
                                   "execution.device=cpu", f"budget.max_cost={cap}", "budget.prices={cpu: 3600}"])
    summary = Tuner(cfg, n_trials=30, backend=SimulatedExecutor(workers=2, unit_s=0.5, trainer=_varying)).run()
    recs = record.records(summary.study.trials)
    spent = sum((r.wall_time_s or 0) * (r.devices or 1) for r in recs)
    assert summary.stop_reason.startswith("budget: max_cost") and len(recs) < 30
    assert spent <= cap * 1.05, (spent, cap)
    assert spent >= cap * 0.5  # it spent the budget, not a small part of it
    assert all(r.device == "cpu" and r.devices == 1 for r in recs)
    shown = run_lmtune("status", str(tmp_path / "s"))
    assert f"cost: cost {spent:.4g} of cap 15" in shown.stdout, shown.stdout[-1500:]
    from lmtune.report import write_report

    _, md = write_report(tmp_path / "s")
    assert f"Search budget spent: cost {spent:.4g} of cap 15" in md.read_text()


class _OnGpus(SimulatedExecutor):
    """The simulated backend, its slots named as GPUs (device-hours of a GPU kind count as GPU-hours)."""

    def device_for(self, slot: int) -> str:
        return f"cuda:{slot}"


def test_a_gpu_hour_cap_stops_a_study_on_gpus_and_not_one_on_cpus(tiny_model: Path, tiny_csv: Path,
                                                                   tmp_path: Path) -> None:
    cap_s = 6.0  # GPU-seconds: trials of a second or two, so the bookkeeping around each (ms) is small beside it
    sets = [*tiny_overrides(tiny_model, tiny_csv, tmp_path / "gpu"), "training.max_steps=24", "training.eval_every=3",
            "search.strategy=random", "execution.workers=2", f"budget.max_gpu_hours={cap_s / 3600}"]
    on_gpus = Tuner(load_config(QUICKSTART, sets), n_trials=30,
                    backend=_OnGpus(workers=2, unit_s=0.2, trainer=_varying)).run()
    recs = record.records(on_gpus.study.trials)
    assert on_gpus.stop_reason.startswith("budget: max_gpu_hours") and len(recs) < 30
    assert sum(r.wall_time_s or 0 for r in recs) <= cap_s * 1.05
    assert {r.device for r in recs} <= {"cuda:0", "cuda:1"}
    sets[0] = f"study.dir={tmp_path / 'cpu'}"
    on_cpus = Tuner(load_config(QUICKSTART, sets), n_trials=4,  # CPU trials spend no GPU-hours: the cap never binds
                    backend=SimulatedExecutor(workers=2, unit_s=0.05, trainer=_varying)).run()
    assert on_cpus.stop_reason == "n_trials reached"
