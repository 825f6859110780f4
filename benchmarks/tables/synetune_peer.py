"""Syne Tune's schedulers replayed on a recorded table through Syne Tune's own simulator.

Runs in its own virtual environment (Syne Tune pins that lmtune does not share; ``make bench-synetune-venv``
builds it from benchmarks/tables/synetune-requirements.txt) and imports nothing from lmtune: the table is read
with `tables.table` (standard library only) and mapped exactly as for every other arm (`tables.table.Mapper`:
the nearest recorded configuration this search has not trained yet; the multi-objective run of
benchmarks/objectives.py keeps the plain nearest, as its other arms do).

The blackbox: fidelity = evaluation units (8 per epoch for classification, 4 for the LoRA table) of each
configuration's own run; a trial reports its curve up to its own length (``config_objectives`` below), and
its elapsed time is its train tokens, so Syne Tune's ``StoppingCriterion(max_wallclock_time)`` is the token
budget. (In tokens, not thousands: the simulator also advances its clock by the real seconds its scheduler
spends deciding and by the tuner's sleep time, which at one unit per thousand tokens cost ASHA and BOHB 7-19 %
of the budgets on rotten_tomatoes and MOBSTER and DyHPO 18-42 % at 3x there; at one per token, with the
deciding not charged and a finer sleep step, they spend 97-99 %.) The
tokens a search spent are counted from the units each trial reached (`spent_tokens`); results reported after
the budget ran out are dropped (the stopping criterion ends a search at its first result past the budget; every
other arm stops before crossing it). One worker, as every other arm. The selected configuration is the one
Syne Tune's ``best_config()`` picks (the best reported validation value over all results, here those within
the budget); its score is that configuration's final test score in the table.

MOBSTER, Hyper-Tune and DyHPO are not in Syne Tune 0.14 and later; they run from Syne Tune 0.13 in a second
environment (``make bench-synetune013``; ``--schedulers mobster dyhpo`` with its python).

    benchmarks/.venv-synetune/bin/python benchmarks/tables/synetune_peer.py --task rotten_tomatoes \\
        --schedulers asha bohb --budgets 1 2 3 5 10 20 --seeds 100
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parents[1]))

import numpy as np

from tables.table import Table


def config_space(table: Table) -> dict[str, Any]:
    from syne_tune.config_space import choice, loguniform, randint, uniform

    out: dict[str, Any] = {}
    for name, (kind, *v) in table.space.items():
        if kind == "log":
            out[name] = loguniform(v[0], v[1])
        elif kind == "float":
            out[name] = uniform(v[0], v[1])
        elif name == "epochs":
            out[name] = randint(min(v), max(v))
        else:
            out[name] = choice(list(v))
    return out


def make_backend(table: Table, world: int, mapping: Any, *, error: bool = False) -> Any:
    from syne_tune.blackbox_repository.blackbox import Blackbox
    from syne_tune.blackbox_repository.simulated_tabular_backend import UserBlackboxBackend
    from syne_tune.blackbox_repository.utils import metrics_for_configuration

    per_epoch = int(table.meta["evals_per_epoch"])
    per_unit = math.ceil(table.rows / per_epoch)
    longest = max(int(c["epochs"]) for c in table.configs)
    names = [table.metric, "tokens", table.test_metric, *(["error"] if error else [])]

    class TableBlackbox(Blackbox):  # type: ignore[misc]
        def __init__(self) -> None:
            from syne_tune.config_space import randint

            super().__init__(configuration_space=config_space(table),
                             fidelity_space={"units": randint(1, per_epoch * longest)}, objectives_names=names)

        @property
        def fidelity_values(self) -> np.ndarray:
            return np.arange(1, per_epoch * longest + 1)

        def _objective_function(self, configuration: dict[str, Any], fidelity: Any = None,
                                seed: int | None = None) -> Any:
            epochs = int(configuration["epochs"])
            run = table.run(mapping(configuration, float(epochs)), world)
            rows = []
            for u in self.fidelity_values:
                p = run.at(min(int(u) * per_unit, table.rows * epochs))
                rows.append([p.get(table.metric, float("nan")), p.get("tokens", 0.0),
                             run.final.get(table.test_metric, float("nan")),
                             *([1.0 - p.get(table.metric, float("nan"))] if error else [])])
            return np.array(rows)

    class TableBackend(UserBlackboxBackend):  # type: ignore[misc]
        """A trial's results end with its own run: ``epochs`` x units per epoch. The clock is train tokens:
        the real seconds the scheduler spends deciding are not added to it (`_advance_by_outside_time`)."""

        def _advance_by_outside_time(self) -> None:
            pass  # Syne Tune adds the real seconds spent outside the backend (deciding) to the clock

        def config_objectives(self, config: dict[str, Any], seed: int) -> list[dict[str, Any]]:
            last = per_epoch * int(config["epochs"])
            # Syne Tune 0.16 names the fidelity column time_attr, 0.13 resource_attr
            attr = {"time_attr": self.time_attr} if hasattr(self, "time_attr") else \
                {"resource_attr": self.resource_attr}
            return metrics_for_configuration(blackbox=self.blackbox, config=self._filter_config(config),
                                             fidelity_range=(1, last), seed=seed, **attr)

    # the tuner's loop steps the clock by tuner_sleep_time: a twentieth of an evaluation unit's tokens, so a
    # trial starts at most that late after the one before it ended
    step = table.default_tokens(world) / (float(table.meta["default"]["epochs"]) * per_epoch) / 20
    return TableBackend(blackbox=TableBlackbox(), elapsed_time_attr="tokens", seed=0, tuner_sleep_time=step)


# the model-based multi-fidelity schedulers that Syne Tune 0.14 and later no longer ship: run from Syne Tune 0.13
# (benchmarks/tables/synetune013-requirements.txt, make bench-synetune013)
LEGACY = ("mobster", "dyhpo", "hypertune")


def scheduler_for(name: str, table: Table, seed: int) -> Any:
    from syne_tune.optimizer import baselines

    longest = max(int(c["epochs"]) for c in table.configs) * int(table.meta["evals_per_epoch"])
    if name in LEGACY:
        if not hasattr(baselines, "MOBSTER"):
            raise SystemExit(f"{name} is in Syne Tune 0.13, not in this one: run this script with "
                             "benchmarks/.venv-synetune013/bin/python (make bench-synetune013)")
        legacy = {"config_space": config_space(table), "metric": table.metric,
                  "mode": "max" if table.maximize else "min", "random_seed": seed, "resource_attr": "units",
                  "max_t": longest}
        # MOBSTER and Hyper-Tune as their defaults run them (stopping type, rungs by reduction factor 3 from one
        # unit); DyHPO pauses and resumes trials (rungs every 2 units)
        return {"mobster": baselines.MOBSTER, "dyhpo": baselines.DyHPO,
                "hypertune": baselines.HyperTune}[name](**legacy)
    common = {"config_space": config_space(table), "metric": table.metric, "do_minimize": not table.maximize,
              "random_seed": seed}
    if name == "asha":
        return baselines.ASHA(**common, time_attr="units", max_t=longest)
    if name == "bohb":
        return baselines.BOHB(**common, time_attr="units", max_t=longest)
    if name == "random":
        return baselines.RandomSearch(**common)
    raise ValueError(f"unknown scheduler {name}")


def config_of(row: Any) -> dict[str, Any]:
    """The configuration of one row of Syne Tune's results (its ``config_*`` columns)."""
    return {k.removeprefix("config_"): v for k, v in row.items() if str(k).startswith("config_")}


