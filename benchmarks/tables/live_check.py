"""The live check of the search replay: do live searches land where the replay says they land?

On one table task, for search seeds 0..4: ``auto`` runs live (``lmtune tune``'s Tuner on the local backend, lmtune's
real trainer) at a budget of ``--budget`` default training runs, with exactly the study a replayed arm runs
(`tables.arms.study_sets`: the table's data, space, length and evaluation interval), and the peer runs live as
its users run it (HF ``Trainer.hyperparameter_search`` + Optuna TPE + ``HyperbandPruner``, 16 trials,
`search.hf_peer.run_peer`, on the same data and space). Each arm's selected configuration is then trained once
more with the table's recipe (lmtune's trainer, at the seed the nearest recorded configuration has in world
``seed``) and scored on the test split, so its score is comparable with the table's; regret = the best test
score of that world minus it.

The comparison (``--compare``): the live regrets of each arm against the replayed ones of the same arm and
budget (``docs/benchmarks/search-replay/cells``; the uncapped peer against the replay at 20x, where 16 trials
end before the budget): the live mean with its 95 % interval, the replayed mean with its own, the difference
of the means with a Welch interval, and how many live searches fall inside the replay's 2.5-97.5 % range of
single searches.

One cell per (arm, seed) in ``--out`` (a rerun skips finished cells; each takes 10-40 minutes on this CPU):

    .venv/bin/python benchmarks/tables/live_check.py --task rotten_tomatoes --seeds 0 1 2 3 4
    .venv/bin/python benchmarks/tables/live_check.py --task rotten_tomatoes --compare

The same runs serve issue 31's live checks, with their own ``--out``:

- ``auto`` at a third of the peer's train tokens (``--auto-share-of-peer 0.3333``): per seed, ``auto``'s budget
  is that seed's live peer's train tokens times the share (the peer's cell is taken from ``--peer-from`` when it
  ran there already: a peer search is the dearest cell), and ``--summarize-live`` writes the check's
  ``docs/benchmarks/search-live/summary.json`` ({task: {arm: {seeds, test_mean, train_tokens}}});
- PBT against ``auto`` at the same budget (``--arms pbt auto --budget 5``): PBT cannot be replayed (it changes
  settings mid-run). Its population is sized to the budget: each member trains the longest recorded length
  at which at least ``--pbt-population`` members fit in the budget, and as many members as fit at that
  length, 1 % held back (5x on a 2-epoch default: 9 members of 1 epoch; 10x: 9 of 2 epochs); the length leaves the
  searched space. Its selection is the best member's schedule of settings, trained once more from the start
  (what ``lmtune final`` trains; `lmtune.tuner.final_plan.best_choice`) and scored on the test split.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parents[1]))

from tables import arms
from tables.record import prepare, spec_of
from tables.replay import interval
from tables.table import Table
from tables.tasks import table_task

ROOT = Path(__file__).parents[2]
PEER_TRIALS = 16
PEER_EVAL_STEPS = 16  # as the replayed peer (`tables.arms.peer_optuna_hyperband`)


def retrain_test(table: Table, config: dict[str, Any], world: int, cache: Path, model: str, out: Path) -> float:
    """``config`` trained once with the table's recipe, scored on the test split at its end (evaluations in
    between change nothing a run learns, so this is the table's final test score for a recorded configuration).
    Its seed: the recorded seed that the nearest recorded configuration of its length has in ``world``
    (`Table.seed_in`), so a live selection is trained as a replayed one in that world would be."""
    from lmtune.config import TrainingSection
    from lmtune.protocol import Continue, TrialSpec
    from lmtune.training.loop import train

    hp = {**TrainingSection().model_dump(), **table.meta.get("fixed", {}), **config,
          "seed": table.seed_in(table.nearest(config, float(config["epochs"])), world)}
    total = table.rows * int(config["epochs"])
    spec = TrialSpec(trial=0, model=model, task_type=table.meta["kind"], data_cache=str(cache), hparams=hp,
                     examples_per_unit=total, total_examples=total, output_dir=str(out), interactive=False,
                     evaluate_test=True)
    result = train(spec, lambda _e: None, Continue)
    return float(result["test_metrics"][table.test_metric])


def retrain_schedule(table: Table, plan: Any, schedule: list[dict[str, Any]], world: int, out: Path,
                     threads: int | None = None) -> float:
    """A PBT member's schedule of settings (`lmtune.tuner.final_plan.best_choice`) trained once more from the
    start, as ``lmtune final`` trains it (the study's plan: its units, length and data), at the seed the
    nearest recorded configuration to the schedule's first settings has in ``world``; its test score."""
    from lmtune.protocol import Continue
    from lmtune.training.loop import train
    from lmtune.tuner.plan import trial_spec

    first = schedule[0]["hparams"]
    seed = table.seed_in(table.nearest(first, float(first.get("epochs") or table.meta["default"]["epochs"])), world)
    steps = [{"units": e["units"], "hparams": {**e["hparams"], "seed": seed}} for e in schedule]
    spec = trial_spec(plan, number=0, hparams=dict(steps[0]["hparams"]), device="cpu",
                      threads=threads, interactive=False, evaluate_test=True,
                      extra={"schedule": steps})
    result = train(replace(spec, output_dir=str(out)), lambda _e: None, Continue)
    return float(result["test_metrics"][table.test_metric])


def pbt_sizing(table: Table, tokens: int, world: int, population: int) -> tuple[int, int]:
    """(members, epochs per member) for PBT under ``tokens``: the longest recorded length at which at least
    ``population`` members fit, and as many members as fit at it (at least ``population``)."""
    # 1 % held back: lmtune refuses a PBT population its token cap cannot finish, by its own estimate
    per_epoch = 1.01 * table.default_tokens(world) / float(table.meta["default"]["epochs"])
    lengths = sorted({int(c["epochs"]) for c in table.meta["configs"]}, reverse=True)
    for epochs in lengths:
        members = int(tokens // (per_epoch * epochs))
        if members >= population:
            return members, epochs
    return population, lengths[-1]


def live_lmtune(table: Table, strategy: str, seed: int, tokens: int, data: Path, work: Path,
                threads: int | None = None, population: int = 8) -> dict[str, Any]:
    """``lmtune tune`` live with ``search.strategy`` = ``strategy`` (auto or pbt) under ``tokens`` train tokens,
    on the study a replayed arm runs; what it selected (PBT: the best member's schedule, in ``schedule``)."""
    from lmtune.config import load_config
    from lmtune.study.record import best_of, read
    from lmtune.tuner import PlainReporter
    from lmtune.tuner.final_plan import best_choice
    from lmtune.tuner.search import Tuner

    world = seed
    study_dir = work / f"{strategy}-{seed}"
    more = [f"execution.threads_per_worker={threads}"] if threads else []
    sizing: dict[str, Any] = {}
    if strategy == "pbt":
        members, epochs = pbt_sizing(table, tokens, world, population)
        space = {k: v for k, v in arms.space_yaml(table).items() if k != "epochs"}
        more += [f"search.pbt.population_size={members}", f"training.epochs={epochs}",
                 "search.space=" + json.dumps(space)]
        sizing = {"population": members, "member_epochs": epochs}
    cfg = load_config(None, arms.study_sets(table, strategy, tokens, seed, data, study_dir, more))
    summary = Tuner(cfg, reporter=PlainReporter()).run()
    trials = summary.study.trials
    direction = "maximize" if table.maximize else "minimize"
    best = best_of(trials, direction)
    keys = list(table.space)
    found: dict[str, Any] = {"train_tokens": sum(int(read(t).train_tokens or 0) for t in trials),
                             "trials": len(trials), "pruned": sum(t.state.name == "PRUNED" for t in trials),
                             "stop_reason": summary.stop_reason, **sizing}
    found["spent"] = found["train_tokens"] / tokens
    if strategy == "pbt" and best is not None:
        choice = best_choice(trials, summary.plan.defaults, direction)  # what `lmtune final` retrains
        found["selected"] = {k: choice.hparams.get(k) for k in keys}
        found["schedule"] = choice.schedule or [{"units": 0, "hparams": dict(choice.hparams)}]
        found["plan"] = summary.plan
        return found
    found["selected"] = {k: read(best).config[k] for k in keys} if best is not None else dict(table.meta["default"])
    return found


def live_peer(table: Table, seed: int, data: Path, work: Path, n_trials: int = PEER_TRIALS) -> dict[str, Any]:
    from search.hf_peer import Data, run_peer

    from lmtune.config import load_config

    world = seed
    cfg = load_config(None, arms.study_sets(table, "random", 10**15, seed, data, work / f"peer-{seed}"))
    model = str(resolve(cfg.task.model))
    result = run_peer(cfg, model, Data(cfg, model), arms.space_yaml(table), seed=seed, n_trials=n_trials,
                      eval_steps=PEER_EVAL_STEPS, workdir=work / f"peer-{seed}")
    selected = {**table.meta["default"], **result.best_params}
    return {"selected": selected, "spent": result.train_tokens / table.default_tokens(world),
            "train_tokens": result.train_tokens,
            "trials": len(result.trials), "pruned": sum(t.state == "PRUNED" for t in result.trials)}


def resolve(model: str) -> Path:
    from lmtune.training.models import resolve_model

    return Path(resolve_model(model))



def compare(task: str, out: Path, replay: Path) -> str:
    """The live cells against the replayed ones, as a Markdown table."""
    from scipy import stats

    lines = ["| arm | live searches | live regret [95 %] | replayed regret [95 %] (searches) | live - replayed "
             "[95 %, Welch] | live inside the replay's 2.5-97.5 % |", "|---|---|---|---|---|---|"]
    for arm, replayed_as in (("auto", "auto"), ("peer", "peer_optuna_hyperband")):
        cells = [json.loads(p.read_text()) for p in sorted(out.glob(f"{task}-{arm}-s*.json"))]
        if not cells:
            continue
        budget = cells[0]["budget"] if arm == "auto" else 20
        path = replay / "cells" / f"{task}-{budget}x-{replayed_as}.json"
        if not path.exists():
            lines.append(f"| {arm} | {len(cells)} | – | no replay cell {path.name} | – | – |")
            continue
        table = Table(Path(__file__).parent / task)
        live = [table.regret(c["test"], c["world"]) for c in cells]
        rep = [r["regret"] for r in json.loads(path.read_text())["rows"]]
        lm, llo, lhi = interval(live)
        rm, rlo, rhi = interval(rep)
        diff = lm - rm
        se = math.sqrt(statistics.variance(live) / len(live) + statistics.variance(rep) / len(rep)) \
            if len(live) > 1 else float("nan")
        h = float(stats.t.ppf(0.975, max(len(live) - 1, 1))) * se
        q = statistics.quantiles(rep, n=40)
        inside = sum(q[0] <= x <= q[-1] for x in live)
        lines.append(f"| {arm} ({budget}x) | {len(live)} | {lm:.4f} [{llo:.4f}, {lhi:.4f}] | {rm:.4f} [{rlo:.4f}, "
                     f"{rhi:.4f}] ({len(rep)}) | {diff:+.4f} [{diff - h:+.4f}, {diff + h:+.4f}] | {inside} of "
                     f"{len(live)} |")
    return "\n".join(lines)


def summarize_live(out: Path) -> dict[str, dict[str, dict[str, Any]]]:
    """The finished cells under ``out`` per task and arm: searches, mean test score with its 95 % interval,
    mean train tokens (the form ``../shared/checks/auto`` reads from docs/benchmarks/search-live/summary.json)."""
    by: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for p in sorted(out.glob("*-s*.json")):
        c = json.loads(p.read_text())
        by.setdefault(c["task"], {}).setdefault(c["arm"], []).append(c)
    live: dict[str, dict[str, dict[str, Any]]] = {}
    for task, arms_ in by.items():
        for arm, cells in arms_.items():
            m, lo, hi = interval([float(c["test"]) for c in cells])
            live.setdefault(task, {})[arm] = {
                "seeds": len(cells), "test_mean": m, "test_ci95": [lo, hi],
                "train_tokens": statistics.mean(float(c["train_tokens"]) for c in cells),
                "budget_mean": statistics.mean(float(c["budget"]) for c in cells) if all(
                    c.get("budget") is not None for c in cells) else None,
                "search_s_mean": statistics.mean(float(c["search_s"]) for c in cells)}
    return live


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", default="rotten_tomatoes")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--arms", nargs="+", default=["auto", "peer"])
    ap.add_argument("--budget", type=int, default=3, help="auto's budget in default training runs")
    ap.add_argument("--peer-trials", type=int, default=PEER_TRIALS, help="16, as users run it (fewer: a smoke test)")
    ap.add_argument("--tables", type=Path, default=Path(__file__).parent)
    ap.add_argument("--data", type=Path, default=Path("/tmp/lmtune-tables/data"))
    ap.add_argument("--work", type=Path, default=Path("/tmp/lmtune-live-check"))
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks" / "search-replay" / "live")
    ap.add_argument("--replay", type=Path, default=ROOT / "docs" / "benchmarks" / "search-replay")
    ap.add_argument("--compare", action="store_true", help="compare the finished cells with the replay")
    ap.add_argument("--auto-share-of-peer", type=float, default=None,
                    help="auto's budget: this share of the same seed's live peer's train tokens (not --budget)")
    ap.add_argument("--peer-from", type=Path, default=None,
                    help="a folder of finished peer cells to reuse (copied into --out) instead of running them")
    ap.add_argument("--pbt-population", type=int, default=8, help="PBT's smallest population (sized to the budget)")
    ap.add_argument("--summarize-live", type=Path, default=None,
                    help="write the cells of --out as the auto check's live summary to this file, and stop")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads of every arm's training (default: all cores); 1 beside table recorders")
    args = ap.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)  # the HF peer and the retrain run in this process
    if args.compare:
        print(compare(args.task, args.out, args.replay))
        return
    if args.summarize_live:
        live = summarize_live(args.out)
        args.summarize_live.parent.mkdir(parents=True, exist_ok=True)
        args.summarize_live.write_text(json.dumps(live, indent=1))
        print(json.dumps(live, indent=1))
        return
    table = Table(args.tables / args.task, complete_only=False)
    data = table_task(args.task, args.data).folder
    args.out.mkdir(parents=True, exist_ok=True)
    work_root = Path(os.environ.get("LMTUNE_TABLES_WORK", "/tmp/lmtune-tables"))
    cache, meta = prepare(args.task, spec_of(args.task), work_root)
    model = str(meta["model_folder"])
    arms_in_order = sorted(args.arms, key=lambda a: a != "peer")  # the peer first: auto's share is of its tokens
    for seed in args.seeds:
        for arm in arms_in_order:
            path = args.out / f"{args.task}-{arm}-s{seed}.json"
            reuse = args.peer_from / path.name if args.peer_from and arm == "peer" else None
            if not path.exists() and reuse is not None and reuse.exists():
                path.write_text(reuse.read_text())
            if path.exists():
                continue
            world = seed
            work = args.work / f"{arm}-{seed}"
            tokens = args.budget * table.default_tokens(world)
            budget: float | None = args.budget
            if arm == "auto" and args.auto_share_of_peer:
                peer = json.loads((args.out / f"{args.task}-peer-s{seed}.json").read_text())
                tokens = int(peer["train_tokens"] * args.auto_share_of_peer)
                budget = tokens / table.default_tokens(world)
            t0 = time.perf_counter()
            if arm == "peer":
                found, budget = live_peer(table, seed, data, work, args.peer_trials), None
            else:
                found = live_lmtune(table, arm, seed, tokens, data, work, args.threads, args.pbt_population)
            search_s = time.perf_counter() - t0
            if "schedule" in found:
                test = retrain_schedule(table, found.pop("plan"), found["schedule"], world, work / "retrain",
                                        args.threads)
            else:
                test = retrain_test(table, found["selected"], world, cache, model, work / "retrain")
            cell = {"task": args.task, "arm": arm, "seed": seed, "world": world,
                    "budget": budget, **found, "test": test,
                    "regret": table.regret(test, world),  # against the table as recorded then (compare: as it is)
                    "search_s": round(search_s, 1), "retrain_s": round(time.perf_counter() - t0 - search_s, 1),
                    "load": os.getloadavg()[0], "date": time.strftime("%Y-%m-%d %H:%M"),
                    "table_configurations": len(table.ids)}
            path.write_text(json.dumps(cell, indent=1))
            print(f"{args.task} {arm} seed {seed}: test {test:.4f}, regret {cell['regret']:.4f}, spent "
                  f"{found['spent']:.2f} ({search_s:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
