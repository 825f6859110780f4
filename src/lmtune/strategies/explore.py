"""PBT's explore step and the helpers it needs: which parameters may change mid-run, and complete
configurations.

Every function here returns configurations that are *inside the space*: exactly the parameters that
are active under the space's ``when`` conditions, each with a value the parameter ``contains``.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

from lmtune.space import MUTABLE_BY_DEFAULT, CategoricalParam, FloatParam, IntParam, Param, Space


def effective_mutable(space: Space, mutable: frozenset[str] | None) -> frozenset[str]:
    """The parameters PBT may change when it explores.

    ``mutable=None`` means every parameter whose ``Param.mutable`` is true (an unset flag falls back
    to ``MUTABLE_BY_DEFAULT``). A name that is not in the space raises ``ValueError``.

    A parameter that an immutable parameter's ``when`` condition depends on, directly or through other
    conditions, is treated as immutable too: changing it would make that immutable parameter appear or
    disappear mid-run, which is a change of the immutable parameter itself.
    """
    if mutable is None:
        wanted = {p.name for p in space if _flag(p)}
    else:
        unknown = sorted(set(mutable) - set(space.names))
        if unknown:
            raise ValueError(f"mutable: {unknown} not in the search space {list(space.names)}")
        wanted = set(mutable)
    frozen = {p.name for p in space} - wanted
    changed = True
    while changed:
        ancestors = {dep for p in space if p.name in frozen for dep in p.when}
        changed = not ancestors <= frozen
        frozen |= ancestors
    return frozenset(wanted - frozen)


def complete_config(space: Space, fixed: Mapping[str, Any] | None, rng: random.Random) -> dict[str, Any]:
    """A configuration of the active parameters: the value in ``fixed`` where it is given and inside
    the space, a fresh draw from ``rng`` otherwise. Entries of ``fixed`` that are inactive or outside
    the space are ignored (as ``Space.restrict`` does)."""
    fixed = fixed or {}
    out: dict[str, Any] = {}
    for p in space:
        if not p.active(out):
            continue
        given = p.name in fixed and p.contains(fixed[p.name])
        out[p.name] = fixed[p.name] if given else sample(p, rng)
    return out


def explore(
    space: Space,
    config: Mapping[str, Any],
    *,
    mutable: frozenset[str],
    rng: random.Random,
    resample_probability: float,
    perturb_factors: tuple[float, float],
) -> dict[str, Any]:
    """A new configuration near ``config`` (the exploited member's), decided parameter by parameter in
    space order so that conditions see the new values of their parents.

    * an immutable parameter keeps its value from ``config``;
    * a mutable one is, with probability ``resample_probability``, drawn afresh from the space;
      otherwise a number is multiplied by a random one of ``perturb_factors`` and clamped (an int moves
      by at least one step when the product rounds back to the same value), and a categorical moves to
      a neighbouring choice or stays, uniformly;
    * a parameter that becomes active (its parent changed) is drawn afresh; one that becomes inactive
      is dropped.
    """
    out: dict[str, Any] = {}
    for p in space:
        if not p.active(out):
            continue
        old = config.get(p.name)
        if p.name not in config or not p.contains(old):
            out[p.name] = sample(p, rng)
        elif p.name not in mutable:
            out[p.name] = old
        elif rng.random() < resample_probability:
            out[p.name] = sample(p, rng)
        else:
            out[p.name] = perturb(p, old, rng=rng, factors=perturb_factors)
    return out


def sample(p: Param, rng: random.Random) -> Any:
    """``p.sample(rng)``, kept inside ``p`` (see `_clamp_int`)."""
    if isinstance(p, IntParam):
        return _clamp_int(p, p.sample(rng))
    return p.sample(rng)


def perturb(p: Param, value: Any, *, rng: random.Random, factors: tuple[float, float]) -> Any:
    """One perturbation of ``value`` inside parameter ``p`` (see `explore`)."""
    if isinstance(p, CategoricalParam):
        i = p.choices.index(value)
        neighbours = [j for j in (i - 1, i, i + 1) if 0 <= j < len(p.choices)]
        return p.choices[rng.choice(neighbours)]
    factor = rng.choice(factors)
    if isinstance(p, FloatParam):
        return p.clamp(value * factor)
    return _perturb_int(p, value, factor)


def _perturb_int(p: IntParam, value: int, factor: float) -> int:
    moved = _clamp_int(p, value * factor)
    if moved == value:  # 3 * 1.2 rounds back to 3: step instead, so small ints can move at all
        moved = _clamp_int(p, value + (p.step if factor > 1 else -p.step))
    return moved


def _clamp_int(p: IntParam, value: float) -> int:
    # IntParam.clamp (and so IntParam.sample) rounds to the step grid, which can overshoot `high` when
    # (high - low) is not a multiple of the step, e.g. low=0, high=13, step=5 gives 15; step back down.
    out = p.clamp(value)
    while out > p.high:
        out -= p.step
    return out


def _flag(p: Param) -> bool:
    return p.name in MUTABLE_BY_DEFAULT if p.mutable is None else bool(p.mutable)


__all__ = ["complete_config", "effective_mutable", "explore", "perturb", "sample"]