def seed_globals(seed: int) -> None:
    """Seed numpy's and Python's global generators for one search. Syne Tune 0.16's random searcher (ASHA's,
    and BOHB's before its model takes over) samples from numpy's global generator and ignores the scheduler's
    ``random_seed``, so without this a search seed was not reproducible: two runs of the same seeds selected
    different configurations."""
    import random

    import numpy as np

    np.random.seed(seed)
    random.seed(seed)


def run_moasha(table: Table, budget: int, seed: int) -> dict[str, Any]:
    """Syne Tune's MOASHA (random configurations, multi-objective successive halving) on validation error and
    train tokens (both minimized; tokens as a trial reports them, cumulative), for ``benchmarks/objectives.py``:
    the configurations it trained to their own end, which that script scores."""
    from syne_tune import StoppingCriterion, Tuner
    from syne_tune.backend.simulator_backend.simulator_callback import SimulatorCallback
    from syne_tune.experiments import load_experiment
    from syne_tune.optimizer.schedulers.multiobjective.moasha import MOASHA

    world = seed  # world k: each configuration at one of its recorded seeds (tables.table)
    seed_globals(seed)
    tokens = budget * table.default_tokens(world)
    per_epoch = int(table.meta["evals_per_epoch"])
    longest = max(int(c["epochs"]) for c in table.configs) * per_epoch
    t0 = time.perf_counter()
    mapping = table.mapper(distinct=False)
    backend = make_backend(table, world, mapping, error=True)
    scheduler = MOASHA(config_space=config_space(table), metrics=["error", "tokens"], do_minimize=True,
                       time_attr="units", max_t=longest, grace_period=1, reduction_factor=3, random_seed=seed)
    tuner = Tuner(trial_backend=backend, scheduler=scheduler,
                  stop_criterion=StoppingCriterion(max_wallclock_time=tokens), n_workers=1, sleep_time=0,
                  callbacks=[SimulatorCallback()], tuner_name=f"st-moasha-{seed}", save_tuner=False,
                  suffix_tuner_name=True, print_update_interval=10**9)
    tuner.run()
    result = load_experiment(tuner.name)
    df = result.results
    completed = []
    for _trial, rows in df.groupby("trial_id"):
        config = config_of(rows.iloc[0])
        if int(rows["units"].max()) >= per_epoch * int(config["epochs"]):
            completed.append(mapping(config, float(config["epochs"])))
    spent = spent_tokens(table, world, mapping, df)
    trials = int(df["trial_id"].nunique())
    shutil.rmtree(result.path, ignore_errors=True)
    return {"seed": seed, "world": world, "completed": completed, "spent": spent / tokens, "trials": trials,
            "pruned": trials - len(completed), "seconds": time.perf_counter() - t0}


