"""Experiment for issue 31 (2026-12-07): `auto`'s halving with its first drawn configuration at the centre of the
space it searches, the way Syne Tune's searchers start (the mid-point of each range, on a log scale where the
range is; a categorical at its first value, ``--choice first``, or an ordinal at its middle one, ``middle``),
pinned to the longest length as every configuration of the halving is. The first configuration stays the
user's default settings. Not in lmtune: the scheduler's draw is patched here, and every table arm is replayed
as in `tables.replay`. Results: docs/benchmarks/search-replay.md (the centre as the first draw).

    PYTHONPATH=src:benchmarks .venv/bin/python benchmarks/tables/centre_first.py --choice first \\
        --budgets 2 3 5 --tasks rotten_tomatoes bbc_paragraphs convention_party --data /tmp/tables-data \\
        --out /tmp/centre-first

``--choice none`` replays `auto` unpatched (the baseline, paired by world); ``--data`` holds each task's
folder (`tables.tasks.table_task`).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path
from typing import Any

from lmtune.schedulers import halving
from lmtune.space.params import CategoricalParam, FloatParam, IntParam, Space
from lmtune.study import record
from tables import arms
from tables.table import Table
from tables.tasks import table_task


def centre(space: Space, pinned: dict[str, Any], choice: str) -> dict[str, Any]:
    """The space's centre, the pinned settings left out (conditional parameters too)."""
    out: dict[str, Any] = {}
    for p in space:
        if p.name in pinned or p.when:
            continue
        if isinstance(p, FloatParam):
            out[p.name] = math.sqrt(p.low * p.high) if p.log else (p.low + p.high) / 2
        elif isinstance(p, IntParam):
            out[p.name] = round(math.sqrt(p.low * p.high) if p.log else (p.low + p.high) / 2)
        elif isinstance(p, CategoricalParam):
            out[p.name] = p.choices[0] if choice == "first" else p.choices[(len(p.choices) - 1) // 2]
    return out


def patch(choice: str) -> None:
    """The halving's second configuration (its first draw) enqueued at the centre."""
    drawn = halving.HalvingScheduler._new_config

    def new_config(self: halving.HalvingScheduler, i: int) -> Any:
        if i != 1:
            return drawn(self, i)
        plan = self.plan
        self.study.enqueue_trial({**centre(plan.space, self.pinned, choice), **self.pinned},
                                 user_attrs=record.enqueue_attrs(is_default=None))
        trial = self.study.ask()
        params = plan.space.suggest(trial)
        record.write(trial, config={**plan.defaults, **params}, trial_dir=str(plan.paths.trial_dir(trial.number)),
                     planned_examples=plan.total_examples)
        return halving._Config(i, trial, params)

    halving.HalvingScheduler._new_config = new_config  # type: ignore[method-assign]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.partition("\n\n")[0])
    ap.add_argument("--choice", choices=("first", "middle", "none"), required=True)
    ap.add_argument("--budgets", type=int, nargs="+", default=[2, 3, 5])
    ap.add_argument("--tasks", nargs="+", required=True)
    ap.add_argument("--worlds", type=int, default=100)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    if args.choice != "none":
        patch(args.choice)
    args.out.mkdir(parents=True, exist_ok=True)
    root = Path(__file__).parent
    for b in args.budgets:
        for task in args.tasks:
            path = args.out / f"{task}-{b}x-{args.choice}.json"
            if path.exists():
                continue
            table, data = Table(root / task), table_task(task, args.data).folder
            rows, t0 = [], time.time()
            for w in range(args.worlds):
                budget = b * table.default_tokens(w)
                r = arms.lmtune_arm(table, w, "auto", budget, w, data, args.out / "work")
                rows.append({"world": w, "regret": table.regret(r.test, w), "spent": r.spent_tokens / budget,
                             "selected": r.selected, "trials": r.trials})
            path.write_text(json.dumps(rows))
            print(task, f"{b}x", args.choice, f"regret {statistics.mean(x['regret'] for x in rows) * 100:.2f}",
                  f"({time.time() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
