"""The scheduler registry: each search.strategy is served by one `Scheduler` subclass, looked up (not compared as
a string in the recipe), and a new strategy plugs in by registering its own; the base class gives every method
but ``suggest`` and ``on_end`` a default."""

from __future__ import annotations

from pathlib import Path
from typing import get_args

import pytest

from lmtune.config.schema import SearchSection
from lmtune.errors import ConfigError
from lmtune.execution import FolderCheckpoints
from lmtune.protocol import Continue, Eval, Progress
from lmtune.schedulers import Launch, Scheduler, base, register, scheduler_for, strategies_served
from lmtune.schedulers.halving import HalvingScheduler
from lmtune.schedulers.pbt import PBTRunner
from lmtune.schedulers.search import SearchScheduler


def test_every_strategy_the_config_accepts_has_a_scheduler() -> None:
    strategies = get_args(SearchSection.model_fields["strategy"].annotation)
    assert set(strategies) <= set(strategies_served())
    assert scheduler_for("pbt") is PBTRunner
    assert scheduler_for("halving") is HalvingScheduler
    assert {scheduler_for(s) for s in strategies if s not in ("pbt", "halving")} == {SearchScheduler}
    assert HalvingScheduler.finished_reason == "successive halving finished"
    assert PBTRunner.finished_reason == "population finished"
    assert SearchScheduler.finished_reason == "n_trials reached"


def test_an_unknown_strategy_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"no scheduler serves 'nope'; use one of asha, auto, bayes"):
        scheduler_for("nope")


def test_a_new_strategy_registers_its_scheduler_and_one_name_has_one_scheduler(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(base, "_REGISTRY", dict(base._REGISTRY))

    @register("mine")
    class Mine(Scheduler):
        def suggest(self, device: str, threads: int) -> Launch | None:
            return None

    assert scheduler_for("mine") is Mine
    with pytest.raises(ValueError, match="strategy 'pbt' is served by PBTRunner already"):
        register("pbt")(Mine)


def test_the_base_class_defaults_are_a_fixed_list_with_nothing_kept() -> None:
    s = Scheduler()
    assert s.stop_reason() == "" and s.removable_checkpoints() == [] and not s.waiting_on_others()
    assert isinstance(s.on_eval(0, Eval(units=1, metrics={}), []), Continue)
    assert isinstance(s.checkpoints, FolderCheckpoints)  # until the loop hands it the backend's
    assert s.poll_s is None
    s.started(0, None)  # type: ignore[arg-type]
    s.on_event(0, Progress())
    s.abandon([0])
    s.on_crash(0, RuntimeError())
    with pytest.raises(NotImplementedError):
        s.suggest("cpu", 1)
    with pytest.raises(NotImplementedError):
        s.on_end(0, None)  # type: ignore[arg-type]
    assert Launch(1, None, Path("x")).key == 1  # type: ignore[arg-type]


def test_every_strategy_states_its_traits_and_no_recipe_compares_strategy_names() -> None:
    import re

    from lmtune.strategies import traits

    names = get_args(SearchSection.model_fields["strategy"].annotation)
    assert {n: traits(n).samples for n in names} == {n: n not in ("grid", "pbt") for n in names}
    assert [n for n in names if traits(n).changes_settings] == ["pbt"]
    src = Path(__file__).parents[2] / "src" / "lmtune"
    compared = re.compile(r"strategy\s*(==|!=|in\b|not in\b)\s*[\"'(]")
    found = [f"{f.relative_to(src)}:{n}" for layer in ("tuner", "schedulers", "strategies", "execution", "study")
             for f in sorted((src / layer).rglob("*.py"))
             for n, line in enumerate(f.read_text().splitlines(), 1) if compared.search(line)]
    assert found == []
