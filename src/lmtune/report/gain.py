"""The gain as data: per test metric, the default's and the optimized configuration's seed values, their
means with a 95 % interval, and what each side cost. ``gain_plot`` draws it (plotly for report.html,
SVG for report.md); nothing here draws.

The interval is Student's t interval of the mean over seeds (``stats.mean_interval``): where the mean
would land again with 95 % confidence if the same number of seeds were rerun. It needs 2+ seeds.
The default side cost its final runs; the optimized side cost its final runs plus the whole search that
found it (every trial, pruned and failed ones too).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lmtune.report.stats import mean_interval, summarize
from lmtune.report.tables import ComparisonRow

__all__ = ["Cost", "GainPanel", "GainSide", "cost_text", "gain_panels"]


@dataclass(frozen=True)
class Cost:
    runs: int
    train_tokens: int
    wall_time_s: float


@dataclass(frozen=True)
class GainSide:
    label: str  # "default" | "optimized"
    seeds: list[int]
    values: list[float]  # one per seed, in seed order
    mean: float
    interval: tuple[float, float] | None  # 95 % t interval of the mean; None with one seed
    cost: Cost  # its final runs
    search: Cost | None = None  # the optimized side: the search that found it


@dataclass(frozen=True)
class GainPanel:
    metric: str
    higher_is_better: bool
    default: GainSide
    optimized: GainSide
    difference: float  # optimized mean − default mean
    verdict: str


def _side(label: str, which: str, runs: Sequence[Mapping[str, Any]], metric: str,
          search: Cost | None) -> GainSide:
    mine = sorted((r for r in runs if r.get("which") == which and metric in (r.get("metrics") or {})),
                  key=lambda r: int(r.get("seed", 0)))
    values = [float(r["metrics"][metric]) for r in mine]
    every = [r for r in runs if r.get("which") == which]
    cost = Cost(len(every), sum(int(r.get("train_tokens", 0)) for r in every),
                sum(float(r.get("wall_time_s", 0.0)) for r in every))
    return GainSide(label, [int(r.get("seed", 0)) for r in mine], values, summarize(values)[0],
                    mean_interval(values), cost, search)


def gain_panels(final: Mapping[str, Any], rows: Sequence[ComparisonRow],
                search_cost: Mapping[str, Any]) -> list[GainPanel]:
    """One panel per compared metric (the comparison table's rows, in its order)."""
    runs = list(final.get("runs", []))
    search = Cost(int(search_cost.get("n_trials", 0)), int(search_cost.get("train_tokens", 0)),
                  float(search_cost.get("wall_time_s", 0.0)))
    return [GainPanel(r.metric, r.higher_is_better, _side("default", "default", runs, r.metric, None),
                      _side("optimized", "best", runs, r.metric, search), r.difference, r.verdict)
            for r in rows]


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def _tokens(n: int) -> str:
    for size, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= size:
            return f"{n / size:.3g}{unit}"
    return str(n)


def cost_text(side: GainSide) -> str:
    """``2 runs · 6.44k tokens · 18 s``, plus ``+ search: 4 trials · 13k tokens · 28 s`` for the optimized side."""
    c = side.cost
    text = f"{c.runs} runs · {_tokens(c.train_tokens)} tokens · {_duration(c.wall_time_s)}"
    if side.search is not None:
        s = side.search
        text += f" + search: {s.runs} trials · {_tokens(s.train_tokens)} tokens · {_duration(s.wall_time_s)}"
    return text
