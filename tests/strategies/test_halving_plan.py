"""The plan of synchronous successive halving (`lmtune.strategies.halving`): rungs, how many configurations reach
each, sized to a budget in evaluation units, and the budget spent rather than left over."""

from __future__ import annotations

import math

import pytest

from lmtune.strategies.halving import (
    HalvingPlan,
    _plan_halving,
    deciding_rung,
    default_first_rung,
    earliest_choice,
    fill,
    halving_rungs,
    plan_halving,
    resize,
    shift,
)


def test_rungs_grow_by_the_factor_from_the_first_to_the_full_length() -> None:
    assert halving_rungs(24, 2, 2) == (2, 4, 8, 16, 24)
    assert halving_rungs(24, 2, 3) == (2, 6, 18, 24)
    assert halving_rungs(3, 1, 2) == (1, 2, 3)
    assert halving_rungs(1, 1, 2) == (1,)
    with pytest.raises(ValueError, match="factor >= 2"):
        halving_rungs(10, 1, 1)


def test_the_first_rung_is_a_quarter_epoch() -> None:
    assert default_first_rung(8) == 2 and default_first_rung(3) == 1 and default_first_rung(1) == 1


def test_no_budget_plans_the_given_number_of_configurations() -> None:
    plan = plan_halving(24, None, first=2, factor=2, most=12)
    assert plan == HalvingPlan((2, 4, 8, 16, 24), (12, 6, 3, 1, 1))
    assert plan.cost_units == 12 * 2 + 6 * 2 + 3 * 4 + 1 * 8 + 1 * 8


@pytest.mark.parametrize("units,per_epoch", [(24, 8), (16, 8), (12, 4), (30, 10), (6, 2)])
@pytest.mark.parametrize("budget", [2, 3, 5, 10, 20])
def test_a_budget_is_spent_to_within_five_percent_and_never_overrun(units: int, per_epoch: int,
                                                                   budget: int) -> None:
    """The budget in default runs of 2 epochs; every configuration trains ``units`` to its end."""
    room = budget * 2 * per_epoch
    plan = plan_halving(units, room, first=default_first_rung(per_epoch), factor=2, most=256,
                        decide_by=earliest_choice(per_epoch))
    assert plan is not None
    assert plan.cost_units <= room
    assert plan.cost_units >= 0.95 * room, (plan, plan.cost_units, room)
    assert plan.rungs[-1] == units and list(plan.rungs) == sorted(set(plan.rungs))
    # each rung keeps at most as many as the one before, and at least one configuration reaches the end
    assert all(a >= b >= 1 for a, b in zip(plan.sizes, plan.sizes[1:], strict=False))
    # every rung but the last is a checkpoint a configuration can pause at
    every = plan.checkpoint_every()
    assert every >= 1 and all(r % every == 0 for r in plan.rungs[:-1])


def test_a_budget_too_small_for_one_configuration_to_its_end_has_no_plan() -> None:
    assert plan_halving(24, 23, first=2, factor=2, most=256) is None
    one = plan_halving(24, 24, first=2, factor=2, most=256)
    assert one is not None and one.configurations == 1 and one.cost_units == 24


def test_more_configurations_are_never_drawn_than_allowed() -> None:
    plan = plan_halving(24, 10_000, first=2, factor=2, most=40)
    assert plan is not None and plan.configurations == 40


def test_fill_promotes_to_the_highest_rung_first_then_draws_more_for_the_first() -> None:
    rungs = (2, 4, 8, 16, 24)
    assert fill([3, 1, 1, 1, 1], rungs, 30, most=100) == [3, 2, 1, 1, 1]  # 28 + one more to rung 4 (2 units)
    # 32 of 50: rung 8 (4 units) so that rung 16 can take one more (8), then rungs 4 and 8 again (2 + 4)
    assert fill([4, 2, 1, 1, 1], rungs, 50, most=100) == [4, 3, 3, 2, 1]
    assert fill([2, 1, 1, 1, 1], rungs, 31, most=100) == [3, 2, 1, 1, 1]  # rung 4, then one more at rung 2
    assert fill([2, 1, 1, 1, 1], rungs, 31, most=2) == [2, 2, 1, 1, 1]


