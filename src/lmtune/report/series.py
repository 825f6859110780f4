"""Series-shaped report tables: learning curves, PBT lineage, proxy→target transfer, importances.

Pure functions over Optuna trials (and, for importances, the study); nothing here draws. They read the
user attrs the tuner writes: ``curve`` (list of ``{"step", "units", "examples", "tokens", "metrics"}``),
``pbt`` (``{"member", "generation", "parent_trial", "schedule"}``), ``proxy_value``, ``train_tokens``
and ``wall_time_s``. A missing or malformed attr is skipped rather than raised on.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.importance import FanovaImportanceEvaluator
from optuna.trial import FrozenTrial, TrialState

from lmtune.report._trials import cost_totals, finite_value
from lmtune.report.stats import spearman
from lmtune.study import record

__all__ = [
    "FEW_TRIALS_FOR_IMPORTANCES",
    "MIN_TRANSFER_PAIRS",
    "MIN_TRANSFER_RHO",
    "ComputeSeries",
    "Curve",
    "Importances",
    "Lineage",
    "LineageNode",
    "TransferPair",
    "TransferSummary",
    "compute_series",
    "expected_best",
    "importances",
    "learning_curves",
    "pbt_lineage",
    "transfer_summary",
]

MIN_TRANSFER_RHO = 0.5
MIN_TRANSFER_PAIRS = 3
FEW_TRIALS_FOR_IMPORTANCES = 10  # below this, the report warns that importances are noise-dominated


@dataclass(frozen=True)
class Curve:
    """One trial's learning curve: ``(train examples seen, metric value)`` points, sorted."""

    number: int
    state: str
    is_default: bool
    points: list[tuple[int, float]]


def _curve_points(trial: FrozenTrial, metric: str) -> list[tuple[int, float]]:
    points = []
    for entry in record.read(trial).curve:
        x = entry.get("examples", entry.get("units", entry.get("step")))
        y = (entry.get("metrics") or {}).get(metric)
        if isinstance(x, int | float) and isinstance(y, int | float) and math.isfinite(y):
            points.append((int(x), float(y)))
    return sorted(points)


def learning_curves(trials: Sequence[FrozenTrial], metric: str) -> list[Curve]:
    """Each trial's ``curve`` attr reduced to ``(units, metrics[metric])``, for trials with any point.

    All states are returned (FAIL included, with its state) so the caller decides what to draw;
    ``units`` falls back to ``step`` for curve entries without it.
    """
    curves = []
    for trial in sorted(trials, key=lambda t: t.number):
        points = _curve_points(trial, metric)
        if points:
            is_default = record.read(trial).is_default
            curves.append(Curve(trial.number, trial.state.name, is_default, points))
    return curves


@dataclass(frozen=True)
class LineageNode:
    """One PBT trial: a member's generation, the trial it continued from, and its value."""

    trial: int
    member: int
    generation: int
    parent_trial: int | None
    value: float | None
    state: str


@dataclass(frozen=True)
class Lineage:
    """PBT population history: nodes, ``(parent_trial, trial)`` edges and per-member schedules.

    ``schedules[member]`` is the ``schedule`` attr of that member's latest generation (a list of
    ``{"units", "config"}`` steps). ``best_member`` owns the best COMPLETE trial, if any.
    """

    nodes: list[LineageNode]
    edges: list[tuple[int, int]]
    schedules: dict[int, list[dict[str, Any]]]
    best_member: int | None
    best_trial: int | None


def _lineage_node(trial: FrozenTrial) -> LineageNode | None:
    pbt = record.read(trial).pbt
    if pbt is None or not isinstance(pbt.get("member"), int):
        return None
    parent = pbt.get("parent_trial")
    return LineageNode(
        trial=trial.number,
        member=int(pbt["member"]),
        generation=int(pbt.get("generation") or 0),
        parent_trial=int(parent) if isinstance(parent, int) else None,
        value=finite_value(trial),
        state=trial.state.name,
    )


def pbt_lineage(trials: Sequence[FrozenTrial], *, direction: str = "maximize") -> Lineage | None:
    """The PBT lineage of ``trials``, or ``None`` when no trial carries a ``pbt`` attr.

    ``direction`` (``"maximize"`` or ``"minimize"``) picks the best COMPLETE trial and its member.
    """
    by_number = {t.number: t for t in trials}
    nodes = sorted(
        (n for n in map(_lineage_node, trials) if n is not None), key=lambda n: (n.generation, n.member)
    )
    if not nodes:
        return None
    edges = [(n.parent_trial, n.trial) for n in nodes if n.parent_trial is not None]
    schedules: dict[int, list[dict[str, Any]]] = {}
    for node in nodes:  # sorted by generation: the latest generation's schedule wins
        schedule = (record.read(by_number[node.trial]).pbt or {}).get("schedule")
        if isinstance(schedule, list) and schedule:
            schedules[node.member] = [dict(s) for s in schedule if isinstance(s, Mapping)]
    done = [n for n in nodes if n.state == TrialState.COMPLETE.name and n.value is not None]
    sign = -1.0 if direction == "minimize" else 1.0
    best = max(done, key=lambda n: sign * (n.value or 0.0), default=None)
    return Lineage(
        nodes=nodes,
        edges=edges,
        schedules=schedules,
        best_member=best.member if best else None,
        best_trial=best.trial if best else None,
    )


@dataclass(frozen=True)
class TransferPair:
    """A target trial's value next to the proxy study's value of the same configuration."""

    target_trial: int
    proxy_value: float
    target_value: float


