"""Candidates for `auto`'s redesign (issue 31) that lmtune does not run yet, simulated directly on a table (as
the one-epoch rule is in `tables.arms`), to decide whether they are worth building.

``halving``: synchronous successive halving with continuation, sized to the budget. Every configuration is
planned at the longest length the space allows (auto's pinned length, so all share one schedule); the
learning rate is drawn where fine-tuning practice puts it (auto's practice prior); n configurations train to
the first rung (a fraction of an epoch), the best 1/eta of them (by validation loss at that point) go on from
where they paused to the next rung, and so on to the end; the finalists' final validation score selects. n is
the largest the budget allows, and what that plan leaves promotes more configurations to the highest rungs it
pays for (the budget spent, not left over). Why it might beat sequential ASHA at small budgets: there, the first
trial has no competitor and always runs to its end, so at 3x a default run the default and one random draw take
the budget; here no configuration is trained to the end before it has beaten the others at the first rung. On
the complete rotten_tomatoes table, among six random practice-range 3-epoch configurations the one with the
lowest validation loss at half an epoch tested 1.4 points below the best, where the one with the best final
validation accuracy tested 1.0 below (docs/benchmarks/search-replay.md).
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Iterator

import optuna

from lmtune.strategies.practice import FULL_FINETUNE_LR
from tables.arms import ArmResult, _suggest
from tables.table import Table


def practice_draws(table: Table, longest: float, seed: int, *, tries: int) -> Iterator[int]:
    """The distinct configurations at the ``longest`` length that ``tries`` random draws meet, in order, each
    learning rate drawn log-uniformly in the written range and moved onto auto's practice range (the prior
    for a full fine-tune)."""
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=seed))
    mapping = table.mapper()
    lo, hi = FULL_FINETUNE_LR
    _, written_lo, written_hi = table.space["learning_rate"]
    seen: set[int] = set()
    for _ in range(tries):
        hp = _suggest(study.ask(), table)
        u = math.log(hp["learning_rate"] / written_lo) / math.log(written_hi / written_lo)
        hp["learning_rate"] = math.exp(math.log(lo) + (math.log(hi) - math.log(lo)) * u)
        c = mapping(hp, longest)
        if c not in seen:
            seen.add(c)
            yield c


def _plan(n0: int, rungs: list[int], eta: int) -> list[int]:
    """How many configurations reach each rung, starting from n0."""
    sizes = [n0]
    for _ in rungs[1:]:
        sizes.append(max(1, sizes[-1] // eta))
    return sizes


def _cost_units(sizes: list[int], rungs: list[int]) -> int:
    """Evaluation units trained in all: each configuration goes on from where it paused (continuation)."""
    prev, total = 0, 0
    for n, r in zip(sizes, rungs, strict=True):
        total += n * (r - prev)
        prev = r
    return total


def _fill(sizes: list[int], rungs: list[int], room: float) -> list[int]:
    """Spend what the plan leaves: promote one more configuration to the highest rung it can still pay for
    (more finalists first), as long as the units left allow; at most as many as reached the rung below."""
    sizes = list(sizes)
    left = room - _cost_units(sizes, rungs)
    while True:
        for k in range(len(rungs) - 1, 0, -1):
            step = rungs[k] - rungs[k - 1]
            if sizes[k] < sizes[k - 1] and step <= left:
                sizes[k] += 1
                left -= step
                break
        else:
            return sizes


def halving(table: Table, world: int, budget_tokens: float, seed: int, *, first_units: int = 4, eta: int = 3,
            rank_metric: str = "eval_loss", with_default: bool = False, pool: list[int] | None = None) -> ArmResult:
    """The candidate (module docstring); ``pool``: the distinct configurations to take, in order, instead of
    drawing them here (`tables.halving_sweep` draws them once per world for all its variants)."""
    t0 = time.perf_counter()
    longest = max(float(table.configs[i]["epochs"]) for i in table.ids)
    per_epoch = int(table.meta["evals_per_epoch"])
    units = round(longest * per_epoch)
    rungs, r = [], first_units
    while r < units:
        rungs.append(r)
        r *= eta
    rungs.append(units)
    default = table.default_id()
    spent = 0
    finalists: list[tuple[float, int]] = []
    if with_default:
        d = table.run(default, world).final
        spent += int(d["tokens"])
        finalists.append((float(d[table.metric]), default))
    # tokens of one unit of a longest-length run (the mean of the default's: the same data, other batches)
    unit_tokens = table.default_tokens(world) / (float(table.meta["default"]["epochs"]) * per_epoch)
    left_units = (budget_tokens - spent) / unit_tokens
    n0 = 0
    while (pool is None or n0 < len(pool)) and _cost_units(_plan(n0 + 1, rungs, eta), rungs) <= left_units * 0.98:
        n0 += 1
    if n0 >= 1 and pool is not None:
        pool = pool[:n0]
    elif n0 >= 1:  # distinct configurations (a small table runs out of them)
        pool = list(itertools.islice(practice_draws(table, longest, seed, tries=50 * n0), n0))
    if n0 >= 1 and pool:
        n0 = len(pool)
        sizes = _fill(_plan(n0, rungs, eta), rungs, left_units * 0.98)
        reached = {c: 0 for c in pool}
        alive = list(pool)
        for k, (n, rung) in enumerate(zip(sizes, rungs, strict=True)):
            alive = alive[:n]
            for c in alive:
                run = table.run(c, world)
                start = run.points[reached[c] - 1]["tokens"] if reached[c] else 0.0
                spent += int(run.points[min(rung, len(run.points)) - 1]["tokens"] - start)
                reached[c] = rung
            if k + 1 < len(rungs):
                sign = -1.0 if rank_metric.endswith("loss") else 1.0
                alive.sort(key=lambda c: -sign * table.run(c, world).points[rung - 1][rank_metric])
        for c in alive:
            finalists.append((float(table.run(c, world).final[table.metric]), c))
    if not finalists:
        return ArmResult(None, float("nan"), spent, 0, 0, time.perf_counter() - t0)
    best = (max if table.maximize else min)(finalists)[1]
    return ArmResult(best, table.test_score(best, world), spent, n0 + int(with_default), 0,
                     time.perf_counter() - t0)


CANDIDATES = {
    "halving": halving,
    "halving_default": lambda *a, **k: halving(*a, with_default=True, **k),
    "halving_r2": lambda *a, **k: halving(*a, first_units=2, **k),
    "halving_r8": lambda *a, **k: halving(*a, first_units=8, **k),
    "halving_acc": lambda *a, **k: halving(*a, rank_metric="eval_accuracy", **k),
}
