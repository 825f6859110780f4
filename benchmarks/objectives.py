"""Several objectives at equal budget: the hypervolume each search's Pareto front reaches on a recorded table.

The problem: validation accuracy (maximize) against train tokens (minimize), the score against the training
cost, over the table's space (learning rate, batch size, epochs, weight decay, warm-up; `tables.record`). Every
arm searches the same table (`tables.table.Table`, configurations mapped with ``Table.nearest`` as in the
search replay) under the same budget in train tokens (``--budgets``: multiples of one default training run),
one trial at a time:

- ``lmtune_auto``: ``study.objectives: [eval_accuracy, train_tokens]``, strategy auto (multi-objective TPE +
  multi-objective successive halving; with a training cost as an objective auto does not pin the length),
  through lmtune's own loop and the table trainer (`tables.arms.lmtune_arm`);
- ``lmtune_asha``: the same with strategy asha (random configurations + the multi-objective halving);
- ``optuna_nsga2``: Optuna's NSGAIISampler, every trial trained to its end (no pruning: Optuna cannot prune a
  multi-objective study), as an Optuna user writes it; trials until the next would pass the budget;
- ``synetune_moasha``: Syne Tune's MOASHA through its own simulator (``benchmarks/tables/synetune_peer.py
  --moasha``, in its own environment; its cells are read from ``--out``/cells).

What a search finds: its Pareto front over the trials it trained to their end (their validation accuracy and
train tokens). Its score: the hypervolume of those configurations' **test** accuracy and train tokens, divided by
the hypervolume of the table's own test front (every recorded configuration of that seed): 1.0 = as good a
front as the table holds. Reference point: the worst test accuracy and the most train tokens of any recorded
configuration of that seed. Mean with a 95 % t interval over the search seeds; search seed k replays the
table's recorded seed k mod 2, so arms are paired by seed.

    .venv/bin/python benchmarks/objectives.py --task rotten_tomatoes --seeds 20
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from tables import arms
from tables.replay import interval
from tables.table import Table
from tables.tasks import table_task

from lmtune.pareto import fronts, hypervolume, oriented

OBJECTIVES = ("eval_accuracy", "train_tokens")
DIRECTIONS = ("maximize", "minimize")
LMTUNE_ARMS = {"lmtune_auto": "auto", "lmtune_asha": "asha"}


def points(table: Table, configs: list[int], world: int, *, test: bool) -> list[tuple[float, ...]]:
    """(accuracy, train tokens) of ``configs``' full runs in ``world``, lower-is-better."""
    out = []
    for c in configs:
        run = table.run(c, world)
        acc = table.test_score(c, world) if test else run.final[table.metric]
        out.append(oriented([acc, run.final.get("tokens", 0.0)], DIRECTIONS))
    return out


def ratio(table: Table, configs: list[int], world: int, *, test: bool) -> float:
    """The hypervolume of ``configs`` over that of every recorded configuration of ``world`` (test or validation
    accuracy, and train tokens), from the worst accuracy and the most tokens of any recorded configuration."""
    every = points(table, list(table.ids), world, test=test)
    ref = (max(p[0] for p in every), max(p[1] for p in every))
    whole = hypervolume(every, ref)
    return hypervolume(points(table, configs, world, test=test), ref) / whole if whole else 0.0


def score(table: Table, completed: list[int], world: int) -> dict[str, float]:
    """The hypervolume ratio of a search's validation front, measured on test (and on validation)."""
    configs = sorted(set(completed))
    if not configs:
        return {"hv_test": 0.0, "hv_validation": 0.0, "front": 0}
    front = [configs[i] for i in fronts(points(table, configs, world, test=False))[0]]
    return {"hv_test": ratio(table, front, world, test=True), "hv_validation": ratio(table, front, world, test=False),
            "front": len(front)}


def nsga2(table: Table, world: int, budget: int, seed: int) -> tuple[list[int], int, int]:
    """Optuna's NSGA-II, no pruning: (completed configurations, tokens spent, trials)."""
    import optuna

    study = optuna.create_study(directions=list(DIRECTIONS), sampler=optuna.samplers.NSGAIISampler(seed=seed))
    spent, done = 0, []
    while True:
        trial = study.ask()
        hp = arms._suggest(trial, table)
        config = table.nearest(hp, float(hp["epochs"]))
        run = table.run(config, world)
        cost = int(run.final.get("tokens", 0))
        if spent + cost > budget:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            break
        spent += cost
        done.append(config)
        study.tell(trial, [run.final[table.metric], cost])
    return done, spent, len(done)


def run_arm(table: Table, arm: str, budget_x: int, seed: int, data: Path, work: Path) -> dict[str, Any]:
    world = seed  # world k: each configuration at one of its recorded seeds (tables.table)
    budget = budget_x * table.default_tokens(world)
    t0 = time.perf_counter()
    if arm == "optuna_nsga2":
        completed, spent, trials = nsga2(table, world, budget, seed)
        pruned = 0
    else:
        sets = ["study.objectives=[{metric: eval_accuracy, direction: maximize}, "
                "{metric: train_tokens, direction: minimize}]"]
        r = arms.lmtune_arm(table, world, LMTUNE_ARMS[arm], budget, seed, data, work, more=sets, distinct=False)
        completed, spent, trials, pruned = r.extra["completed"], r.spent_tokens, r.trials, r.pruned
    return {"seed": seed, "world": world, "completed": completed, "spent": spent / budget, "trials": trials,
            "pruned": pruned, "seconds": time.perf_counter() - t0, **score(table, completed, world)}