@dataclass(frozen=True)
class TransferSummary:
    """How well the proxy stage ranked configurations, and what each stage cost."""

    pairs: list[TransferPair]
    rho: float  # Spearman over the pairs; nan when undefined
    proxy_cost: dict[str, Any]
    target_cost: dict[str, Any]
    warning: str | None
    # What a target-only search of as many trials as the proxy stage ran would have cost: the target's
    # mean cost per COMPLETE trial times the proxy's trial count. None before a target trial completed.
    target_only: dict[str, Any] | None = None


def transfer_summary(
    proxy_trials: Sequence[FrozenTrial], target_trials: Sequence[FrozenTrial]
) -> TransferSummary:
    """Pair COMPLETE target trials with their ``proxy_value`` attr and rank-correlate the two.

    ``warning`` is set when there are fewer than ``MIN_TRANSFER_PAIRS`` pairs or Spearman's rho is
    below ``MIN_TRANSFER_RHO`` (or undefined): the proxy then did not reliably rank configurations.
    """
    pairs = []
    for trial in sorted(target_trials, key=lambda t: t.number):
        proxy_value, value = record.read(trial).proxy_value, finite_value(trial)
        if trial.state == TrialState.COMPLETE and proxy_value is not None and value is not None:
            pairs.append(TransferPair(trial.number, proxy_value, value))
    rho = spearman([p.proxy_value for p in pairs], [p.target_value for p in pairs])
    warning = None
    if len(pairs) < MIN_TRANSFER_PAIRS:
        warning = f"only {len(pairs)} proxy/target pairs: too few to judge the proxy's ranking"
    elif math.isnan(rho) or rho < MIN_TRANSFER_RHO:
        warning = (
            f"Spearman rho = {rho:.2f} < {MIN_TRANSFER_RHO}: the proxy ranks configurations poorly; "
            "its choices may not transfer to the target"
        )
    return TransferSummary(
        pairs=pairs,
        rho=rho,
        proxy_cost={"trials": len(proxy_trials), **cost_totals(proxy_trials)},
        target_cost={"trials": len(target_trials), **cost_totals(target_trials)},
        warning=warning,
        target_only=_target_only_estimate(len(proxy_trials), target_trials),
    )


def _target_only_estimate(n_trials: int, target_trials: Sequence[FrozenTrial]) -> dict[str, Any] | None:
    done = [t for t in target_trials if t.state == TrialState.COMPLETE]
    if not done or not n_trials:
        return None
    per_trial = cost_totals(done)
    return {"trials": n_trials, "train_tokens": round(per_trial["train_tokens"] * n_trials / len(done)),
            "wall_time_s": per_trial["wall_time_s"] * n_trials / len(done)}


@dataclass(frozen=True)
class ComputeSeries:
    """Best value so far against compute spent, one point per ended trial in the order they ended:
    ``(cumulative train tokens, cumulative trainer wall seconds, best value so far or None)``. ``stage``
    names the series ("search", or "proxy" / "target" in a two-stage study)."""

    stage: str
    points: list[tuple[int, float, float | None]]


def compute_series(trials: Sequence[FrozenTrial], direction: str, stage: str = "search") -> ComputeSeries:
    """Every trial that ran counts its compute (pruned and failed ones too); only COMPLETE ones can be the
    best. Trials still RUNNING or WAITING are left out."""
    ended = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)]
    ended.sort(key=lambda t: (t.datetime_complete is None, t.datetime_complete or 0, t.number))
    better = max if direction != "minimize" else min
    tokens, wall, best = 0, 0.0, None
    points: list[tuple[int, float, float | None]] = []
    for t in ended:
        rec = record.read(t)
        tokens += int(rec.train_tokens or 0)
        wall += float(rec.wall_time_s or 0.0)
        value = finite_value(t) if t.state == TrialState.COMPLETE else None
        if value is not None:
            best = value if best is None else better(best, value)
        points.append((tokens, wall, best))
    return ComputeSeries(stage, points)


def expected_best(values: Sequence[float], direction: str) -> list[float]:
    """Dodge et al. (2019), "Show Your Work": the expected best of ``n`` trials drawn from these trials'
    values (with replacement, from their empirical distribution), for ``n`` = 1..len(values). A curve
    still rising at its right end says more trials would still pay."""
    xs = sorted(values, reverse=direction == "minimize")  # worst first
    total = len(xs)
    out = []
    for n in range(1, total + 1):
        out.append(sum(v * (((i + 1) / total) ** n - (i / total) ** n) for i, v in enumerate(xs)))
    return out


@dataclass(frozen=True)
class Importances:
    """Hyperparameter importances (name → share, summing to 1), or empty with the ``reason`` why."""

    values: dict[str, float]
    reason: str | None
    evaluator: str = "fANOVA"
    trials: int = 0  # COMPLETE trials they were computed from (few: the report warns)


def importances(study: optuna.Study, *, seed: int = 0) -> Importances:
    """fANOVA importances of the searched params over the study's COMPLETE trials.

    Empty with a reason when fewer than two COMPLETE trials have a value, when only one parameter
    was searched (its share would trivially be 100%), or when Optuna's evaluator raises.
    ``seed`` fixes the evaluator's random forest so the report is reproducible.
    """
    done = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    done = [t for t in done if finite_value(t) is not None]
    if len(done) < 2:
        return Importances({}, f"needs at least 2 complete trials, found {len(done)}")
    names = sorted({name for t in done for name in t.params})
    if len(names) < 2:
        return Importances({}, f"only {len(names)} searched parameter ({', '.join(names) or 'none'})")
    try:
        values = optuna.importance.get_param_importances(
            study, evaluator=FanovaImportanceEvaluator(seed=seed)
        )
    except (ValueError, RuntimeError, ZeroDivisionError) as exc:
        return Importances({}, f"Optuna could not compute importances: {exc}")
    return Importances({k: float(v) for k, v in values.items()}, None, trials=len(done))
