"""Synchronous successive halving sized to a budget, with continuation (``search.strategy: halving``, and
``auto`` under a token budget): the plan only; `lmtune.schedulers.halving.HalvingScheduler` runs it.

Every configuration is planned at the same length (the longest the space allows), so all share one learning-rate
schedule and are compared at equal data. ``n`` configurations train to the first rung and pause there (an exact
checkpoint); the best ``1/factor`` of them by the pruning metric at that rung go on *from where they paused* to the
next rung, and so on to the end, where the finalists' final scores select. Nothing is trained twice, and no
configuration is trained to its end before it has beaten the others at every rung.

Sized to the budget: ``n`` is the largest number of configurations whose plan fits the budget, and what that plan
leaves promotes more configurations to the highest rungs it pays for and draws more for the first rung (`fill`);
what is left after that, less than a rung's step, moves rungs later (`shift`). So the budget is spent rather than
left over. Why it is built: on the recorded tables (docs/benchmarks/search-replay.md) the sequential, asynchronous
ASHA that ``auto`` ran before trained its first trials to their end with nothing to compare them with, and a
budget of 3 default runs went to the default and one random draw.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# the share of a budget a plan spends at least (where one configuration's length allows)
SPEND = 0.95
# the share of its budget's units below which a plan that chooses its finalist early looks for one that chooses
# later and spends more (`_spend_more`): above SPEND, since a plan is counted in evaluation units of the split's
# mean tokens and trials train real ones (a live search planned at 95.2 % of its units spent 93.7 % of its tokens)
AIM = 0.97

__all__ = ["HalvingPlan", "deciding_rung", "default_first_rung", "earliest_choice", "fill", "halving_rungs",
           "plan_halving", "resize", "shift"]


@dataclass(frozen=True)
class HalvingPlan:
    """Rungs in evaluation units (the last is the full length) and how many configurations train to each."""

    rungs: tuple[int, ...]
    sizes: tuple[int, ...]
    factor: int = 2  # the reduction factor the sizes were planned with (`resize` plans again with it)

    @property
    def configurations(self) -> int:
        return self.sizes[0]

    @property
    def cost_units(self) -> int:
        """Evaluation units trained in all: a promoted configuration goes on from where it paused."""
        return _cost(self.sizes, self.rungs)

    def checkpoint_every(self) -> int:
        """Units between the checkpoints a trial saves so that it can pause at every rung but the last: their
        greatest common divisor."""
        return math.gcd(*self.rungs[:-1]) if len(self.rungs) > 1 else 0


def default_first_rung(units_per_epoch: float) -> int:
    """The first rung when search.min_units is unset: a quarter of an epoch (at least one evaluation). On the
    recorded tables a quarter epoch (2 of 8 evaluations per epoch) beat one evaluation, half an epoch and a whole
    one at 3x to 10x budgets (docs/benchmarks/search-replay.md)."""
    return max(1, round(units_per_epoch / 4))


def halving_rungs(max_units: int, first: int, factor: int) -> tuple[int, ...]:
    """``first``, ``first * factor``, ... below ``max_units``, then ``max_units``."""
    if max_units < 1 or first < 1 or factor < 2:
        raise ValueError(f"halving rungs need max_units >= 1, first >= 1, factor >= 2; got {max_units}, {first}, "
                         f"{factor}")
    rungs, r = [], first
    while r < max_units:
        rungs.append(r)
        r *= factor
    rungs.append(max_units)
    return tuple(rungs)


def _sizes(n: int, rungs: tuple[int, ...], factor: int) -> list[int]:
    sizes = [n]
    for _ in rungs[1:]:
        sizes.append(max(1, sizes[-1] // factor))
    return sizes


def _cost(sizes: tuple[int, ...] | list[int], rungs: tuple[int, ...]) -> int:
    prev, total = 0, 0
    for n, r in zip(sizes, rungs, strict=True):
        total += n * (r - prev)
        prev = r
    return total


def _most_that_fit(rungs: tuple[int, ...], factor: int, room: float, start: int, most: int) -> int:
    """From ``start`` up to ``most``: the most configurations whose halving over ``rungs`` costs at most
    ``room`` units."""
    n = start
    while n < most and _cost(_sizes(n + 1, rungs, factor), rungs) <= room:
        n += 1
    return n


def fill(sizes: list[int], rungs: tuple[int, ...], room: float, most: int) -> list[int]:
    """Spend what a plan leaves: promote one more configuration to the highest rung it can still pay for (more
    finalists first; never more than reached the rung below), and then draw more configurations for the first
    rung (at most ``most`` in all), while the units left allow."""
    sizes = list(sizes)
    left = room - _cost(sizes, rungs)
    while True:
        for k in range(len(rungs) - 1, -1, -1):
            step = rungs[k] - (rungs[k - 1] if k else 0)
            if (sizes[k] < sizes[k - 1] if k else sizes[0] < most) and step <= left:
                sizes[k] += 1
                left -= step
                break
        else:
            return sizes


def shift(sizes: list[int], rungs: tuple[int, ...], room: float) -> tuple[int, ...]:
    """Spend what is still left (less than a rung's step) by moving rungs later, the earliest first: moving rung
    ``k`` one unit later costs one unit for each configuration that stops there (those that go on train that
    unit anyway), and gives the cut there one more evaluation's worth of data."""
    out = list(rungs)
    left = room - _cost(sizes, tuple(out))
    moved = True
    while moved:
        moved = False
        for k in range(len(out) - 1):
            cost = sizes[k] - sizes[k + 1]
            if 0 < cost <= left and out[k] + 1 < out[k + 1]:
                out[k] += 1
                left -= cost
                moved = True
                break
    return tuple(out)


def resize(plan: HalvingPlan, room_units: float, *, least: int) -> HalvingPlan:
    """``plan``'s rungs sized again for ``room_units`` in all (what was trained counted in): the most
    configurations, at most as many as planned and at least ``least`` (those that started already), whose
    halving fits, the rest spent by `fill` without drawing more. For a plan whose units turned out dearer than
    it was costed at."""
    n = _most_that_fit(plan.rungs, plan.factor, room_units, max(1, least), plan.sizes[0])
    return HalvingPlan(plan.rungs, tuple(fill(_sizes(n, plan.rungs, plan.factor), plan.rungs, room_units, n)),
                       plan.factor)


def deciding_rung(plan: HalvingPlan) -> int | None:
    """Where ``plan`` chooses the configuration it ends with: the rung of its last cut where one finalist goes
    on from there, the end where several do (their final scores choose), None for one configuration."""
    if plan.configurations < 2:
        return None
    if plan.sizes[-1] > 1:
        return plan.rungs[-1]
    return next(r for r, n in zip(reversed(plan.rungs[:-1]), reversed(plan.sizes[:-1]), strict=True) if n > 1)


def plan_halving(max_units: int, room_units: float | None, *, first: int, factor: int, most: int,
                 decide_by: int | None = None) -> HalvingPlan | None:
    """`_plan_halving`, with one correction where ``decide_by`` is given (units; ``auto``: three quarters of an
    epoch, `earliest_choice`): a plan that would choose its finalist earlier (`deciding_rung`; under a budget of about
    2 default runs the quarter-epoch plan chooses it at half an epoch) takes instead the first plan with its
    first rung later by the factor (once, twice, ...) that chooses at ``decide_by`` or later from at least two
    configurations and spends as much (or ``SPEND`` of the budget); where none does, it is kept. Fewer
    configurations, the one that goes on chosen after more training: early in training the highest learning
    rates lead on validation loss whatever they end at (short-horizon bias), and when the finalist is chosen
    that early no later rung corrects it. On the recorded tables (docs/benchmarks/search-replay.md, 100 worlds
    each, 2x budget: two configurations cut at 7 of 8 evaluations of the first epoch instead of three cut at 3
    and 4) the regret went from 2.23 to 2.12 (rotten_tomatoes), 0.97 to 0.87 (bbc_paragraphs) and 3.47 to 2.55
    (convention_party) points: the same way on all three, each within the recording's noise alone. Plans that
    choose their finalist at ``decide_by`` or later (3x budgets and up there) are unchanged: a half-epoch first
    rung there was worse."""
    plan = _plan_halving(max_units, room_units, first=first, factor=factor, most=most)
    now = None if plan is None else deciding_rung(plan)
    if decide_by is None or room_units is None or plan is None or now is None or now >= decide_by:
        return _spend_more(plan, max_units, room_units, factor=factor, most=most)
    while first * factor < max_units:
        first *= factor
        later = _plan_halving(max_units, room_units, first=first, factor=factor, most=most)
        if later is None or later.configurations < 2:
            break
        if (deciding_rung(later) or 0) >= decide_by and later.cost_units >= min(plan.cost_units,
                                                                                 SPEND * room_units):
            return _spend_more(later, max_units, room_units, factor=factor, most=most)
    # kept though it chooses early: it is also replaced where it leaves more than 1 - AIM and a plan that
    # chooses later spends more
    return _spend_more(plan, max_units, room_units, factor=factor, most=most, aim=AIM)


def _spend_more(plan: HalvingPlan | None, max_units: int, room_units: float | None, *, factor: int,
                most: int, aim: float = SPEND) -> HalvingPlan | None:
    """``plan``, or where it leaves more than ``1 - aim`` of the budget (a coarse evaluation grid: a run of
    a few evaluation units, where no rung can move one unit later for what is left) the plan with a later first
    rung, up to one rung at the end (every configuration trained to its end), that spends the most, chooses its
    finalist no earlier and keeps at least two configurations; e.g. one evaluation per half epoch, a one-epoch
    space and a budget of 2 default runs: two configurations to the end (4 of 4 units) instead of two cut at
    the first evaluation (3 of 4). `plan_halving` aims at ``AIM`` for a plan that chooses its finalist early:
    24-unit runs and a budget of 29.25 units (1.83 default runs): two configurations cut at 5 units (29 units in
    all) instead of three cut to one at 2 (28, 95.7 % of the units, about 94 % of the tokens)."""
    if plan is None or room_units is None or plan.configurations < 2 or plan.cost_units >= aim * room_units:
        return plan
    best, decides = plan, deciding_rung(plan) or 0
    for first in range(plan.rungs[0] + 1, max_units + 1):
        later = _plan_halving(max_units, room_units, first=first, factor=factor, most=most)
        if later is not None and later.configurations >= 2 and (deciding_rung(later) or 0) >= decides \
                and later.cost_units > best.cost_units:
            best = later
    return best


def earliest_choice(units_per_epoch: float) -> int:
    """Where ``auto``'s halving chooses its finalist at the earliest (`plan_halving`): three quarters of an
    epoch, in evaluation units (the quarter-epoch plan, its rungs moved as late as its budget allows, chooses
    at 3 of 4 quarters or later from 3x budgets up)."""
    return max(1, math.ceil(0.75 * units_per_epoch))


def _plan_halving(max_units: int, room_units: float | None, *, first: int, factor: int,
                  most: int) -> HalvingPlan | None:
    """The plan for a budget of ``room_units`` evaluation units (None: no budget, ``most`` configurations):
    the most configurations whose halving fits, the rest spent by `fill` and `shift`. None when not even one
    configuration can be trained to its end.

    At most one full bracket is drawn: ``factor ** (rungs - 1)`` configurations, the number from which halving
    at every rung leaves one finalist (16 for rungs at 2, 4, 8, 16 and 24 units), and more (times ``factor``)
    only where that bracket with every configuration trained to its end would leave budget over (never more than
    ``most``). A larger budget promotes more configurations instead of drawing more for the first rung, where a
    quarter epoch decides: on the recorded tables, drawing as many as the budget paid for at 10x (31) tested
    worse than 16 with the rest spent on promotions (docs/benchmarks/search-replay.md). That evidence is weak:
    a table holds 16 or fewer configurations at the longest length, so draws beyond them trained recorded runs
    again, and whether more draws (or a second bracket) help in a live space, where each draw is new, is not
    measured (docs/search.md, "What these numbers can and cannot say")."""
    rungs = halving_rungs(max_units, min(first, max_units), factor)
    if room_units is None:
        return HalvingPlan(rungs, tuple(_sizes(max(1, most), rungs, factor)), factor)
    bracket = factor ** (len(rungs) - 1)
    while bracket * max_units < room_units and bracket < most:
        bracket *= factor
    most = min(most, bracket)
    n = _most_that_fit(rungs, factor, room_units, 0, most)
    if n == 0:
        return None
    sizes = fill(_sizes(n, rungs, factor), rungs, room_units, most)
    return HalvingPlan(shift(sizes, rungs, room_units), tuple(sizes), factor)