def test_shift_moves_the_earliest_rung_it_can_pay_for() -> None:
    # 30 of 31.84 units: one configuration stops at rung 2; moving it to 3 costs 1 unit
    assert shift([3, 2, 1, 1, 1], (2, 4, 8, 16, 24), 31.84) == (3, 4, 8, 16, 24)
    assert shift([3, 2, 1, 1, 1], (2, 4, 8, 16, 24), 30) == (2, 4, 8, 16, 24)
    # a rung is never moved onto the next one
    assert shift([2, 1], (1, 2), 100) == (1, 2)
    assert math.isclose(HalvingPlan((3, 4, 8, 16, 24), (3, 2, 1, 1, 1)).cost_units, 31)


def test_a_plan_sized_again_for_dearer_units_keeps_its_rungs_and_draws_no_more() -> None:
    """`resize`: the plan's rungs for a smaller room (its units turned out dearer): the most configurations
    whose halving fits, never more than planned nor fewer than started, the rest spent by promotions."""
    plan = plan_halving(24, 200, first=2, factor=2, most=256)
    assert plan.configurations == 16 and plan.factor == 2
    assert resize(plan, 120, least=1).sizes == (16, 8, 4, 4, 3)  # all 16 still fit: fewer promotions
    for room in (80, 47, 30):
        sized = resize(plan, room, least=1)
        assert sized.rungs == plan.rungs and sized.factor == plan.factor
        assert 1 <= sized.configurations < plan.configurations
        assert room - 2 <= sized.cost_units <= room  # spent to within the first rung's step
        bigger = resize(plan, room, least=sized.configurations + 1)  # one more than fits: over the room
        assert bigger.cost_units > room or bigger.configurations == plan.configurations
    assert resize(plan, 10_000, least=1).configurations == plan.configurations  # room to spare: no new draws
    assert resize(plan, 5, least=3).configurations == 3  # those already started stay


def test_where_the_finalist_is_chosen() -> None:
    assert deciding_rung(HalvingPlan((3, 4, 8, 16, 24), (3, 2, 1, 1, 1))) == 4   # 2 -> 1 at rung 4
    assert deciding_rung(HalvingPlan((2, 4, 8, 16, 24), (16, 13, 13, 13, 13))) == 24  # 13 finalists: the end
    assert deciding_rung(HalvingPlan((24,), (1,))) is None


@pytest.mark.parametrize("units,per_epoch,default", [(24, 8, 16), (16, 8, 16), (30, 10, 20), (12, 4, 8)])
def test_a_finalist_chosen_early_in_the_first_epoch_is_chosen_later_from_fewer(units: int, per_epoch: int,
                                                                               default: int) -> None:
    """Under about 2 default runs the quarter-epoch plan picks its one finalist at half an epoch, where the
    highest learning rates lead whatever they end at; ``auto`` draws fewer configurations and chooses at three
    quarters of an epoch or later, spending as much."""
    room = 2 * default * 0.995
    first, by = default_first_rung(per_epoch), earliest_choice(per_epoch)
    early = _plan_halving(units, room, first=first, factor=2, most=256)  # the quarter-epoch plan as sized
    late = plan_halving(units, room, first=first, factor=2, most=256, decide_by=by)
    assert early is not None and late is not None
    assert deciding_rung(early) < by <= deciding_rung(late) and late.rungs[0] > early.rungs[0]
    assert 2 <= late.configurations < early.configurations
    assert late.cost_units >= min(early.cost_units, 0.95 * room) and late.cost_units <= room
    # the 3-epoch space of the recorded tables at 2x: two configurations, the cut at 7 of 8 evaluations
    if (units, per_epoch) == (24, 8):
        assert late == HalvingPlan((7, 8, 16, 24), (2, 1, 1, 1))