def summarize(cells: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    ref = next((c for c in cells if c["arm"] == "lmtune_auto"), None)
    for c in cells:
        hv = [r["hv_test"] for r in c["rows"]]
        m, lo, hi = interval(hv)
        out[c["arm"]] = {"seeds": len(hv), "hv_test_mean": m, "hv_test_ci95": [lo, hi],
                         "hv_validation_mean": statistics.mean(r["hv_validation"] for r in c["rows"]),
                         "front_mean": statistics.mean(r["front"] for r in c["rows"]),
                         "trials_mean": statistics.mean(r["trials"] for r in c["rows"]),
                         "pruned_mean": statistics.mean(r.get("pruned", 0) for r in c["rows"]),
                         "budget_spent": statistics.mean(r["spent"] for r in c["rows"]),
                         "seconds_per_search": statistics.mean(r["seconds"] for r in c["rows"])}
        if ref is not None and c is not ref:
            mine = {r["seed"]: r["hv_test"] for r in ref["rows"]}
            d = [mine[r["seed"]] - r["hv_test"] for r in c["rows"] if r["seed"] in mine]  # > 0: auto ahead
            if len(d) > 1:
                m, lo, hi = interval(d)
                out[c["arm"]]["auto_minus_arm"] = {"mean": m, "ci95": [lo, hi], "auto_wins": sum(x > 0 for x in d),
                                                   "auto_losses": sum(x < 0 for x in d)}
    return out


def markdown(summary: dict[str, Any]) -> str:
    lines = []
    for task, by_budget in summary["results"].items():
        t = summary["tables"][task]
        lines += [f"### {task} ({t['configurations']} configurations x {t['seeds']} seeds, recorded on "
                  f"{t['recorded_on']})", "",
                  "| budget | arm | seeds | hypervolume ratio, test [95 %] | on validation | front | trials "
                  "(pruned) | budget spent | auto − arm [95 %] (wins/losses) |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for b in sorted(by_budget, key=int):
            for arm, v in by_budget[b].items():
                d = v.get("auto_minus_arm")
                vs = "–" if d is None else (f"{d['mean']:+.3f} [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}] "
                                            f"({d['auto_wins']}/{d['auto_losses']})")
                lines.append(f"| {b}x | {arm} | {v['seeds']} | {v['hv_test_mean']:.3f} [{v['hv_test_ci95'][0]:.3f}, "
                             f"{v['hv_test_ci95'][1]:.3f}] | {v['hv_validation_mean']:.3f} | {v['front_mean']:.1f} "
                             f"| {v['trials_mean']:.1f} ({v['pruned_mean']:.1f}) | {v['budget_spent']:.0%} | {vs} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", default="rotten_tomatoes")
    ap.add_argument("--arms", nargs="+", default=[*LMTUNE_ARMS, "optuna_nsga2"])
    ap.add_argument("--budgets", nargs="+", type=int, default=[5, 10])
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--tables", type=Path, default=Path(__file__).parent / "tables")
    ap.add_argument("--data", type=Path, default=Path("/tmp/lmtune-tables/data"))
    ap.add_argument("--work", type=Path, default=Path("/dev/shm/lmtune-objectives"))
    ap.add_argument("--out", type=Path, default=Path("docs/benchmarks/objectives"))
    args = ap.parse_args()
    table = Table(args.tables / args.task)
    data = table_task(args.task, args.data).folder
    (args.out / "cells").mkdir(parents=True, exist_ok=True)
    args.work.mkdir(parents=True, exist_ok=True)
    path = args.out / "summary.json"
    summary = json.loads(path.read_text()) if path.exists() else {}
    m = table.meta
    summary.setdefault("tables", {})[args.task] = {
        "configurations": len(table.ids), "seeds": len(table.seeds), "train_rows": m["rows"]["train"],
        "recorded_on": m["recorded_with"]["hardware"], "objectives": list(zip(OBJECTIVES, DIRECTIONS, strict=True))}
    for budget in args.budgets:
        cells = []
        for arm in args.arms:
            cell_path = args.out / "cells" / f"{args.task}-{budget}x-{arm}.json"
            kept = json.loads(cell_path.read_text()) if cell_path.exists() else None
            if kept is not None and kept.get("configurations") == len(table.ids) and len(kept["rows"]) >= args.seeds:
                cells.append(kept)  # a table that grew since is searched again
                continue
            rows = [run_arm(table, arm, budget, s, data, args.work) for s in range(args.seeds)]
            c = {"arm": arm, "budget": budget, "configurations": len(table.ids), "rows": rows}
            cell_path.write_text(json.dumps(c))
            cells.append(c)
            print(f"{args.task} {budget}x {arm}: hypervolume ratio {statistics.mean(r['hv_test'] for r in rows):.3f}",
                  flush=True)
        for p in sorted((args.out / "cells").glob(f"{args.task}-{budget}x-synetune_*.json")):
            c = json.loads(p.read_text())  # Syne Tune's cells hold the configurations each search completed
            if c.get("configurations") != len(table.ids):
                print(f"{p.name}: recorded on a table of {c.get('configurations')} configurations, not "
                      f"{len(table.ids)}; run synetune_peer.py --moasha again", flush=True)
                continue
            for r in c["rows"]:
                r.update(score(table, r["completed"], r["world"]))
            cells.append(c)
        summary.setdefault("results", {}).setdefault(args.task, {})[str(budget)] = summarize(cells)
    path.write_text(json.dumps(summary, indent=1))
    (args.out / "results.md").write_text(markdown(summary))
    print(markdown(summary))


if __name__ == "__main__":
    main()
