"""DESIGN.md: "No component receives the whole config object." Only the recipes (`Tuner`, `TwoStageTuner`,
`train_one`, the Python API, the CLI) and their set-up step `make_plan` hold a `StudyConfig`; every other
function, method and class of lmtune is given the sections (or values) it reads, as torchtune's components
are. Checked on the signatures of every module of the package: a parameter (or class attribute) annotated
with `StudyConfig` (resolved where the annotation can be, read as text where it cannot, so an alias counts
too), or named ``cfg`` (lmtune's name for the config, whatever its annotation). The check is itself tested
on a module that breaks the rule in each of those ways."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import pkgutil
import re
import sys
import types
import typing
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

import lmtune
from lmtune.config import StudyConfig

# Who may take the StudyConfig, and why: a module (all of it), a class (its methods) or a function, by
# qualified name. Every entry must still take it (tested below), so the list cannot outgrow the code.
RECIPES: dict[str, str] = {
    "lmtune.config": "the config layer itself: it builds, validates and resolves the StudyConfig (and the space "
                     "from it)",
    "lmtune.api": "the Python API's entry points: tune() and train() take a config (a path, a mapping or a "
                  "StudyConfig) and hand it to a recipe",
    "lmtune.cli": "thin commands: each loads the config and hands it to a recipe",
    "lmtune.tuner.search.Tuner": "the search recipe: reads the config top to bottom and builds each component "
                                 "(plan, budget, SearchScheduler or PBTRunner, tracker, backend) from its section",
    "lmtune.tuner.proxy.TwoStageTuner": "the two-stage recipe: a Tuner per stage, each on its stage's config",
    "lmtune.tuner.proxy.proxy_config": "the two-stage recipe's step that derives the proxy stage's config from the "
                                       "target's (a config in, a config out)",
    "lmtune.tuner.train_one.train_one": "the `lmtune train` recipe: one run through the one loop",
    "lmtune.tuner.plan.make_plan": "the recipes' set-up step: reads the config once per study into the Plan that "
                                   "components read instead (paths, tokenized data, the space, TrialBase)",
}

# What the walk must reach: the components the rule was first enforced on (a walk that checks nothing
# would pass).
COMPONENTS = (
    "lmtune.schedulers.search.SearchScheduler.__init__", "lmtune.tuner.budget.Budget.__init__",
    "lmtune.schedulers.search.auto_pins", "lmtune.schedulers.pbt.PBTRunner.__init__", "lmtune.schedulers.pbt.make_pbt",
    "lmtune.tuner.priors.prior_configs", "lmtune.study.stages.stage_entries", "lmtune.tuner.plan.TrialBase.of",
    "lmtune.tuner.plan.task_data_spec", "lmtune.tuner.plan.check_compute_metrics", "lmtune.tuner.plan.must_read",
    "lmtune.tuner.proxy.check_truncation", "lmtune.schedulers.final.FinalScheduler.__init__",
    "lmtune.execution.make_executor", "lmtune.strategies.pbt.PBT.__init__",
    "lmtune.training.session.Session.__init__",
)

_NAMED = re.compile(r"\bStudyConfig\b")


def package_modules() -> list[types.ModuleType]:
    names = [m.name for m in pkgutil.walk_packages(lmtune.__path__, "lmtune.") if not m.name.endswith("__main__")]
    return [lmtune, *(importlib.import_module(n) for n in names)]


def _mentions(tp: Any) -> bool:
    if tp is StudyConfig or (isinstance(tp, type) and issubclass(tp, StudyConfig)):
        return True
    if isinstance(tp, (str, typing.ForwardRef)):
        return bool(_NAMED.search(str(tp)))
    return any(_mentions(a) for a in typing.get_args(tp))


def _hints(obj: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """(resolved annotations, or {} where a name is only imported for type checking; raw annotations)."""
    try:
        resolved = typing.get_type_hints(obj)
    except Exception:
        resolved = {}
    try:
        raw = inspect.get_annotations(obj)
    except Exception:
        raw = {}
    return resolved, raw


def _function_takers(qualname: str, fn: Any) -> Iterator[str]:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return
    resolved, raw = _hints(fn)
    for name in params:
        if name == "cfg" or _mentions(resolved.get(name)) or _mentions(raw.get(name)):
            yield f"{qualname}({name})"


def _class_takers(qualname: str, cls: type) -> Iterator[str]:
    resolved, raw = _hints(cls)
    for name in {*resolved, *raw}:
        if _mentions(resolved.get(name)) or _mentions(raw.get(name)):
            yield f"{qualname}.{name}"
    for name, member in vars(cls).items():
        if isinstance(member, (staticmethod, classmethod)):
            member = member.__func__
        elif isinstance(member, property):
            member = member.fget
        if inspect.isfunction(member):
            yield from _function_takers(f"{qualname}.{name}", member)
        elif inspect.isclass(member) and member.__module__ == cls.__module__:
            yield from _class_takers(f"{qualname}.{name}", member)


def checked(modules: Iterable[types.ModuleType]) -> Iterator[tuple[str, list[str]]]:
    """(qualified name, its parameters or attributes that receive the whole config) for every function, class
    and method defined in ``modules``."""
    for module in modules:
        for obj in vars(module).values():
            if getattr(obj, "__module__", None) != module.__name__:
                continue  # imported: checked where it is defined
            qualname = f"{module.__name__}.{getattr(obj, '__qualname__', '')}"
            if inspect.isfunction(obj):
                yield qualname, list(_function_takers(qualname, obj))
            elif inspect.isclass(obj):
                yield qualname, list(_class_takers(qualname, obj))
                for name, member in vars(obj).items():  # so the walk's reach can be asserted per method
                    if isinstance(member, (staticmethod, classmethod)):
                        member = member.__func__
                    if inspect.isfunction(member):
                        yield f"{qualname}.{name}", []


def _allowed(taker: str, allowed: Mapping[str, str]) -> bool:
    name = taker.split("(")[0]
    return any(name == entry or name.startswith(entry + ".") for entry in allowed)


def violations(modules: Iterable[types.ModuleType], allowed: Mapping[str, str] = RECIPES) -> list[str]:
    return sorted({t for _, takers in checked(modules) for t in takers if not _allowed(t, allowed)})


def test_no_component_receives_the_whole_config() -> None:
    found = violations(package_modules())
    assert not found, ("these take the whole StudyConfig; give them the sections or values they read (a recipe "
                       "unpacks the config: see Tuner.prepare), or, for a new recipe, add it to RECIPES saying "
                       "why:\n  " + "\n  ".join(found))


def test_the_walk_reaches_the_components() -> None:
    seen = {name for name, _ in checked(package_modules())}
    assert not [c for c in COMPONENTS if c not in seen]


def test_every_recipe_entry_still_takes_the_config() -> None:
    takers = [t for _, ts in checked(package_modules()) for t in ts]
    stale = [entry for entry in RECIPES if not any(_allowed(t, {entry: ""}) for t in takers)]
    assert not stale, f"these RECIPES entries take no StudyConfig any more; remove them: {stale}"


PROBE = '''
from __future__ import annotations
from dataclasses import dataclass
from typing import Any, Optional
from lmtune.config import StudyConfig, SearchSection

Whole = StudyConfig

def component(plan: object, cfg: StudyConfig) -> None: ...
def untyped(cfg): ...
def any_typed(cfg: Any) -> None: ...
def optional(config: Optional[StudyConfig] = None) -> None: ...

class Scheduler:
    def __init__(self, plan: object, *, config: StudyConfig | None = None) -> None: ...
    @staticmethod
    def of(whole: Whole) -> None: ...
    def fine(self, search: SearchSection, *, metric: str) -> None: ...

@dataclass(frozen=True)
class Holder:
    settings: StudyConfig

def recipe(cfg: StudyConfig) -> None: ...
def fine(search: SearchSection, *, metric: str, direction: str) -> None: ...
'''


def test_the_check_fails_on_a_component_that_takes_the_config(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "probe_components.py"
    path.write_text(PROBE, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("probe_components", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "probe_components", module)  # dataclasses look their module up
    spec.loader.exec_module(module)
    found = violations([module], allowed={"probe_components.recipe": "a recipe"})
    assert set(found) >= {"probe_components.component(cfg)", "probe_components.untyped(cfg)",
                          "probe_components.any_typed(cfg)", "probe_components.optional(config)",
                          "probe_components.Scheduler.__init__(config)", "probe_components.Scheduler.of(whole)",
                          "probe_components.Holder.settings"}
    assert not [f for f in found if "fine" in f or "recipe" in f]
    assert "probe_components.recipe(cfg)" in violations([module], allowed={})
