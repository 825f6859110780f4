"""Strategies at equal train-token budget on the built-in task (MiniLM-L6 + Rotten Tomatoes).

Runs `lmtune tune` (the real product path: subprocess trainers, Optuna storage) for random, bayes,
bayes+hyperband, asha and pbt over several seeds, each study stopped by the same
``budget.max_train_tokens``, and reports the best validation accuracy reached against the train
tokens spent (best-so-far at 25/50/100% of the budget), the trials run and the wall time.

    .venv/bin/python benchmarks/strategies.py --seeds 3 --out docs/benchmarks/strategies.json

Sized for a 2-core CPU: a small train split, short sequences, a budget of about four full trials
(a PBT population of four then spends exactly the budget).
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import optuna

ROOT = Path(__file__).parents[1]
STRATEGIES = {
    "random": ["search.strategy=random"],
    "bayes": ["search.strategy=bayes"],
    "bayes+hyperband": ["search.strategy=hyperband"],
    "asha": ["search.strategy=asha"],
    "pbt": ["search.strategy=pbt", "search.pbt.population_size=4"],
    # selection on accuracy, pruning on eval_loss (which separates configurations at early rungs)
    "bayes+hyperband[loss]": ["search.strategy=hyperband", "search.prune_metric=eval_loss"],
    "asha[loss]": ["search.strategy=asha", "search.prune_metric=eval_loss"],
}


def task_overrides(args: argparse.Namespace) -> list[str]:
    return [f"task.train_size={args.train_size}", "task.validation_size=300", "task.test_size=300",
            "task.max_length=48", "training.epochs=2", "training.eval_every=5", "training.batch_size=32",
            "search.include_default=false", "search.n_startup_trials=3",
            f"budget.max_train_tokens={args.budget}"]


def run_study(strategy: str, seed: int, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    d = workdir / f"{strategy}-{seed}"
    shutil.rmtree(d, ignore_errors=True)  # a study left by an interrupted run would be resumed, not rerun
    sets = [f"study.dir={d}", f"study.seed={seed}", *task_overrides(args), *STRATEGIES[strategy]]
    cmd = [sys.executable, "-m", "lmtune", "tune", str(ROOT / "examples" / "quickstart.yaml"),
           *[a for s in sets for a in ("--set", s)], "--n-trials", "60"]
    t0 = time.monotonic()
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    wall = time.monotonic() - t0
    if out.returncode not in (0, 1):
        raise RuntimeError(f"{strategy}/{seed} failed: {out.stderr[-2000:]}")
    study = optuna.load_study(study_name="quickstart", storage=f"sqlite:///{d / 'study.db'}")
    return {"strategy": strategy, "seed": seed, "wall_s": wall, **summarize(study, args.budget)}


def eval_points(study: optuna.Study) -> list[tuple[int, float]]:
    """(train tokens spent by the whole study so far, validation accuracy) at every evaluation.

    One worker runs one trial at a time, so a trial's evaluation at ``tokens`` comes after everything
    the trials started before it spent. A PBT population instead advances together from ready point to
    ready point (members pause and resume), so its evaluation at unit ``u`` comes when every member has
    trained to ``u``: the tokens then are the sum over members."""
    trials = sorted((t for t in study.trials if t.user_attrs.get("curve")), key=lambda t: t.datetime_start)
    if any("pbt" in t.user_attrs for t in trials):
        by_unit: dict[int, list[tuple[int, float]]] = {}
        for t in trials:
            for p in t.user_attrs["curve"]:
                by_unit.setdefault(int(p["units"]), []).append((int(p["tokens"]), p["metrics"]["eval_accuracy"]))
        return [(sum(tok for tok, _ in rows), max(acc for _, acc in rows)) for _, rows in sorted(by_unit.items())]
    points, before = [], 0
    for t in trials:
        points += [(before + int(p["tokens"]), p["metrics"]["eval_accuracy"]) for p in t.user_attrs["curve"]]
        before += int(t.user_attrs.get("train_tokens", 0))
    return points


def summarize(study: optuna.Study, budget: int) -> dict[str, Any]:
    """Best validation accuracy seen at any evaluation once 25/50/100 % of the token budget was spent,
    and the value of the trial lmtune selects (``lmtune best``: the best finished trial)."""
    points = eval_points(study)
    best_at = {}
    for frac in (0.25, 0.5, 1.0):
        reached = [v for tok, v in points if tok <= frac * budget * 1.05]
        best_at[f"best@{int(frac * 100)}%"] = max(reached) if reached else None
    states = [t.state.name for t in study.trials]
    complete = [t.value for t in study.trials if t.state.name == "COMPLETE" and t.value is not None]
    return {"tokens": sum(int(t.user_attrs.get("train_tokens", 0)) for t in study.trials), "trials": len(states),
            "pruned": states.count("PRUNED"), "selected": max(complete, default=None), **best_at}


def table(rows: list[dict[str, Any]]) -> str:
    import statistics as st

    lines = ["| strategy | selected trial's val. accuracy | best seen @25% budget | @50% | @100% | "
             "trials (pruned) | train tokens | wall s |", "|---|---|---|---|---|---|---|---|"]
    for name in STRATEGIES:
        rs = [r for r in rows if r["strategy"] == name]
        if not rs:
            continue

        def ms(key: str, rs: list[dict[str, Any]] = rs) -> str:
            vals = [r[key] for r in rs if r[key] is not None]
            if not vals:
                return "–"
            return f"{st.mean(vals):.3f} ± {st.stdev(vals) if len(vals) > 1 else 0:.3f}"

        lines.append(f"| {name} | {ms('selected')} | {ms('best@25%')} | {ms('best@50%')} | {ms('best@100%')} | "
                     f"{st.mean(r['trials'] for r in rs):.1f} ({st.mean(r['pruned'] for r in rs):.1f}) | "
                     f"{st.mean(r['tokens'] for r in rs):,.0f} | {st.mean(r['wall_s'] for r in rs):.0f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--budget", type=int, default=80_000)
    ap.add_argument("--train-size", type=int, default=400)
    ap.add_argument("--strategies", default=",".join(STRATEGIES), help=f"comma-separated, of {', '.join(STRATEGIES)}")
    ap.add_argument("--workdir", type=Path, default=ROOT / "runs" / "bench-strategies")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks" / "strategies.json")
    ap.add_argument("--summarize-only", action="store_true",
                    help="recompute the summaries of --out's rows from the studies kept in --workdir")
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if args.summarize_only:
        saved = json.loads(args.out.read_text())
        for r in saved["rows"]:
            db = args.workdir / f"{r['strategy']}-{r['seed']}" / "study.db"
            study = optuna.load_study(study_name="quickstart", storage=f"sqlite:///{db}")
            r.pop("best", None)
            r.update(summarize(study, saved["budget"]))
        args.out.write_text(json.dumps(saved, indent=1))
        print(table(saved["rows"]))
        return
    machine = f"{platform.processor() or platform.machine()}, {__import__('os').cpu_count()} cores"
    settings = {"budget": args.budget, "train_size": args.train_size}
    rows = []
    if args.out.is_file():  # resume: keep the finished studies of a run with the same settings
        old = json.loads(args.out.read_text())
        if {k: old.get(k) for k in settings} == settings:
            rows = old["rows"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for seed in range(args.seeds):
        for name in args.strategies.split(","):
            if any(r["strategy"] == name and r["seed"] == seed for r in rows):
                continue
            rows.append(run_study(name, seed, args, args.workdir))
            print(json.dumps(rows[-1]), flush=True)
            args.out.write_text(json.dumps({"machine": machine, **settings, "rows": rows}, indent=1))
    print(table(rows))


if __name__ == "__main__":
    main()
