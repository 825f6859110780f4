"""Replay every arm on recorded tables, many search seeds per (task, budget), and write the summary.

Budgets are multiples of one default training run's train tokens (the table's configuration 0, lr 5e-5 /
batch 32 / 2 epochs). Search seed ``k`` replays world ``k`` of the table (each configuration at one of its
recorded seeds, drawn per world: `tables.table`; every arm of seed ``k`` sees the same curves) with sampler
seed ``k``, so arms are paired by seed and the intervals include which recorded runs a search meets.

Per (task, budget, arm): regret = how far the selected configuration's final test score (accuracy; test loss
for the LoRA table) is from the world's best over the table's configurations (the default configuration
counts where an arm selected nothing); mean with a 95 % t interval over the search seeds; the fraction of
the budget spent; seconds per replayed search; and the paired difference to ``auto``. Results of each
(task, budget, arm) are kept in ``--out``/cells/ (a rerun skips what is there), the summary in
``--out``/summary.json in the form ``../shared/checks/bench`` reads.

    .venv/bin/python benchmarks/tables/replay.py --tasks rotten_tomatoes --seeds 100
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parents[1]))

from tables import arms as arms_module
from tables.candidates import CANDIDATES
from tables.plots import write_plots
from tables.table import Table
from tables.tasks import table_task

BUDGETS = (1, 2, 3, 5, 10, 20)
PEERS: dict[str, Callable[..., arms_module.ArmResult]] = {
    "peer_optuna_hyperband": arms_module.peer_optuna_hyperband,
    "random_search": arms_module.random_search,
    "one_epoch_topk": arms_module.one_epoch_topk,
}
LMTUNE = ("auto", "random", "asha", "hyperband", "bayes")
# candidates for auto's redesign (issue 31), replayed beside it: the length a choice and the first rung at the
# first evaluation (1/8 epoch here), with random or TPE sampling. On the partial rotten_tomatoes table (28
# configurations, 40 seeds) they led auto from 3x up and trailed it at 2x (docs/benchmarks/search-replay.md)
VARIANTS: dict[str, tuple[str, tuple[str, ...]]] = {
    # auto before its practice prior (the learning rate searched as written)
    "auto_no_prior": ("auto", ("search.practice_prior=false",)),
    "asha_early": ("asha", ("search.min_units=1",)),
    "bayes_asha_early": ("bayes", ("search.pruner=asha", "search.min_units=1")),
    # the same, pruned on validation loss (auto's pruning metric) instead of the study's metric
    "asha_early_loss": ("asha", ("search.min_units=1", "search.prune_metric=eval_loss")),
    "bayes_asha_early_loss": ("bayes", ("search.pruner=asha", "search.min_units=1",
                                        "search.prune_metric=eval_loss")),
    # auto without its default-settings trial (a budget of 3x spends a third of itself on the default)
    "auto_no_default": ("auto", ("search.include_default=false",)),
    # auto before synchronous halving (issue 31): TPE + asynchronous ASHA on eval_loss, every configuration at the
    # longest length, the default trial first; an explicit search.pruner keeps auto on it under a token budget
    "auto_asha": ("auto", ("search.pruner=asha",)),
}


def run_arm(table: Table, arm: str, budget: int, seed: int, data: Path, work: Path) -> arms_module.ArmResult:
    world = seed  # world k: each configuration at one of its recorded seeds (`tables.table.Table.seed_in`)
    tokens = budget * table.default_tokens(world)
    if arm in PEERS:
        return PEERS[arm](table, world, tokens, seed)
    if arm in CANDIDATES:
        return CANDIDATES[arm](table, world, tokens, seed)
    if arm in VARIANTS:
        strategy, more = VARIANTS[arm]
        return arms_module.lmtune_arm(table, world, strategy, tokens, seed, data, work, more)
    return arms_module.lmtune_arm(table, world, arm, tokens, seed, data, work)


def interval(xs: list[float]) -> tuple[float, float, float]:
    from scipy import stats

    m = statistics.mean(xs)
    if len(xs) < 2:
        return m, m, m
    h = stats.t.ppf(0.975, len(xs) - 1) * statistics.stdev(xs) / math.sqrt(len(xs))
    return m, m - h, m + h


def cell(table: Table, arm: str, budget: int, seeds: list[int], data: Path, work: Path) -> dict[str, Any]:
    rows = []
    for seed in seeds:
        world = seed
        r = run_arm(table, arm, budget, seed, data, work)
        # a search that selected nothing leaves its user with the default configuration
        test = r.test if math.isfinite(r.test) else table.test_score(table.default_id(), world)
        rows.append({"seed": seed, "world": world, "selected": r.selected, "test": test,
                     "regret": table.regret(test, world),
                     "spent": r.spent_tokens / (budget * table.default_tokens(world)), "trials": r.trials,
                     "pruned": r.pruned, "seconds": r.seconds})
    return {"arm": arm, "budget": budget, "rows": rows}


def recording_se(table: Table, rows: list[dict[str, Any]], ref: list[dict[str, Any]]) -> float:
    """The standard error that the recording itself adds to the paired mean difference of two arms' regrets
    (``rows`` against ``ref``, paired by seed), which the interval over worlds leaves out.

    A world replays each configuration at one of its recorded runs, and the worlds are drawn from those runs:
    100 worlds sample which run a search meets, not how a configuration trains. Had the table recorded other
    runs, every run a selection lands on would score differently by the training noise ``sigma`` (the table's
    seed-to-seed standard deviation among its top third, `Table.seed_spread`: the configurations searches end
    between). With the selections held fixed, the mean difference is a sum of recorded runs' scores, each with
    the weight ``g`` = (worlds where this arm selected it - worlds where the other did) / worlds, so the
    recording adds ``sigma * sqrt(sum g^2)``. Two arms that select the same runs get 0; two that always
    select two different configurations of a 2-seed table get about ``sigma`` (each configuration's mean over
    its two runs is off by ``sigma / sqrt(2)``), however many worlds are replayed. It
    treats the selections as fixed (an arm that selected a run because it was lucky on validation would select
    another in another recording), so it is an approximation, not a bound."""
    sigma = table.seed_spread()["top_third_sd"]
    theirs = {r["seed"]: r for r in ref}
    pairs = [(r, theirs[r["seed"]]) for r in rows if r["seed"] in theirs]
    if not pairs or not math.isfinite(sigma):
        return math.nan
    g: dict[tuple[int, int], float] = {}
    for mine, other in pairs:
        for r, sign in ((mine, 1.0), (other, -1.0)):
            c = table.default_id() if r["selected"] is None else int(r["selected"])
            key = (c, table.seed_in(c, int(r["world"])))
            g[key] = g.get(key, 0.0) + sign / len(pairs)
    return sigma * math.sqrt(sum(x * x for x in g.values()))


def with_recording(table: Table, m: float, lo: float, hi: float, rows: list[dict[str, Any]],
                   ref: list[dict[str, Any]]) -> list[float]:
    """The interval over worlds ``[lo, hi]`` around ``m`` widened by the recording's own noise
    (`recording_se`), the two added in quadrature."""
    h = math.hypot((hi - lo) / 2, 1.96 * recording_se(table, rows, ref))
    return [m - h, m + h]


def summarize(cells: list[dict[str, Any]], table: Table | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for c in cells:
        regrets = [r["regret"] for r in c["rows"]]
        m, lo, hi = interval(regrets)
        out[c["arm"]] = {"seeds": len(regrets), "regret_mean": m, "regret_ci95": [lo, hi],
                         "test_mean": statistics.mean(r["test"] for r in c["rows"]),
                         "budget_spent": statistics.mean(r["spent"] for r in c["rows"]),
                         "replay_s_per_search": statistics.mean(r["seconds"] for r in c["rows"]),
                         "trials_mean": statistics.mean(r["trials"] for r in c["rows"])}
    auto = next((c for c in cells if c["arm"] == "auto"), None)
    if auto:
        ref = {r["seed"]: r["regret"] for r in auto["rows"]}
        for c in cells:
            d = [ref[r["seed"]] - r["regret"] for r in c["rows"] if r["seed"] in ref]  # > 0: this arm beats auto
            if c["arm"] != "auto" and len(d) > 1:
                m, lo, hi = interval(d)
                vs: dict[str, Any] = {"mean": m, "ci95": [lo, hi], "wins": sum(x > 0 for x in d),
                                      "losses": sum(x < 0 for x in d)}
                if table is not None:
                    # the interval over worlds widened by what the recording adds (`recording_se`)
                    vs |= {"recording_se": recording_se(table, auto["rows"], c["rows"]),
                           "ci95_with_recording": with_recording(table, m, lo, hi, auto["rows"], c["rows"])}
                out[c["arm"]]["vs_auto"] = vs
    return out


def against_the_peer(cells: dict[int, dict[str, Any]], peer_budget: int = 20,
                     table: Table | None = None) -> dict[str, Any]:
    """``auto`` at each budget against the peer as its users run it (16 trials, uncapped: its cell at
    ``peer_budget``, where its trials end before the budget does), paired by seed: the share of the peer's
    train tokens ``auto`` was given, and auto's regret minus the peer's (> 0: auto is worse). Issue 31's live
    claim, `auto` at a third of the peer's tokens at least as good, read off the replay. ``cells``: budget ->
    {arm: cell}."""
    peer = cells.get(peer_budget, {}).get("peer_optuna_hyperband")
    if peer is None:
        return {}
    peer_rows = {r["seed"]: r for r in peer["rows"]}
    peer_x = statistics.mean(r["spent"] for r in peer["rows"]) * peer_budget  # in default training runs
    out: dict[str, Any] = {"peer_spent_default_runs": peer_x}
    for budget, arms_ in sorted(cells.items()):
        auto = arms_.get("auto")
        if auto is None:
            continue
        d = [r["regret"] - peer_rows[r["seed"]]["regret"] for r in auto["rows"] if r["seed"] in peer_rows]
        if len(d) < 2:
            continue
        m, lo, hi = interval(d)
        out[str(budget)] = {"share_of_peer_tokens": budget / peer_x, "auto_minus_peer_regret": m,
                            "ci95": [lo, hi], "auto_worse": sum(x > 0 for x in d), "auto_better": sum(x < 0 for x in d)}
        if table is not None:
            out[str(budget)]["ci95_with_recording"] = with_recording(table, m, lo, hi, auto["rows"], peer["rows"])
    return out


def auto_at_share(table: Table, peer: dict[str, Any], share: float, data: Path, work: Path,
                  peer_budget: int = 20) -> dict[str, Any]:
    """Issue 31's live claim replayed as it is stated: ``auto`` given exactly ``share`` of the train tokens the
    peer as its users run it (16 trials, uncapped: its cell at ``peer_budget``) spent *in the same world*, not
    one of the whole-number budgets; a cell of the same form as `cell`'s (``budget``: the share)."""
    rows = []
    for r in peer["rows"]:
        world = seed = int(r["seed"])
        tokens = int(r["spent"] * peer_budget * table.default_tokens(world) * share)
        a = arms_module.lmtune_arm(table, world, "auto", tokens, seed, data, work)
        test = a.test if math.isfinite(a.test) else table.test_score(table.default_id(), world)
        rows.append({"seed": seed, "world": world, "selected": a.selected, "test": test,
                     "regret": table.regret(test, world), "spent": a.spent_tokens / tokens if tokens else 0.0,
                     "trials": a.trials, "pruned": a.pruned, "seconds": a.seconds})
    return {"arm": "auto", "budget": share, "rows": rows}