@pytest.mark.parametrize("units,per_epoch,default", [(24, 8, 16), (16, 8, 16), (30, 10, 20), (12, 4, 8), (8, 8, 8)])
@pytest.mark.parametrize("budget", [1, 3, 5, 10, 20])
def test_plans_that_choose_their_finalist_late_enough_are_unchanged(units: int, per_epoch: int, default: int,
                                                                    budget: int) -> None:
    room = budget * default * 0.995
    first, by = default_first_rung(per_epoch), earliest_choice(per_epoch)
    early = plan_halving(units, room, first=first, factor=2, most=256)
    assert plan_halving(units, room, first=first, factor=2, most=256, decide_by=by) == early
    assert early is None or early.configurations == 1 or deciding_rung(early) >= by


def test_no_later_plan_is_taken_that_spends_less_or_keeps_one_configuration() -> None:
    # a one-epoch space at 2.5x: the later first rung would choose too early still and spend 90 %
    room = 2.5 * 8 * 0.995
    assert plan_halving(8, room, first=2, factor=2, most=256, decide_by=6) == \
        plan_halving(8, room, first=2, factor=2, most=256)


def test_a_plan_that_leaves_more_than_five_percent_takes_a_later_first_rung_that_spends_it() -> None:
    """A coarse grid (8 evaluations a run, 1.7 runs' budget): the quarter-epoch plan trains 3 configurations and
    leaves 12 % (1.6 units, less than any rung's step); a first rung at 5 spends 96 % with 2, chosen later."""
    room = 1.7 * 8
    raw = _plan_halving(8, room, first=2, factor=2, most=64)
    assert raw == HalvingPlan((2, 4, 8), (3, 1, 1)) and raw.cost_units < 0.95 * room
    plan = plan_halving(8, room, first=2, factor=2, most=64)
    assert plan == HalvingPlan((5, 6, 8), (2, 1, 1))
    assert 0.95 * room <= plan.cost_units <= room
    assert (deciding_rung(plan) or 0) >= (deciding_rung(raw) or 0)


@pytest.mark.parametrize("units", [4, 6, 8, 12, 16, 24])
@pytest.mark.parametrize("runs", [1.3, 1.5, 1.7, 2.0, 2.5, 2.7, 3.2, 4.5])
def test_a_plan_never_spends_less_chooses_earlier_or_keeps_fewer_than_two_for_spending(units: int,
                                                                                      runs: float) -> None:
    room = runs * units * 0.995
    raw = _plan_halving(units, room, first=max(1, units // 8), factor=2, most=64)
    plan = plan_halving(units, room, first=max(1, units // 8), factor=2, most=64)
    if raw is None or raw.configurations < 2:
        assert plan == raw
        return
    assert plan is not None and raw.cost_units <= plan.cost_units <= room
    assert plan.configurations >= 2 and (deciding_rung(plan) or 0) >= (deciding_rung(raw) or 0)
    assert plan == raw or raw.cost_units < 0.95 * room  # a plan that spends 95 % is kept as it is


def test_a_plan_that_chooses_early_and_leaves_three_percent_takes_one_that_chooses_later_and_spends_it() -> None:
    """The recorded tables' geometry (24 units a run, 8 an epoch) at 1.83 default runs (29.25 units): three
    configurations cut to one at a quarter epoch spend 28 units, 95.7 %, which a live search of the same plan
    turned into 93.7 % of its tokens (units of the split's mean tokens are not the tokens trials train). No plan
    choosing at three quarters of an epoch fits; two configurations cut at 5 units spend 29, choosing later."""
    room, by = 29.25, earliest_choice(8)
    early = _plan_halving(24, room, first=2, factor=2, most=64)
    assert early == HalvingPlan((2, 4, 8, 16, 24), (3, 1, 1, 1, 1)) and 0.95 * room < early.cost_units < 0.97 * room
    plan = plan_halving(24, room, first=2, factor=2, most=64, decide_by=by)
    assert plan == HalvingPlan((5, 6, 12, 24), (2, 1, 1, 1))
    assert 0.97 * room <= plan.cost_units <= room and (deciding_rung(plan) or 0) > (deciding_rung(early) or 0)
    # a plan that chooses late enough is held to 95 % only, as before (a later one would draw fewer)
    assert plan_halving(24, 3 * 16 * 0.995, first=2, factor=2, most=64, decide_by=by) == \
        plan_halving(24, 3 * 16 * 0.995, first=2, factor=2, most=64)
