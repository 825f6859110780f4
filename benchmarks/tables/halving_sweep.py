"""The sweep that chose `auto`'s successive halving (docs/benchmarks/search-replay.md): the simulated candidate of
`tables.candidates` (synchronous halving with continuation, sized to the budget, the practice prior's learning
rate, every configuration at the longest recorded length) over its first rung (1, 2, 4, 8 evaluations), reduction
factor (2, 3, 4), ranking metric (validation loss or accuracy) and whether the default configuration trains first
on its own (``--default-first``: the default settings instead as the halving's first configuration), at 2, 3, 5,
10 and 20 default runs, 100 worlds per cell. Prints one line per variant (mean regret per budget, in points) and
writes every cell's mean regret and budget spent as JSON.

    PYTHONPATH=src:benchmarks .venv/bin/python benchmarks/tables/halving_sweep.py --tasks rotten_tomatoes \\
        --out /tmp/halving-sweep.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import statistics
from pathlib import Path

import optuna

from tables.candidates import halving, practice_draws
from tables.table import Table

BUDGETS = (2, 3, 5, 10, 20)


def draws(table: Table, longest: float, seed: int, n: int = 800, *, default_first: bool = False) -> list[int]:
    """The distinct configurations a random search with the practice prior meets in ``n`` draws, in order (the
    candidate's pool for ``n0`` configurations is the first ``n0`` of them); ``default_first``: the default
    settings at the longest length first (what lmtune's halving draws first)."""
    first = [table.mapper()(dict(table.meta["default"]), longest)] if default_first else []
    return first + [c for c in practice_draws(table, longest, seed, tries=n) if c not in first]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", nargs="+", required=True)
    ap.add_argument("--tables", type=Path, default=Path(__file__).parent)
    ap.add_argument("--worlds", type=int, default=100)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--default-first", action="store_true",
                    help="the default settings at the longest length as the first configuration of the halving")
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    out: dict[str, list[float]] = {}
    for task in args.tasks:
        table = Table(args.tables / task)
        longest = max(float(table.configs[i]["epochs"]) for i in table.ids)
        pools = [draws(table, longest, w, default_first=args.default_first) for w in range(args.worlds)]
        for with_default, rank, first, eta in itertools.product([False, True], ["eval_loss", "eval_accuracy"],
                                                                 [1, 2, 4, 8], [2, 3, 4]):
            means = []
            for b in BUDGETS:
                regrets, spent = [], []
                for w in range(args.worlds):
                    tokens = b * table.default_tokens(w)
                    r = halving(table, w, tokens, w, first_units=first, eta=eta, rank_metric=rank,
                                with_default=with_default, pool=pools[w])
                    # a search that selected nothing leaves its user with the default configuration
                    test = r.test if math.isfinite(r.test) else table.test_score(table.default_id(), w)
                    regrets.append(table.regret(test, w))
                    spent.append(r.spent_tokens / tokens)
                key = f"{task}|default={int(with_default)}|{rank}|first={first}|factor={eta}|{b}x"
                out[key] = [statistics.mean(regrets), statistics.mean(spent)]
                means.append(round(100 * out[key][0], 2))
            print(task, f"default={with_default}", rank, f"first={first}", f"factor={eta}", means, flush=True)
    args.out.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
