"""Run strategies against synthetic curves (`lmtune.strategies.toy`) in-process, in milliseconds.

Three drivers, all counting cost the same way, as total units trained:

* `simulate_pbt`: a `PBT` population on simulated workers of different speeds, asynchronously, with a
  checkpoint store that deletes whatever ``checkpoints_needed()`` no longer lists (so a strategy that
  hands out a deleted checkpoint fails loudly here instead of on a real study).
* `simulate_random`: random search over fixed configurations, every trial trained to ``max_units``.
* `simulate_optuna`: any Optuna sampler and pruner (median, successive halving/ASHA, Hyperband) with
  an in-memory study; each unit is reported as a step, a pruned trial stops and costs only the units
  it trained.

Each returns a `SimResult` whose ``best_quality`` is the noise-free quality of the selected result,
so strategies can be compared on what they actually found, not on a lucky measurement.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import optuna

from lmtune.space import Space
from lmtune.strategies.decisions import Exploit, Stop
from lmtune.strategies.pbt import PBT
from lmtune.strategies.toy import Curve, CurveFactory


@dataclass(frozen=True)
class SimResult:
    """What a simulated study found and what it cost.

    ``best_score``: the measured score of the selected result; ``best_quality``: its noise-free value.
    ``total_units``: units trained by all trials/members together. ``stopped_early``: trials pruned.
    PBT only: ``exploits``, ``max_checkpoints`` (most checkpoints held at once) and ``schedule`` of the
    best checkpoint.
    """

    best_score: float
    best_quality: float
    best_config: dict[str, Any]
    total_units: int
    trials: int
    stopped_early: int = 0
    exploits: int = 0
    max_checkpoints: int = 0
    schedule: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class _Run:
    """One member on the simulated cluster."""

    curve: Curve
    config: dict[str, Any]
    rng: random.Random
    finished: bool = False


def simulate_pbt(pbt: PBT, curve_factory: CurveFactory, *, workers: int | Sequence[float], seed: int = 0,
                 budget_units: int | None = None) -> SimResult:
    """Run ``pbt`` until every member is stopped or ``budget_units`` units have been trained.

    ``workers``: the seconds one unit takes on each worker, or a count (then each worker's time per
    unit is drawn from [1, 3) with ``seed``). A worker trains one member unit by unit and reports every
    unit; at a checkpoint it hands the member back if another member is waiting, then takes the member
    with the fewest units. Exploits restore the copied checkpoint (no restart cost is modelled).
    """
    rng = random.Random(f"simulate_pbt:{seed}")
    times = [rng.uniform(1.0, 3.0) for _ in range(workers)] if isinstance(workers, int) else list(workers)
    runs = {m: _Run(curve_factory(), pbt.initial_config(m), random.Random(f"simulate_pbt:{seed}:{m}"))
            for m in range(pbt.population_size)}
    store: dict[tuple[int, int], Curve] = {}
    waiting, seq = list(runs), 0
    queue: list[tuple[float, int, int]] = []
    owner: list[int | None] = [None] * len(times)
    total = exploits = max_ckpts = 0
    for w in range(len(times)):
        owner[w] = _take(waiting, runs)
        if owner[w] is not None:
            heapq.heappush(queue, (times[w], seq := seq + 1, w))
    while queue and (budget_units is None or total < budget_units):
        now, _, w = heapq.heappop(queue)
        m = owner[w]
        assert m is not None
        exploited = _step(pbt, m, runs[m], store)
        total, exploits = total + 1, exploits + exploited
        needed = pbt.checkpoints_needed()
        store = {k: v for k, v in store.items() if k in needed}
        max_ckpts = max(max_ckpts, len(store))
        if runs[m].finished or (pbt.checkpoint_due(runs[m].curve.units) and waiting):
            if not runs[m].finished:
                waiting.append(m)
            owner[w] = _take(waiting, runs)
        if owner[w] is not None:
            heapq.heappush(queue, (now + times[w], seq := seq + 1, w))
    return _pbt_result(pbt, store, total, exploits, max_ckpts)


def _take(waiting: list[int], runs: Mapping[int, _Run]) -> int | None:
    """Remove and return the waiting member with the fewest units (lowest id on ties)."""
    if not waiting:
        return None
    m = min(waiting, key=lambda i: (runs[i].curve.units, i))
    waiting.remove(m)
    return m


def _step(pbt: PBT, m: int, run: _Run, store: dict[tuple[int, int], Curve]) -> int:
    """Train member ``m`` one unit, report, and carry out the decision. Returns 1 on an exploit."""
    run.curve.train(run.config, run.rng)
    units = run.curve.units
    if pbt.checkpoint_due(units):
        store[(m, units)] = run.curve.clone()
    decision = pbt.report(m, units, run.curve.evaluate(run.rng))
    if isinstance(decision, Stop):
        run.finished = True
    if not isinstance(decision, Exploit):
        return 0
    key = (decision.source.owner, decision.source.units)
    if key not in store:
        raise RuntimeError(f"PBT asked member {m} to copy checkpoint {key}, which was already deleted")
    run.curve, run.config = store[key].clone(), dict(decision.hparams)
    return 1


def _pbt_result(pbt: PBT, store: Mapping[tuple[int, int], Curve], total: int, exploits: int,
                max_ckpts: int) -> SimResult:
    best = pbt.best()
    if best is None:
        raise RuntimeError("PBT reported no checkpoint; budget_units is smaller than ready_units")
    return SimResult(best_score=best.score, best_quality=store[(best.member, best.units)].quality,
                     best_config=best.config, total_units=total, trials=pbt.population_size,
                     exploits=exploits, max_checkpoints=max_ckpts, schedule=best.schedule)


def simulate_random(space: Space, curve_factory: CurveFactory, *, n_trials: int, max_units: int,
                    seed: int = 0) -> SimResult:
    """Random search: ``n_trials`` configurations drawn from ``space``, each trained for ``max_units``
    units with its configuration fixed; the best final score wins. Costs ``n_trials * max_units``."""
    rng = random.Random(f"simulate_random:{seed}")
    results: list[tuple[float, float, dict[str, Any]]] = []
    for _ in range(n_trials):
        config, curve = space.sample(rng), curve_factory()
        for _ in range(max_units):
            curve.train(config, rng)
        results.append((curve.evaluate(rng), curve.quality, config))
    score, quality, config = max(results, key=lambda r: r[0])
    return SimResult(best_score=score, best_quality=quality, best_config=config,
                     total_units=n_trials * max_units, trials=n_trials)


def simulate_optuna(*, space: Space, curve_factory: CurveFactory, sampler: optuna.samplers.BaseSampler,
                    pruner: optuna.pruners.BasePruner, n_trials: int, max_units: int, seed: int = 0,
                    quiet: bool = True) -> SimResult:
    """Sequential trials in an in-memory study (direction maximize). Each trial reports its score after
    every unit as step ``units``; when ``trial.should_prune()`` says so, it is told PRUNED and stops.
    The best *completed* trial wins; results are reproducible given the sampler's seed and ``seed``.
    ``quiet`` silences Optuna's per-trial log lines meanwhile."""
    verbosity = optuna.logging.get_verbosity()
    if quiet:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        # A fixed name: Hyperband assigns trials to brackets by hashing the study name.
        study = optuna.create_study(direction="maximize", sampler=sampler, pruner=pruner,
                                    study_name=f"lmtune-simulate-{seed}")
        rng, quality, total = random.Random(f"simulate_optuna:{seed}"), {}, 0
        for _ in range(n_trials):
            trial = study.ask()
            units, curve = _run_trial(trial, space.suggest(trial), curve_factory(), max_units, rng)
            total += units
            quality[trial.number] = curve.quality
    finally:
        optuna.logging.set_verbosity(verbosity)
    best = study.best_trial
    pruned = sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials)
    return SimResult(best_score=float(best.value or 0.0), best_quality=quality[best.number],
                     best_config=dict(best.params), total_units=total, trials=n_trials, stopped_early=pruned)


def _run_trial(trial: optuna.trial.Trial, config: Mapping[str, Any], curve: Curve, max_units: int,
               rng: random.Random) -> tuple[int, Curve]:
    """Train, report every unit and tell the study; returns the units trained and the final curve."""
    score = float("nan")
    for units in range(1, max_units + 1):
        curve.train(config, rng)
        score = curve.evaluate(rng)
        trial.report(score, step=units)
        if units < max_units and trial.should_prune():
            trial.study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            return units, curve
    trial.study.tell(trial, score)
    return max_units, curve


__all__ = ["SimResult", "simulate_optuna", "simulate_pbt", "simulate_random"]