def at_share_against_the_peer(table: Table, auto: dict[str, Any], peer: dict[str, Any]) -> dict[str, Any]:
    """``auto_at_share``'s cell paired with the peer's by seed: auto's regret minus the peer's (> 0: auto is
    worse), with the interval over worlds and the one with the recording (`recording_se`), and the spend."""
    theirs = {r["seed"]: r for r in peer["rows"]}
    d = [r["regret"] - theirs[r["seed"]]["regret"] for r in auto["rows"] if r["seed"] in theirs]
    m, lo, hi = interval(d)
    return {"share_of_peer_tokens": auto["budget"], "seeds": len(d), "auto_minus_peer_regret": m, "ci95": [lo, hi],
            "ci95_with_recording": with_recording(table, m, lo, hi, auto["rows"], peer["rows"]),
            "auto_worse": sum(x > 0 for x in d), "auto_better": sum(x < 0 for x in d),
            "auto_spent": statistics.mean(r["spent"] for r in auto["rows"])}


def dodge(table: Table, world: int, n_max: int = 64) -> list[float]:
    """Dodge et al. (2019)'s expected best as a function of the number of random configurations trained to
    their end: the expected test score of the validation-best of n draws (with replacement) from the table's
    configurations, n = 1..n_max, from the order statistics of the empirical distribution."""
    runs = sorted(table.ids, key=lambda i: table.run(i, world).final[table.metric], reverse=not table.maximize)
    tests = [table.test_score(i, world) for i in runs]  # worst validation first
    k = len(runs)
    out = []
    for n in range(1, n_max + 1):
        out.append(sum((((i + 1) / k) ** n - (i / k) ** n) * t for i, t in enumerate(tests)))
    return out


