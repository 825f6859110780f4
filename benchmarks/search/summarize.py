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
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    (out / "results.md").write_text("\n".join(lines) + "\n\n" + "\n".join(verdicts) + "\n")
    print("\n".join(lines))
    print("\n".join(verdicts))


if __name__ == "__main__":
    main()
