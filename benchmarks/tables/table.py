"""A recorded table (benchmarks/tables/record.py) read back for replay: configurations, their curves, and
the rule that maps a configuration a strategy proposes onto the table.

The mapping, the same for every arm: a proposed configuration trains the recorded configuration of its
own length (``epochs``, which a trial's planned length fixes) that is nearest in the normalised space —
each dimension scaled to [0, 1]: a log-scaled one (learning rate) in decades, a choice (batch size, LoRA
rank) by the index of the nearest choice (Euclidean; ties to the lower index). This is the space
restricted to the recorded configurations, as Syne Tune's blackbox repository restricts its tabulated
benchmarks, with a nearest-neighbour rule so that samplers of continuous spaces (TPE, GP) run unchanged.

Worlds: a search runs in one "world", in which every configuration was trained once: world ``w`` gives each
configuration one of its recorded seeds, drawn by a seeded hash of ``w`` and the configuration
(`Table.seed_in`). Search seed ``k`` runs in world ``k``, every arm alike, so arms stay paired, and the
intervals over search seeds include the noise of training itself (which of a configuration's runs a search
meets), not only the noise of the search. With one world per recorded seed (the first rule: every
configuration at seed ``k mod 2``), 100 searches met two sets of runs only, and a difference between arms
of a few tenths of a point could be a property of those two sets: the seed-to-seed spread of the top
third of `rotten_tomatoes`' configurations is about one point (`Table.seed_spread`).

A curve is read at any amount of training data by linear interpolation between its recorded points (8
per epoch, by training examples), so a strategy that evaluates at other points than the recording did
sees the values between them; the last point (the run's end) is exact. Test metrics exist at every second
recorded point and at the end.
"""

from __future__ import annotations

import bisect
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Run:
    config: int
    seed: int
    points: list[dict[str, float]]
    error: str | None = None

    @property
    def final(self) -> dict[str, float]:
        return self.points[-1] if self.points else {}

    def at(self, examples: float) -> dict[str, float]:
        """The curve at ``examples`` training examples: interpolated between recorded points; the end exact."""
        xs = [p["examples"] for p in self.points]
        if not xs:
            return {}
        if examples >= xs[-1]:
            return dict(self.points[-1])
        i = bisect.bisect_left(xs, examples)
        if i == 0:
            lo, hi, w = self.points[0], self.points[0], 1.0
        else:
            lo, hi = self.points[i - 1], self.points[i]
            w = (examples - lo["examples"]) / max(hi["examples"] - lo["examples"], 1e-9)
        return {k: lo[k] + w * (hi[k] - lo[k]) for k in lo if k in hi and not k.startswith("test_")}

    def test_at(self, examples: float, metric: str) -> float:
        """The test ``metric`` after ``examples`` training examples: interpolated between the points that
        measured it (every second recorded point and the end); the end exact."""
        pts = [p for p in self.points if metric in p]
        if not pts:
            return float("nan")
        if examples >= pts[-1]["examples"]:
            return float(pts[-1][metric])
        i = bisect.bisect_left([p["examples"] for p in pts], examples)
        if i == 0:
            return float(pts[0][metric])
        lo, hi = pts[i - 1], pts[i]
        w = (examples - lo["examples"]) / max(hi["examples"] - lo["examples"], 1e-9)
        return float(lo[metric] + w * (hi[metric] - lo[metric]))