def markdown(summary: dict[str, Any]) -> str:
    """The results as tables: per task, regret (mean [95 % interval]) and budget spent per arm and budget."""
    lines = []
    for task, by_budget in summary.get("results", {}).items():
        meta = summary["tables"][task]
        budgets = sorted(by_budget, key=int)
        arms = list(next(iter(by_budget.values())))
        lines += [f"### {task} ({meta['metric']}, regret in its units; {meta['configurations']} configurations x "
                  f"{meta['seeds']} seeds, recorded on {meta['recorded_on']})", "",
                  "| arm | " + " | ".join(f"{b}x" for b in budgets) + " |", "|---|" + "---|" * len(budgets)]
        for arm in arms:
            cells = []
            for b in budgets:
                v = by_budget[b].get(arm)
                cells.append("–" if v is None else f"{v['regret_mean']:.4f} [{v['regret_ci95'][0]:.4f}, "
                             f"{v['regret_ci95'][1]:.4f}] ({v['budget_spent']:.0%})")
            lines.append(f"| {arm} | " + " | ".join(cells) + " |")
        lines.append("")
        if any("vs_auto" in v for bb in by_budget.values() for v in bb.values()):
            lines += ["Paired with auto (auto's regret minus the arm's; > 0: the arm is better): mean [95 % interval "
                      "over worlds] {the same with the recording's own noise, `recording_se`}", "",
                      "| arm | " + " | ".join(f"{b}x" for b in budgets) + " |", "|---|" + "---|" * len(budgets)]
            for arm in arms:
                cells = []
                for b in budgets:
                    d = by_budget[b].get(arm, {}).get("vs_auto")
                    if d is None:
                        cells.append("–")
                        continue
                    c = f"{d['mean']:+.4f} [{d['ci95'][0]:+.4f}, {d['ci95'][1]:+.4f}]"
                    if "ci95_with_recording" in d:
                        c += " {{{:+.4f}, {:+.4f}}}".format(*d["ci95_with_recording"])
                    cells.append(c)
                if any(x != "–" for x in cells):
                    lines.append(f"| {arm} | " + " | ".join(cells) + " |")
            lines.append("")
        vs = summary.get("against_the_peer", {}).get(task, {})
        if vs:
            lines += [f"auto against the peer as users run it (16 trials, {vs['peer_spent_default_runs']:.1f} default "
                      "runs of tokens), paired; > 0: auto's regret is higher:", ""]
            lines += [f"- {f'{b}x' if b.isdigit() else 'exactly'} ({v['share_of_peer_tokens']:.2f} of the peer's "
                      f"tokens): {v['auto_minus_peer_regret']:+.4f} [{v['ci95'][0]:+.4f}, {v['ci95'][1]:+.4f}]"
                      + (" {{{:+.4f}, {:+.4f}}}".format(*v["ci95_with_recording"]) if "ci95_with_recording" in v
                         else "")
                      for b, v in vs.items() if isinstance(v, dict)]
            lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", nargs="+", required=True)
    ap.add_argument("--arms", nargs="+", default=[*LMTUNE, *VARIANTS, *PEERS])
    ap.add_argument("--budgets", nargs="+", type=int, default=list(BUDGETS))
    ap.add_argument("--seeds", type=int, default=100)
    ap.add_argument("--tables", type=Path, default=Path(__file__).parent)
    ap.add_argument("--data", type=Path, default=Path("/tmp/lmtune-tables/data"))
    ap.add_argument("--work", type=Path, default=Path("/dev/shm/lmtune-replay"))
    ap.add_argument("--out", type=Path, default=Path("docs/benchmarks/search-replay"))
    ap.add_argument("--share-of-peer", type=float, default=None,
                    help="also replay auto at exactly this share of each world's uncapped peer tokens (issue 31's "
                         "live claim: 0.3333); needs the peer's 20x cell")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    (args.out / "cells").mkdir(parents=True, exist_ok=True)
    summary_path = args.out / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    for task in args.tasks:
        table = Table(args.tables / task)
        data = table_task(task, args.data).folder if table.meta["kind"] == "classification" else args.data
        m = table.meta
        summary.setdefault("tables", {})[task] = {
            "kind": m["kind"], "train_rows": m["rows"]["train"], "validation_rows": m["rows"]["validation"],
            "test_rows": m["rows"]["test"], "configurations": len(table.ids), "seeds": len(table.seeds),
            "metric": table.test_metric,
            "evals_per_epoch": m["evals_per_epoch"], "recorded_on": m["recorded_with"]["hardware"],
            "best_test_mean": statistics.mean(table.best_test(w) for w in range(args.seeds)),
            "seed_spread": table.seed_spread()}
        by_budget: dict[int, dict[str, Any]] = {}
        for budget in args.budgets:
            cells = []
            for arm in args.arms:
                path = args.out / "cells" / f"{task}-{budget}x-{arm}.json"
                if path.exists() and len(json.loads(path.read_text())["rows"]) >= args.seeds:
                    cells.append(json.loads(path.read_text()))
                    continue
                t0 = time.perf_counter()
                c = cell(table, arm, budget, list(range(args.seeds)), data, args.work)
                path.write_text(json.dumps(c))
                cells.append(c)
                print(f"{task} {budget}x {arm}: regret {statistics.mean(r['regret'] for r in c['rows']):.4f} "
                      f"({time.perf_counter() - t0:.0f} s)", flush=True)
            # Syne Tune's arms run in their own environment (synetune_peer.py) and leave their cells here
            theirs = sorted((args.out / "cells").glob(f"{task}-{budget}x-synetune_*.json"))
            cells += [json.loads(p.read_text()) for p in theirs]
            summary.setdefault("results", {}).setdefault(task, {})[str(budget)] = summarize(cells, table)
            by_budget[budget] = {c["arm"]: c for c in cells}
        summary.setdefault("against_the_peer", {})[task] = against_the_peer(by_budget, table=table)
        peer = by_budget.get(20, {}).get("peer_optuna_hyperband")
        if args.share_of_peer and peer is not None:
            path = args.out / "cells" / f"{task}-share{args.share_of_peer:g}-auto.json"
            c = json.loads(path.read_text()) if path.exists() else None
            if c is None or len(c["rows"]) < len(peer["rows"]):
                c = auto_at_share(table, peer, args.share_of_peer, data, args.work)
                path.write_text(json.dumps(c))
            summary["against_the_peer"][task][f"share_{args.share_of_peer:g}"] = at_share_against_the_peer(
                table, c, peer)
        # the expected best by number of random configurations, averaged over the search seeds' worlds
        curves = [dodge(table, w) for w in range(args.seeds)]
        summary.setdefault("dodge", {})[task] = [statistics.mean(c[n] for c in curves) for n in range(len(curves[0]))]
        summary_path.write_text(json.dumps(summary, indent=1))
        (args.out / "results.md").write_text(markdown(summary))
        write_plots(summary, args.out / "plots")


if __name__ == "__main__":
    main()
