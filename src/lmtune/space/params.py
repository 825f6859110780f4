"""Search-space parameter types and their mapping to Optuna distributions.

A parameter is a frozen value object. `Space` orders parameters so that a conditional one
(``when: {optimizer: sgd}``) is always decided after the parameters it depends on, which is what a
define-by-run sampler (Optuna's ``trial.suggest_*``) needs.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # optuna is imported where a distribution or a trial is used: the config layer never loads it
    import optuna

Value = float | int | str | bool | None


class SpaceError(ValueError):
    """An impossible or inconsistent search space. The message names the parameter and the fix."""


@dataclass(frozen=True)
class _Base:
    name: str
    when: Mapping[str, tuple[Value, ...]] = field(default_factory=dict)
    mutable: bool | None = None  # may PBT change it mid-run? None = the parameter's natural default
    grid: tuple[Value, ...] | None = None

    def active(self, assigned: Mapping[str, Any]) -> bool:
        """True when every condition in ``when`` holds for the values assigned so far."""
        return all(assigned.get(k) in allowed for k, allowed in self.when.items())


@dataclass(frozen=True)
class FloatParam(_Base):
    low: float = 0.0
    high: float = 1.0
    log: bool = False
    step: float | None = None

    def extremes(self) -> tuple[Value, ...]:
        """The smallest and the largest value (the longest training length a space allows)."""
        return (self.low, self.high)

    def distribution(self) -> optuna.distributions.BaseDistribution:
        import optuna

        return optuna.distributions.FloatDistribution(self.low, self.high, log=self.log, step=self.step)

    def grid_values(self) -> tuple[Value, ...] | None:
        if self.grid is not None:
            return self.grid
        if self.step is None:
            return None
        n = math.floor((self.high - self.low) / self.step + 1e-9)
        return tuple(round(self.low + i * self.step, 12) for i in range(n + 1))

    def sample(self, rng: random.Random) -> float:
        if self.log:
            return math.exp(rng.uniform(math.log(self.low), math.log(self.high)))
        return self.clamp(rng.uniform(self.low, self.high))

    def clamp(self, value: float) -> float:
        """Nearest value inside [low, high], on the step grid when there is a step."""
        value = min(max(value, self.low), self.high)
        if self.step is not None:
            top = math.floor((self.high - self.low) / self.step + 1e-9)
            index = min(max(round((value - self.low) / self.step), 0), top)
            value = self.low + index * self.step
        return float(value)

    def contains(self, value: Any) -> bool:
        return isinstance(value, int | float) and self.low <= float(value) <= self.high


@dataclass(frozen=True)
class IntParam(_Base):
    low: int = 0
    high: int = 1
    log: bool = False
    step: int = 1

    def extremes(self) -> tuple[Value, ...]:
        """The smallest and the largest value (the longest training length a space allows)."""
        return (self.low, self.high)

    def distribution(self) -> optuna.distributions.BaseDistribution:
        import optuna

        return optuna.distributions.IntDistribution(self.low, self.high, log=self.log, step=self.step)

    def grid_values(self) -> tuple[Value, ...]:
        return self.grid if self.grid is not None else tuple(range(self.low, self.high + 1, self.step))

    def sample(self, rng: random.Random) -> int:
        if self.log:
            return self.clamp(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))
        return int(self.low + rng.randint(0, (self.high - self.low) // self.step) * self.step)

    def clamp(self, value: float) -> int:
        """Nearest value on the step grid inside [low, high] (high itself may be off the grid)."""
        top = (self.high - self.low) // self.step
        index = min(max(round((value - self.low) / self.step), 0), top)
        return int(self.low + index * self.step)

    def contains(self, value: Any) -> bool:
        """An integral float counts (``training.epochs`` is a float field: 1.0 lies in ``int 1..4``)."""
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
                or float(value) != int(value):
            return False
        return self.low <= int(value) <= self.high


@dataclass(frozen=True)
class CategoricalParam(_Base):
    choices: tuple[Value, ...] = ()

    def extremes(self) -> tuple[Value, ...]:
        """Every choice: a categorical has no order to take the ends of."""
        return self.choices

    def distribution(self) -> optuna.distributions.BaseDistribution:
        import optuna

        return optuna.distributions.CategoricalDistribution(self.choices)

    def grid_values(self) -> tuple[Value, ...]:
        return self.grid if self.grid is not None else self.choices

    def sample(self, rng: random.Random) -> Value:
        return rng.choice(self.choices)

    def contains(self, value: Any) -> bool:
        return value in self.choices


Param = FloatParam | IntParam | CategoricalParam


@dataclass(frozen=True)
class Space:
    """An ordered set of parameters; conditions may only refer to parameters listed before."""

    params: tuple[Param, ...] = ()

    def __post_init__(self) -> None:
        seen: set[str] = set()
        by_name: dict[str, Param] = {}
        for p in self.params:
            if p.name in seen:
                raise SpaceError(f"search.space.{p.name}: listed twice")
            for dep, allowed in p.when.items():
                if dep not in seen:
                    raise SpaceError(
                        f"search.space.{p.name}: condition on '{dep}', which is not a parameter listed "
                        f"before it; list '{dep}' in search.space above '{p.name}'"
                    )
                if not any(by_name[dep].contains(v) for v in allowed):
                    raise SpaceError(
                        f"search.space.{p.name}: its condition {dep} in {list(allowed)} can never hold ({dep} "
                        f"takes {_values_of(by_name[dep])}), so {p.name} would never be searched; fix the "
                        "condition or drop the parameter")
            seen.add(p.name)
            by_name[p.name] = p

    def __iter__(self) -> Iterator[Param]:
        return iter(self.params)

    def __len__(self) -> int:
        return len(self.params)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)

    def get(self, name: str) -> Param | None:
        return next((p for p in self.params if p.name == name), None)

    def suggest(self, trial: optuna.trial.Trial) -> dict[str, Any]:
        """Ask ``trial`` for every active parameter, in order. Inactive ones are not suggested at all,
        so Optuna records only the parameters that took effect."""
        assigned: dict[str, Any] = {}
        for p in self.params:
            if p.active(assigned):
                assigned[p.name] = _suggest(trial, p)
        return assigned

    def sample(self, rng: random.Random) -> dict[str, Any]:
        """A uniform (log-uniform where declared) draw of the active parameters."""
        assigned: dict[str, Any] = {}
        for p in self.params:
            if p.active(assigned):
                assigned[p.name] = p.sample(rng)
        return assigned

    def restrict(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """The subset of ``config`` that is active and inside the space (used to enqueue defaults)."""
        out: dict[str, Any] = {}
        for p in self.params:
            if p.active(out) and p.name in config and p.contains(config[p.name]):
                value = config[p.name]
                out[p.name] = int(value) if isinstance(p, IntParam) else value
        return out

    def outside(self, config: Mapping[str, Any]) -> list[str]:
        """Names of parameters active under ``config`` whose value there is missing or out of range."""
        assigned: dict[str, Any] = {}
        bad: list[str] = []
        for p in self.params:
            if not p.active(assigned):
                continue
            if p.name in config and p.contains(config[p.name]):
                assigned[p.name] = config[p.name]
            else:
                bad.append(p.name)
        return bad

    def grid(self) -> list[dict[str, Any]]:
        """Every valid combination of grid values; conditional parameters expand only where active.

        Raises SpaceError for a continuous dimension without ``grid`` values or ``step``.
        """
        for p in self.params:
            if p.grid_values() is None:
                raise SpaceError(
                    f"search.space.{p.name}: strategy 'grid' needs a finite set of values, but this float "
                    f"range [{getattr(p, 'low', '?')}, {getattr(p, 'high', '?')}] is continuous; add "
                    f"'grid: [v1, v2, ...]' or 'step: ...' to it, or use strategy 'random' or 'bayes'"
                )
        combos: list[dict[str, Any]] = [{}]
        for p in self.params:
            values = p.grid_values() or ()
            nxt: list[dict[str, Any]] = []
            for c in combos:
                if p.active(c):
                    nxt.extend({**c, p.name: v} for v in values)
                else:
                    nxt.append(c)
            combos = nxt
        return combos



def _suggest(trial: optuna.trial.Trial, p: Param) -> Any:
    if isinstance(p, FloatParam):
        return trial.suggest_float(p.name, p.low, p.high, log=p.log, step=p.step)
    if isinstance(p, IntParam):
        return trial.suggest_int(p.name, p.low, p.high, log=p.log, step=p.step)
    return trial.suggest_categorical(p.name, p.choices)  # type: ignore[arg-type]


def _values_of(param: Param) -> str:
    if isinstance(param, CategoricalParam):
        return str(list(param.choices))
    return f"values in [{param.extremes()[0]}, {param.extremes()[1]}]"
