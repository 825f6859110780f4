"""PBT decisions: truncation selection at equal units, lineage, checkpoint retention, resume."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from lmtune.space import CategoricalParam, FloatParam, IntParam, Space
from lmtune.strategies.decisions import CheckpointRef, Continue, Exploit, Stop
from lmtune.strategies.pbt import PBT
from lmtune.strategies.toy import ToyCurve

SPACE = Space((
    FloatParam(name="learning_rate", low=1e-5, high=1e-2, log=True),
    FloatParam(name="weight_decay", low=0.0, high=0.1),
    CategoricalParam(name="precision", choices=("fp32", "bf16")),  # immutable by default
    IntParam(name="lora_r", low=4, high=64, log=True),  # immutable by default
))
IMMUTABLE = ("precision", "lora_r")


def make(**kw: Any) -> PBT:
    args: dict[str, Any] = {"space": SPACE, "population_size": 4, "ready_units": 10, "max_units": 100,
                            "seed": 7}
    pbt = PBT(**{**args, **kw})
    for m in range(pbt.population_size):
        pbt.initial_config(m)
    return pbt


def test_initial_configs_are_deterministic_in_space_and_honour_fixed() -> None:
    a, b = PBT(space=SPACE, population_size=4, ready_units=10, max_units=100, seed=3), make(seed=3)
    configs = [a.initial_config(m) for m in range(4)]
    assert configs == [b.initial_config(m) for m in range(4)]
    assert len({json.dumps(c, sort_keys=True) for c in configs}) == 4
    assert all(SPACE.restrict(c) == c for c in configs)
    c = PBT(space=SPACE, population_size=4, ready_units=10, max_units=100, seed=3)
    fixed = c.initial_config(0, fixed={"learning_rate": 2e-5, "precision": "bf16", "lora_r": 999})
    assert fixed["learning_rate"] == 2e-5 and fixed["precision"] == "bf16" and 4 <= fixed["lora_r"] <= 64
    assert c.initial_config(0) == fixed  # idempotent
    assert c.member_state(0).schedule == [{"units": 0, "config": fixed}]


def test_no_judgement_before_quorum_or_between_ready_points() -> None:
    pbt = make()
    assert pbt.report(0, 10, 0.1) == Continue()  # alone: quorum is max(2, ceil(4 / 2)) = 2
    assert pbt.report(1, 5, 0.9) == Continue()  # not a ready point: not even recorded
    assert pbt.checkpoints_needed() == {(0, 10)}
    assert isinstance(pbt.report(1, 10, 0.9), Continue)  # the better of two
    assert pbt.report(0, 13, float("nan")) == Continue()


def test_only_the_bottom_quantile_exploits_and_copies_the_latest_checkpoint() -> None:
    pbt = make(population_size=8)  # quorum 4; k = floor(0.25 * n), at least 1
    for units, score in ((10, 0.9), (20, 0.92), (30, 0.94)):
        assert pbt.report(7, units, score) == Continue()
    assert pbt.report(6, 10, 0.8) == Continue()
    assert pbt.report(5, 10, 0.3) == Continue()  # 3 members at 10: below quorum
    assert pbt.report(4, 10, 0.6) == Continue()  # n = 4, k = 1: 4 is second worst, not in the bottom
    d = pbt.report(5, 20, 0.35)  # compared at 10 (only 2 members at 20): the worst copies the best
    assert d == Exploit(CheckpointRef(7, 30), pbt.member_state(5).config)  # member 7's LATEST checkpoint, not 10
    state = pbt.member_state(5)
    assert (state.parent, state.generation, state.units, state.checkpoint) == (7, 1, 30, (7, 30))
    assert pbt.report(3, 10, 0.85) == Continue()  # n = 5 at 10, k = 1: member 4 is the worst
    d = pbt.report(4, 20, 0.62)  # worst at 10; the best at 10 is 5 (ties go to the lower id)
    assert isinstance(d, Exploit) and pbt.member_state(4).parent == 5
    # member 5 has not saved a checkpoint of its own yet: the file to load is member 7's at 30.
    assert (d.source.owner, d.source.units) == (7, 30)
    assert pbt.checkpoints_needed() == {(7, 30), (6, 10), (3, 10)}


def test_finished_members_are_not_copied() -> None:
    pbt = make(max_units=20)
    assert pbt.report(3, 10, 0.9) == Continue()
    assert pbt.report(3, 20, 0.95) == Stop("reached max_units=20")
    assert pbt.report(0, 10, 0.1) == Continue()  # the worst, but the only better member has finished


def test_lineage_and_schedule_after_two_exploits() -> None:
    pbt = make()
    c3 = pbt.member_state(3).config
    pbt.report(3, 10, 0.9)
    pbt.report(3, 20, 0.92)
    first = pbt.report(1, 10, 0.5)
    assert isinstance(first, Exploit) and (first.source.owner, first.source.units) == (3, 20)
    assert pbt.report(1, 30, 0.95) == Continue()  # member 1 trains on with its new config, saves (1, 30)
    second = pbt.report(2, 10, 0.3)
    assert isinstance(second, Exploit) and (second.source.owner, second.source.units) == (1, 30)
    state = pbt.member_state(2)
    assert (state.generation, state.parent, state.units) == (2, 1, 30)
    assert state.schedule == [{"units": 0, "config": c3}, {"units": 20, "config": first.hparams},
                              {"units": 30, "config": second.hparams}]
    assert [m.generation for m in pbt.lineage()] == [0, 1, 2, 0]
    for d, source in ((first, c3), (second, first.hparams)):
        assert SPACE.restrict(d.hparams) == d.hparams
        assert all(d.hparams[k] == source[k] for k in IMMUTABLE)


@pytest.mark.parametrize(("direction", "good", "bad"), [
    ("maximize", 0.5, float("nan")), ("maximize", 0.5, float("-inf")), ("maximize", 0.5, float("inf")),
    ("minimize", 2.0, float("nan")), ("minimize", 2.0, float("inf")), ("minimize", 1.0, 2.0)])
def test_direction_and_non_finite_scores(direction: str, good: float, bad: float) -> None:
    pbt = make(direction=direction)
    assert pbt.report(3, 10, good) == Continue()
    assert isinstance(pbt.report(0, 10, bad), Exploit)
    best = pbt.best()
    assert best is not None and (best.member, best.score) == (3, good)


def test_stop_at_max_units_and_contract_errors() -> None:
    pbt = make(max_units=25)
    assert pbt.report(0, 25, 0.5) == Stop("reached max_units=25")
    with pytest.raises(ValueError, match="after it was stopped"):
        pbt.report(0, 26, 0.5)
    pbt.report(1, 20, 0.4)
    with pytest.raises(ValueError, match="not after its checkpoint at 20"):
        pbt.report(1, 20, 0.4)
    assert pbt.report(1, 21, 0.4) == Continue()
    assert pbt.report(1, 21, 0.4) == Continue()  # a restarted trainer may repeat units after its checkpoint
    with pytest.raises(ValueError, match="before initial_config"):
        PBT(space=SPACE, population_size=2, ready_units=1, max_units=2).report(0, 1, 0.0)
    with pytest.raises(ValueError, match="not in range"):
        pbt.initial_config(4)
    with pytest.raises(ValueError, match="quantile"):
        PBT(space=SPACE, population_size=4, ready_units=1, max_units=2, quantile=0.7)


def drive(pbt: PBT, steps: int, *, restore_at: int | None = None, seed: int = 0,
          speeds: tuple[float, ...] = (1.0,)) -> tuple[PBT, list[Any], int]:
    """An executor on toy curves that checks the retention contract after every report; returns the
    strategy, its decisions and how many exploits went back to fewer units.

    Member ``m`` trains at ``speeds[m % len(speeds)]`` units per tick. At step ``restore_at`` the strategy
    is replaced by one loaded from a JSON round trip of its ``state_dict`` (as after a driver crash)."""
    configs = {m: pbt.member_state(m).config for m in range(pbt.population_size)}
    curves = {m: ToyCurve() for m in configs}
    rngs = {m: random.Random(f"{seed}:{m}") for m in configs}
    store: dict[tuple[int, int], ToyCurve] = {}
    decisions: list[Any] = []
    rewinds = 0
    for step in range(steps):
        if step == restore_at:
            pbt = restored(pbt)
        live = [m for m in curves if not pbt.member_state(m).finished]
        if not live:
            break
        m = min(live, key=lambda i: ((curves[i].units + 1) / speeds[i % len(speeds)], i))
        curves[m].train(configs[m], rngs[m])
        units = curves[m].units
        if pbt.checkpoint_due(units):
            assert (m, units) not in pbt.checkpoints_needed(), "a needed checkpoint would be overwritten"
            store[(m, units)] = curves[m].clone()
        score = curves[m].evaluate(rngs[m]) if units % 7 else float("nan")  # an occasional diverged eval
        d = pbt.report(m, units, score)
        decisions.append(d)
        if isinstance(d, Exploit):
            parent = pbt.member_state(pbt.member_state(m).parent or 0)
            assert SPACE.restrict(d.hparams) == d.hparams
            assert all(d.hparams[k] == parent.config[k] for k in IMMUTABLE)
            rewinds += d.source.units < units
            curves[m], configs[m] = store[(d.source.owner, d.source.units)].clone(), d.hparams
        needed = pbt.checkpoints_needed()
        assert len(needed) <= pbt.population_size + 1
        store = {k: v for k, v in store.items() if k in needed}
        assert needed <= set(store), "the strategy needs a checkpoint the executor never saved"
    return pbt, decisions, rewinds


def restored(pbt: PBT) -> PBT:
    state = json.loads(json.dumps(pbt.state_dict(), allow_nan=False))
    fresh = PBT(space=pbt.space, population_size=pbt.population_size, ready_units=pbt.ready_units,
                max_units=pbt.max_units, seed=pbt.seed)
    fresh.load_state_dict(state)
    return fresh


def test_retention_contract_holds_on_a_long_run() -> None:
    pbt, decisions, _ = drive(make(population_size=6, ready_units=4, max_units=60, seed=1), 10_000)
    assert sum(isinstance(d, Exploit) for d in decisions) >= 10
    assert sum(isinstance(d, Stop) for d in decisions) == 6
    best = pbt.best()
    assert best is not None and pbt.checkpoints_needed() == {(best.member, best.units)}
    assert best.schedule[0]["units"] == 0 and best.schedule[-1]["config"] == best.config


def test_state_dict_round_trip_gives_identical_future_decisions() -> None:
    settings: dict[str, Any] = {"population_size": 6, "ready_units": 4, "max_units": 60, "seed": 5}
    whole, expected, _ = drive(make(**settings), 400, speeds=(1.0, 1.7, 2.3))
    resumed, got, _ = drive(make(**settings), 400, speeds=(1.0, 1.7, 2.3), restore_at=170)
    assert got == expected
    assert resumed.state_dict() == whole.state_dict()
    with pytest.raises(ValueError, match="settings"):
        make(**{**settings, "seed": 6}).load_state_dict(whole.state_dict())


def test_fast_and_slow_members_rewind_without_overwriting_needed_checkpoints() -> None:
    # Fast members get judged against slower ones at the units both reached, and may go back to a
    # better member's earlier checkpoint; drive() checks that no needed key is ever written again.
    _, decisions, rewinds = drive(make(population_size=8, ready_units=2, max_units=40, seed=11), 10_000,
                                  seed=3, speeds=(1.0, 1.5, 2.5, 4.0))
    assert rewinds >= 3
    assert sum(isinstance(d, Stop) for d in decisions) == 8


def test_a_member_whose_checkpoint_is_gone_starts_over_unless_that_overwrites_a_needed_key() -> None:
    pbt = make()
    assert pbt.report(0, 10, 0.9) == Continue()
    assert pbt.report(1, 10, 0.95) == Continue()
    assert pbt.report(1, 20, 0.96) == Continue()  # the best: key (1, 20)
    before = pbt.member_state(0)
    assert pbt.restart(0)  # nobody needs a key of member 0's
    after = pbt.member_state(0)
    assert after.config == before.config and after.units == 0 and after.checkpoint is None
    assert after.history == {} and after.schedule == [{"units": 0, "config": before.config}]
    assert pbt.checkpoints_needed() == {(1, 20)}
    copy = pbt.report(0, 10, 0.5)  # it trains again from units 0 and is judged like the others: worst at 10
    assert isinstance(copy, Exploit) and (copy.source.owner, copy.source.units) == (1, 20)
    state = pbt.state_dict()
    assert not pbt.restart(1)  # (1, 20) is the best checkpoint: starting over would re-save that key
    assert pbt.state_dict() == state  # refused: nothing changed
    assert not pbt.restart(1, best_gone=True)  # member 0 copied (1, 20) and has not saved its own since
    pbt.report(0, 30, 0.97)  # member 0's own checkpoint, and the new best
    assert pbt.restart(1)
    assert not pbt.restart(0)
    assert pbt.restart(0, best_gone=True)  # the best's file is the one that is gone: nothing to protect
    pbt.retire(2)
    with pytest.raises(ValueError, match="finished"):
        pbt.restart(2)
