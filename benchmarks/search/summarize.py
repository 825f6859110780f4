"""Cells → ``summary.json`` (the form ../shared/checks/search reads) and ``results.md`` (the docs table).

    .venv/bin/python benchmarks/search/summarize.py [--out docs/benchmarks/search]

Per task and arm: mean test accuracy of the selected configuration (each retrained with the cell's
retrain seeds), mean train tokens and wall time of the search, seeds. Per task, ``auto`` against
``peer`` paired by seed (same data split): the mean difference, a paired t-test and the exact
sign-flip test (with 5 seeds its smallest two-sided p is 2/32 = 0.0625, so no 5-seed result can be
"significant at 0.05" by it; the t-test assumes normal differences).
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any


def sign_flip_p(diffs: list[float]) -> float:
    observed = abs(sum(diffs))
    flips = list(itertools.product((1, -1), repeat=len(diffs)))
    return sum(abs(sum(s * d for s, d in zip(signs, diffs, strict=True))) >= observed - 1e-12
               for signs in flips) / len(flips)


def t_test_p(diffs: list[float]) -> float | None:
    if len(diffs) < 2 or statistics.pstdev(diffs) == 0:
        return None
    from scipy import stats

    return float(stats.ttest_1samp(diffs, 0.0).pvalue)


def reach(trials: list[dict[str, Any]], target: float) -> tuple[int, int] | None:
    """(train tokens, trials started) until a COMPLETE trial first scored ``target`` or better, in the
    order the trials ran; None when none did."""
    spent = 0
    for i, t in enumerate(trials, start=1):
        spent += t["train_tokens"]
        if t["state"] == "COMPLETE" and t["value"] is not None and t["value"] >= target - 1e-12:
            return spent, i
    return None


def warm_start(auto: list[dict[str, Any]], prior: list[dict[str, Any]]) -> dict[str, Any]:
    """What a warm start (``auto_prior``: the top 3 of the same task's auto study on another split run
    first) saves against ``auto`` on the same cell: train tokens and trials until each first reached the
    validation score ``auto`` ended with, and the test accuracy of each selection."""
    per_seed = []
    for a in auto:
        w = next((x for x in prior if x["seed"] == a["seed"]), None)
        if w is None or a.get("selected_val") is None:
            continue
        cold, warm = reach(a["trials"], a["selected_val"]), reach(w["trials"], a["selected_val"])
        per_seed.append({"seed": a["seed"], "target_val": a["selected_val"], "auto": cold, "auto_prior": warm,
                         "test_diff": w["test_accuracy"] - a["test_accuracy"],
                         "tokens_auto": a["train_tokens"], "tokens_auto_prior": w["train_tokens"]})
    both = [r for r in per_seed if r["auto"] and r["auto_prior"]]
    return {"seeds": [r["seed"] for r in per_seed], "per_seed": per_seed,
            "reached": sum(r["auto_prior"] is not None for r in per_seed),
            "tokens_to_target_ratio": (statistics.mean(r["auto_prior"][0] / r["auto"][0] for r in both)
                                       if both else None),
            "trials_to_target": ((statistics.mean(r["auto"][1] for r in both),
                                  statistics.mean(r["auto_prior"][1] for r in both)) if both else None),
            "mean_test_diff": statistics.mean(r["test_diff"] for r in per_seed) if per_seed else None}


def warm_start_line(task_name: str, w: dict[str, Any]) -> str:
    n = len(w["seeds"])
    if not n:
        return f"- {task_name}: warm start: no paired seeds"
    ratio = "n/a" if w["tokens_to_target_ratio"] is None else f"{w['tokens_to_target_ratio']:.2f}×"
    trials = ("n/a" if w["trials_to_target"] is None else
              f"{w['trials_to_target'][1]:.1f} trials instead of {w['trials_to_target'][0]:.1f}")
    return (f"- {task_name}: warm start (auto_prior) reached auto's final validation score on {w['reached']} of "
            f"{n} seeds, with {ratio} auto's train tokens to get there ({trials}); test accuracy "
            f"{w['mean_test_diff']:+.4f} vs auto.")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", default=str(Path(__file__).parents[2] / "docs" / "benchmarks" / "search"))
    args = p.parse_args()
    out = Path(args.out)
    rows = [json.loads(f.read_text()) for f in sorted((out / "cells").glob("*.json"))]
    by: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        by[r["task"]][r["arm"]].append(r)
    summary: dict[str, Any] = {}
    lines = ["| task | arm | seeds | test accuracy (mean ± sd) | train tokens (mean) | tokens vs peer | "
             "search wall s | selected val. acc. | trials (pruned) |", "|---|---|---|---|---|---|---|---|---|"]
    verdicts = []
    for task_name in sorted(by):
        arms = by[task_name]
        summary[task_name] = {}
        peer_tokens = statistics.mean(r["train_tokens"] for r in arms["peer"]) if arms.get("peer") else None
        for arm in sorted(arms, key=lambda a: ("peer", "auto", "default").index(a) if a in ("peer", "auto", "default")
                          else 9):
            rs = arms[arm]
            acc = [r["test_accuracy"] for r in rs]
            tok = statistics.mean(r["train_tokens"] for r in rs)
            wall = statistics.mean(r.get("search_wall_s", 0.0) for r in rs)
            vals = [r["selected_val"] for r in rs if r.get("selected_val") is not None]
            n_trials = statistics.mean(len(r["trials"]) for r in rs)
            pruned = statistics.mean(sum(t["state"] == "PRUNED" for t in r["trials"]) for r in rs)
            summary[task_name][arm] = {"seeds": len(rs), "test_accuracy": statistics.mean(acc),
                                       "test_accuracy_sd": statistics.stdev(acc) if len(acc) > 1 else 0.0,
                                       "train_tokens": tok, "search_wall_s": wall,
                                       "selected_val_accuracy": statistics.mean(vals) if vals else None,
                                       "trials": n_trials, "pruned": pruned, "seed_list": sorted(r["seed"] for r in rs)}
            ratio = f"{tok / peer_tokens:.2f}" if peer_tokens else "–"
            sd = summary[task_name][arm]["test_accuracy_sd"]
            lines.append(f"| {task_name} | {arm} | {len(rs)} | {statistics.mean(acc):.4f} ± {sd:.4f} | {tok:,.0f} | "
                         f"{ratio} | {wall:.0f} | {statistics.mean(vals):.4f} | {n_trials:.1f} ({pruned:.1f}) |"
                         if vals else f"| {task_name} | {arm} | {len(rs)} | {statistics.mean(acc):.4f} ± {sd:.4f} | "
                         f"{tok:,.0f} | {ratio} | {wall:.0f} | – | – |")
        if arms.get("peer") and arms.get("auto"):
            peer = {r["seed"]: r["test_accuracy"] for r in arms["peer"]}
            auto = {r["seed"]: r["test_accuracy"] for r in arms["auto"]}
            seeds = sorted(set(peer) & set(auto))
            diffs = [auto[s] - peer[s] for s in seeds]
            test = {"seeds": seeds, "mean_diff": statistics.mean(diffs), "diffs": diffs,
                    "wins": sum(d > 0 for d in diffs), "ties": sum(d == 0 for d in diffs),
                    "sign_flip_p": sign_flip_p(diffs), "t_test_p": t_test_p(diffs)}
            same = sum(1 for r in arms["auto"] for q in arms["peer"]
                       if r["seed"] == q["seed"] and r["selected"] == q["selected"])
            test["same_selection"] = same  # both TPE samplers are seeded with the cell seed (common draws)
            # the peer's own any-time curve at the tokens auto spent: what it had found by then
            at: list[float] = []
            for q in arms["peer"]:
                r = next((x for x in arms["auto"] if x["seed"] == q["seed"]), None)
                if r is not None:
                    seen = [b for tok, b in q["anytime"] if tok <= r["train_tokens"] and b is not None]
                    at.append(seen[-1] if seen else float("nan"))
            test["peer_best_val_at_auto_tokens"] = statistics.mean(at) if at else None
            summary[task_name]["auto_vs_peer"] = test
            tp = "n/a" if test["t_test_p"] is None else f"{test['t_test_p']:.3f}"
            verdicts.append(f"- **{task_name}**: auto − peer = {test['mean_diff']:+.4f} test accuracy over "
                            f"{len(seeds)} paired seeds ({test['wins']} wins, {test['ties']} ties; the same "
                            f"configuration selected in {same}); paired t-test p = {tp}, sign-flip p = "
                            f"{test['sign_flip_p']:.3f}.")
        for arm in sorted(a for a in arms if a not in ("peer", "auto", "default")):
            if not arms.get("auto"):
                break
            auto = {r["seed"]: r["test_accuracy"] for r in arms["auto"]}
            other = {r["seed"]: r["test_accuracy"] for r in arms[arm]}
            seeds = sorted(set(auto) & set(other))
            diffs = [other[s_] - auto[s_] for s_ in seeds]
            if not diffs:
                continue
            test = {"seeds": seeds, "mean_diff": statistics.mean(diffs), "diffs": diffs,
                    "wins": sum(d > 0 for d in diffs), "losses": sum(d < 0 for d in diffs),
                    "sign_flip_p": sign_flip_p(diffs), "t_test_p": t_test_p(diffs)}
            summary[task_name][f"{arm}_vs_auto"] = test
            tp = "n/a" if test["t_test_p"] is None else f"{test['t_test_p']:.3f}"
            verdicts.append(f"- {task_name}: {arm} − auto = {test['mean_diff']:+.4f} over {len(seeds)} paired seeds "
                            f"({test['wins']} better, {test['losses']} worse); paired t-test p = {tp}, sign-flip "
                            f"p = {test['sign_flip_p']:.3f}.")
        if arms.get("auto_prior") and arms.get("auto"):
            summary[task_name]["warm_start"] = warm_start(arms["auto"], arms["auto_prior"])
            verdicts.append(warm_start_line(task_name, summary[task_name]["warm_start"]))
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    (out / "results.md").write_text("\n".join(lines) + "\n\n" + "\n".join(verdicts) + "\n")
    print("\n".join(lines))
    print("\n".join(verdicts))


if __name__ == "__main__":
    main()
