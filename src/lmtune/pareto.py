"""Several objectives: Pareto fronts, their order, hypervolume, and the multi-objective successive halving
rule that prunes a multi-objective study (what Optuna's pruners cannot: they compare one value per trial).
Standard library only: the schedulers, the study's readers, the report and the CLI share it.

Points are tuples of objective values already turned to "lower is better" (`oriented`), so every rule here
minimizes.

The pruning rule (`promotable`) is MOASHA's (Schmucker et al. 2021, Syne Tune): at each rung a trial goes on
when it is among the first ``max(1, n // reduction_factor)`` of the ``n`` trials that reached that rung,
ordered by non-dominated sorting (front 1, then front 2, …) and, inside a front, the best score first (as Syne
Tune's MOASHA picks), then by NSGA-II's crowding distance (the other ends of the front, then the most isolated
points). With one objective this is successive halving's rule (Optuna's ``SuccessiveHalvingPruner``: the top
``n // reduction_factor``, at least the best).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

Point = tuple[float, ...]


def oriented(values: Sequence[float], directions: Sequence[str]) -> Point:
    """``values`` turned to lower-is-better (maximized objectives negated)."""
    return tuple(-float(v) if d == "maximize" else float(v) for v, d in zip(values, directions, strict=True))


def dominates(a: Point, b: Point) -> bool:
    """``a`` is no worse than ``b`` in every objective and better in one (all minimized)."""
    return all(x <= y for x, y in zip(a, b, strict=True)) and any(x < y for x, y in zip(a, b, strict=True))


def fronts(points: Sequence[Point]) -> list[list[int]]:
    """Non-dominated sorting: the indices of the first front (no point dominates them), then of the second
    (dominated only by the first), and so on."""
    n = len(points)
    beaten_by = [0] * n
    beats: list[list[int]] = [[] for _ in range(n)]
    for i in range(n):
        for j in range(i + 1, n):
            if dominates(points[i], points[j]):
                beats[i].append(j)
                beaten_by[j] += 1
            elif dominates(points[j], points[i]):
                beats[j].append(i)
                beaten_by[i] += 1
    out: list[list[int]] = []
    current = [i for i in range(n) if beaten_by[i] == 0]
    while current:
        out.append(current)
        following: list[int] = []
        for i in current:
            for j in beats[i]:
                beaten_by[j] -= 1
                if beaten_by[j] == 0:
                    following.append(j)
        current = sorted(following)
    return out


def crowding(points: Sequence[Point], members: Sequence[int]) -> dict[int, float]:
    """NSGA-II's crowding distance of each member of one front (infinite at the ends of every objective)."""
    out = {i: 0.0 for i in members}
    if len(members) <= 2:
        return {i: math.inf for i in members}
    for k in range(len(points[members[0]])):
        ranked = sorted(members, key=lambda i: (points[i][k], i))
        lo, hi = points[ranked[0]][k], points[ranked[-1]][k]
        out[ranked[0]] = out[ranked[-1]] = math.inf
        if hi == lo:
            continue
        for a, i, b in zip(ranked, ranked[1:], ranked[2:], strict=False):
            out[i] += (points[b][k] - points[a][k]) / (hi - lo)
    return out


def order(points: Sequence[Point]) -> list[int]:
    """All indices, best first: by front; inside a front the point best on the first objective (the score)
    first, as Syne Tune's MOASHA picks, then by crowding distance (larger first), then by index (earlier
    first: the older trial wins a full tie, as in successive halving)."""
    out: list[int] = []
    for front in fronts(points):
        distance = crowding(points, front)
        lead = min(front, key=lambda i: (points[i][0], i))
        out.append(lead)
        out.extend(sorted((i for i in front if i != lead), key=lambda i: (-distance[i], i)))
    return out


def promotable(points: Sequence[Point], index: int, reduction_factor: int) -> bool:
    """Whether the point at ``index`` (one trial at a rung, among every trial that reached it) goes on: it is
    among the first ``max(1, len(points) // reduction_factor)`` of `order`."""
    keep = max(1, len(points) // reduction_factor)
    return index in order(points)[:keep]


def hypervolume(points: Sequence[Point], reference: Point) -> float:
    """The volume dominated by ``points`` and bounded by ``reference`` (all minimized; points not below the
    reference in every objective add nothing). Exact: a sweep for two objectives, inclusion by slices for
    more (fine for the few dozen points of a study)."""
    kept = [p for p in points if all(x < r for x, r in zip(p, reference, strict=True))]
    if not kept:
        return 0.0
    if len(reference) == 1:
        return reference[0] - min(p[0] for p in kept)
    if len(reference) == 2:
        volume, floor = 0.0, reference[1]
        for x, y in sorted(kept):
            if y < floor:
                volume += (reference[0] - x) * (floor - y)
                floor = y
        return volume
    # slice along the last objective: between consecutive levels the volume is the (d-1)-volume of the
    # points at or below that level
    levels = sorted({p[-1] for p in kept})
    volume = 0.0
    for a, b in zip(levels, [*levels[1:], reference[-1]], strict=True):
        below = [p[:-1] for p in kept if p[-1] <= a]
        volume += hypervolume(below, reference[:-1]) * (b - a)
    return volume