class Table:
    """One recorded table: ``meta.json`` and ``runs/c<NNN>-s<seed>.json``."""

    def __init__(self, folder: Path, *, complete_only: bool = True) -> None:
        self.folder = folder
        self.meta = json.loads((folder / "meta.json").read_text())
        self.configs: list[dict[str, Any]] = self.meta["configs"]
        runs: dict[tuple[int, int], Run] = {}
        for p in sorted((folder / "runs").glob("c*-s*.json")):
            r = json.loads(p.read_text())
            c, s = int(p.stem[1:4]), int(p.stem.split("-s")[1])
            runs[(c, s)] = Run(config=c, seed=s, points=r["points"], error=r.get("error"))
        self.seeds = sorted({s for _, s in runs})
        # a configuration is in the table when every seed recorded it (a partial table replays what it has)
        self.ids = [i for i in range(len(self.configs)) if all((i, s) in runs for s in self.seeds)] \
            if complete_only else sorted({c for c, _ in runs})
        self.runs = runs
        self._best: dict[int, float] = {}
        self.rows = int(self.meta["rows"]["train"])
        self.space: dict[str, list[Any]] = {k: list(v) for k, v in self.meta["space"].items()}
        self.metric: str = self.meta.get("metric", "eval_accuracy")
        self.maximize = self.meta.get("direction", "maximize") == "maximize"
        self.test_metric = "test_" + self.metric.removeprefix("eval_")

    def _coords(self, c: dict[str, Any]) -> tuple[float, ...]:
        out = []
        for name, (kind, *v) in self.space.items():
            if name == "epochs":
                continue
            x = float(c.get(name, v[0]))
            if kind == "log":
                out.append((math.log10(x) - math.log10(v[0])) / (math.log10(v[1]) - math.log10(v[0])))
            elif kind == "float":
                out.append((x - v[0]) / (v[1] - v[0]))
            else:
                out.append(min(range(len(v)), key=lambda i: abs(float(v[i]) - x)) / max(len(v) - 1, 1))
        return tuple(out)

    def mapper(self, *, distinct: bool = True) -> Mapper:
        """One search's mapping of the configurations it proposes onto this table (`Mapper`)."""
        return Mapper(self, distinct=distinct)

    def nearest(self, hparams: dict[str, Any], epochs: float, exclude: set[int] | frozenset[int] = frozenset()) -> int:
        """The recorded configuration a trial with these settings and this length trains (module docstring).
        A length between the recorded ones (auto's last trial, planned from the budget left) trains the prefix
        of the next longer recorded length: its learning rate has not decayed as far as a run planned at that
        length would, so the replay is if anything unfair to it."""
        lengths = sorted({float(self.configs[i]["epochs"]) for i in self.ids})
        longer = [e for e in lengths if e >= epochs or math.isclose(e, epochs)]
        if not longer:
            raise KeyError(f"no recorded configuration trains {epochs} epochs or more")
        same = [i for i in self.ids if math.isclose(float(self.configs[i]["epochs"]), longer[0])]
        same = [i for i in same if i not in exclude] or same
        x = self._coords(hparams)
        return min(same, key=lambda i: (math.dist(x, self._coords(self.configs[i])), i))

    def seed_in(self, config: int, world: int) -> int:
        """The recorded seed of ``config``'s run in ``world`` (module docstring): a splitmix64 hash of both, so
        the draw is the same in every process and for every arm."""
        if len(self.seeds) == 1:
            return self.seeds[0]
        mask = (1 << 64) - 1
        h = (world * 0x9E3779B97F4A7C15 + (config + 1) * 0xBF58476D1CE4E5B9) & mask
        h = ((h ^ (h >> 30)) * 0xBF58476D1CE4E5B9) & mask
        h = ((h ^ (h >> 27)) * 0x94D049BB133111EB) & mask
        return self.seeds[(h ^ (h >> 31)) % len(self.seeds)]

    def run(self, config: int, world: int) -> Run:
        run = self.runs.get((config, self.seed_in(config, world)))
        if run is None:  # a partial table read with complete_only=False: the seed this configuration has
            run = next(self.runs[(config, s)] for s in self.seeds if (config, s) in self.runs)
        return run

    def test_score(self, config: int, world: int, examples: float | None = None) -> float:
        """The test score of ``config``'s run in ``world``: at its end, or after ``examples`` training
        examples (a trial that trained a prefix of it)."""
        run = self.run(config, world)
        if examples is not None:
            return run.test_at(examples, self.test_metric)
        return float(run.final.get(self.test_metric, float("nan")))

    def best_test(self, world: int) -> float:
        if world not in self._best:
            scores = [self.test_score(i, world) for i in self.ids]
            self._best[world] = max(scores) if self.maximize else min(scores)
        return self._best[world]

    def seed_spread(self) -> dict[str, float]:
        """How far training noise alone moves a configuration's final test score: over the configurations, the
        mean absolute difference between two recorded seeds and the seed-to-seed standard deviation it implies
        (sqrt(mean d^2 / 2)), both in the metric's units. A difference between arms smaller than this is a
        difference of which runs the table happened to record, as much as of the arms."""
        if len(self.seeds) < 2:
            nan = float("nan")
            return {"mean_abs_diff": nan, "sd": nan, "top_third_mean_abs_diff": nan, "top_third_sd": nan}
        first, second = self.seeds[:2]
        pairs = [(float(self.runs[(i, first)].final.get(self.test_metric, math.nan)),
                  float(self.runs[(i, second)].final.get(self.test_metric, math.nan))) for i in self.ids]
        pairs = [p for p in pairs if all(math.isfinite(x) for x in p)]

        def spread(ps: list[tuple[float, float]]) -> tuple[float, float]:
            d = [a - b for a, b in ps]
            return sum(abs(x) for x in d) / len(d), math.sqrt(sum(x * x for x in d) / len(d) / 2)

        # the top third by mean score: the configurations a search ends between (the collapsed runs of a too high
        # learning rate, near chance in one seed and not the other, dominate the spread of all)
        top = sorted(pairs, key=lambda p: -(p[0] + p[1]) if self.maximize else p[0] + p[1])[:max(2, len(pairs) // 3)]
        (mad, sd), (mad_top, sd_top) = spread(pairs), spread(top)
        return {"mean_abs_diff": mad, "sd": sd, "top_third_mean_abs_diff": mad_top, "top_third_sd": sd_top}

    def regret(self, test: float, world: int) -> float:
        """How far ``test`` is from the world's best configuration (>= 0; in the metric's own units)."""
        best = self.best_test(world)
        return best - test if self.maximize else test - best

    def better(self, a: float, b: float) -> bool:
        """Whether validation score ``a`` beats ``b`` in the table's direction."""
        return a > b if self.maximize else a < b

    def default_id(self) -> int:
        return 0  # record.py writes the default configuration first

    def default_tokens(self, world: int) -> int:
        """Train tokens of one default training run: the budgets' unit."""
        return int(self.run(self.default_id(), world).final["tokens"])


class Mapper:
    """One search's mapping of proposals onto a table: a proposal trains the nearest recorded configuration of
    its length (`Table.nearest`) that this search has not trained yet — the space restricted to the recorded
    configurations without repeats, as Syne Tune's blackbox repository restricts its searchers. Settings
    proposed again (a trial read at another fidelity, resumed, or selected at the end) map to the
    configuration they mapped to first. When every configuration of that length has been trained, the nearest
    is trained again. Live, a proposal near an earlier one is a new run that tells the search something; on a
    table of a few dozen configurations, mapped to the nearest alone, a model-based sampler that concentrates
    its proposals trained the same recorded run up to ten times in one search (measured: TPE + ASHA at 20x on
    28 configurations, 3-5 distinct of 11-12 completed trials), which says more about the table's sparsity
    than about the sampler. ``distinct=False``: the plain nearest, repeats allowed."""

    def __init__(self, table: Table, *, distinct: bool = True) -> None:
        self.table, self.distinct = table, distinct
        self.seen: dict[tuple[float, ...], int] = {}
        self.used: set[int] = set()

    def __call__(self, hparams: dict[str, Any], epochs: float) -> int:
        key = (round(float(epochs), 6), *(round(x, 9) for x in self.table._coords(hparams)))
        if key not in self.seen:
            config = self.table.nearest(hparams, epochs, self.used if self.distinct else frozenset())
            self.seen[key] = config
            self.used.add(config)
        return self.seen[key]