def spent_tokens(table: Table, world: int, mapping: Any, df: Any) -> float:
    """The train tokens of a search: each trial's run up to the furthest unit it reported. (Its reported
    ``tokens`` will not do for a trial that paused and resumed: the simulator counts its time from the
    pause.)"""
    per_unit = math.ceil(table.rows / int(table.meta["evals_per_epoch"]))
    total = 0.0
    for _trial, rows in df.groupby("trial_id"):
        config = config_of(rows.iloc[0])
        epochs = int(config["epochs"])
        run = table.run(mapping(config, float(epochs)), world)
        total += float(run.at(min(int(rows["units"].max()) * per_unit, table.rows * epochs)).get("tokens", 0.0))
    return total


def run_one(table: Table, name: str, budget: int, seed: int) -> dict[str, Any]:
    from syne_tune import StoppingCriterion, Tuner
    from syne_tune.backend.simulator_backend.simulator_callback import SimulatorCallback

    world = seed  # world k: each configuration at one of its recorded seeds (tables.table)
    seed_globals(seed)
    tokens = budget * table.default_tokens(world)
    t0 = time.perf_counter()
    mapping = table.mapper()
    tuner = Tuner(trial_backend=make_backend(table, world, mapping), scheduler=scheduler_for(name, table, seed),
                  stop_criterion=StoppingCriterion(max_wallclock_time=tokens), n_workers=1, sleep_time=0,
                  callbacks=[SimulatorCallback()], tuner_name=f"st-{name}-{seed}", save_tuner=False,
                  suffix_tuner_name=True, print_update_interval=10**9)
    tuner.run()
    from syne_tune.experiments import load_experiment

    result = load_experiment(tuner.name)
    shutil.rmtree(result.path, ignore_errors=True)
    # what was reported by the end of the budget: the stopping criterion ends the search at the first result
    # past it, and every other arm stops before crossing the budget (the HF peer at its last report within it)
    df = result.results[result.results["st_tuner_time"] <= tokens]
    if df.empty:  # not one evaluation within the budget: the user keeps the default settings
        selected = table.default_id()
    else:
        row = df.loc[df[table.metric].idxmax() if table.maximize else df[table.metric].idxmin()]
        best = config_of(row)
        selected = mapping(best, float(best["epochs"]))
    spent = spent_tokens(table, world, mapping, df)
    test = table.test_score(selected, world)
    return {"seed": seed, "world": world, "selected": selected, "test": test, "regret": table.regret(test, world),
            "spent": spent / tokens, "trials": int(df["trial_id"].nunique()),
            "seconds": time.perf_counter() - t0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", required=True)
    ap.add_argument("--schedulers", nargs="+", default=["asha", "bohb"])
    ap.add_argument("--budgets", nargs="+", type=int, default=[1, 2, 3, 5, 10, 20])
    ap.add_argument("--seeds", type=int, default=100)
    ap.add_argument("--tables", type=Path, default=Path(__file__).parent)
    ap.add_argument("--out", type=Path, default=Path("docs/benchmarks/search-replay"))
    ap.add_argument("--moasha", action="store_true", help="MOASHA cells for benchmarks/objectives.py (--out "
                    "docs/benchmarks/objectives)")
    args = ap.parse_args()
    logging.getLogger("syne_tune").setLevel(logging.WARNING)
    os.environ.setdefault("SYNETUNE_FOLDER", "/tmp/lmtune-synetune")  # its per-run result folders, removed after
    table = Table(args.tables / args.task)
    if args.moasha:
        (args.out / "cells").mkdir(parents=True, exist_ok=True)
        for budget in args.budgets:
            path = args.out / "cells" / f"{args.task}-{budget}x-synetune_moasha.json"
            rows = [run_moasha(table, budget, s) for s in range(args.seeds)]
            path.write_text(json.dumps({"arm": "synetune_moasha", "budget": budget,
                                        "configurations": len(table.ids), "rows": rows}))
            print(f"{args.task} {budget}x synetune_moasha: {statistics.mean(r['trials'] for r in rows):.1f} trials",
                  flush=True)
        return
    (args.out / "cells").mkdir(parents=True, exist_ok=True)
    for budget in args.budgets:
        for name in args.schedulers:
            path = args.out / "cells" / f"{args.task}-{budget}x-synetune_{name}.json"
            if path.exists():
                continue
            rows = [run_one(table, name, budget, s) for s in range(args.seeds)]
            path.write_text(json.dumps({"arm": f"synetune_{name}", "budget": budget, "rows": rows}))
            print(f"{args.task} {budget}x synetune_{name}: regret {statistics.mean(r['regret'] for r in rows):.4f}",
                  flush=True)


if __name__ == "__main__":
    main()
