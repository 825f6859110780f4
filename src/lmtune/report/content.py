"""Collect every table of a report once, from a loaded study record.

``collect`` is the single place where the report decides *what* it says (which trial is best, whether a
comparison exists, which optional sections apply); Markdown and HTML rendering only format it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmtune.config import best_config_yaml
from lmtune.report import tables as t
from lmtune.report._trials import finite_value as finite
from lmtune.report.diff import Change, best_changes
from lmtune.report.gain import GainPanel, gain_panels
from lmtune.report.load import StudyRecord
from lmtune.study import record as trial_record

__all__ = ["Front", "FrontPoint", "ReportContent", "best_row", "best_yaml", "collect"]


@dataclass(frozen=True)
class ReportContent:
    """The report's facts, independent of output format. Optional parts are ``None`` when absent."""

    study_name: str
    study_dir: Path
    metric: str
    direction: str
    best: t.TrialRow | None
    best_yaml: str | None
    comparison: list[t.ComparisonRow] | None  # None until `lmtune final` has run
    final: dict[str, Any] | None
    final_cost: dict[str, Any] | None
    search_cost: dict[str, Any]
    trials: list[t.TrialRow]
    failures: list[t.TrialRow]
    curves: list[t.Curve]
    importances: t.Importances
    lineage: t.Lineage | None  # None unless trials carry `pbt` attrs
    transfer: t.TransferSummary | None  # None unless the study has a proxy stage
    compute: list[t.ComputeSeries]  # best value vs train tokens and wall time, one series per stage
    expected_best: list[float]  # Dodge et al.: expected best of n trials, n = 1..COMPLETE trials
    selection: t.SelectionGap | None = None  # None until `lmtune final` has run
    changes: list[Change] | None = None  # what the best changed from the default; None without a best
    gain: list[GainPanel] | None = None  # the comparison as pictures; None until `lmtune final` has run
    budget: str = ""  # what the search spent against budget.max_gpu_hours / max_cost ("": no such cap)
    front: Front | None = None  # a multi-objective study's objectives and Pareto front (None: one objective)


@dataclass(frozen=True)
class FrontPoint:
    """One COMPLETE trial of a multi-objective study: its objectives, whether it is on the Pareto front."""

    number: int
    values: list[float]
    on_front: bool
    is_default: bool
    params: dict[str, Any]


@dataclass(frozen=True)
class Front:
    """A multi-objective study's objectives ((metric, direction) each, the score first) and its COMPLETE
    trials, the front's marked."""

    objectives: list[tuple[str, str]]
    points: list[FrontPoint]

    @property
    def members(self) -> list[FrontPoint]:
        return [p for p in self.points if p.on_front]


def best_row(record: StudyRecord, rows: list[t.TrialRow]) -> t.TrialRow | None:
    """The row of the study's best trial, by the one best-trial rule (`lmtune.study.record.best_of`)."""
    best = trial_record.best_of(record.trials, record.direction)
    return next((r for r in rows if r.number == best.number), None) if best is not None else None


def best_yaml(record: StudyRecord, best: t.TrialRow) -> str:
    """The best trial as the config that trains it: the one writer ``lmtune export --format yaml`` uses,
    from the settings the trial recorded (not its params laid over the study's defaults)."""
    trial = next(tr for tr in record.trials if tr.number == best.number)
    return best_config_yaml(record.config, trial_record.read(trial).config, trial=best.number,
                            study_name=record.study.study_name, study_dir=record.study_dir, metric=record.metric,
                            value=best.value)


def _comparison_directions(metric: str, direction: str, final: dict[str, Any]) -> dict[str, bool]:
    """The study's own metric direction also decides its ``test_`` counterpart (e.g. test_accuracy)."""
    base = metric.removeprefix("eval_")
    return {
        name: direction != "minimize"
        for name in final.get("metric_names", [])
        if name.removeprefix("test_") == base
    }


def _compute(record: StudyRecord) -> list[t.ComputeSeries]:
    if record.proxy_trials is None:
        return [t.compute_series(record.trials, record.direction)]
    # the target stage starts where the proxy stage's compute ended: x is the whole study's compute
    proxy = t.compute_series(record.proxy_trials, record.direction, "proxy")
    tokens, wall = (proxy.points[-1][0], proxy.points[-1][1]) if proxy.points else (0, 0.0)
    target = t.compute_series(record.trials, record.direction, "target")
    return [proxy, t.ComputeSeries("target", [(k + tokens, w + wall, v) for k, w, v in target.points])]


def collect(record: StudyRecord) -> ReportContent:
    """Compute every table the report shows for ``record``."""
    rows = t.trial_table(record.trials)
    best = best_row(record, rows)
    final = record.final
    comparison = None
    search_cost = t.search_cost(record.trials)
    if final is not None:
        directions = _comparison_directions(record.metric, record.direction, final)
        comparison = t.comparison_table(final, higher_is_better=directions)
    best_trial = next((tr for tr in record.trials if best is not None and tr.number == best.number), None)
    transfer = None
    if record.proxy_trials is not None:
        transfer = t.transfer_summary(record.proxy_trials, record.trials)
    return ReportContent(
        study_name=record.study.study_name,
        study_dir=record.study_dir,
        metric=record.metric,
        direction=record.direction,
        best=best,
        best_yaml=best_yaml(record, best) if best else None,
        comparison=comparison,
        final=final,
        final_cost=t.final_cost(final) if final is not None else None,
        search_cost=search_cost,
        trials=rows,
        failures=t.failures(record.trials),
        curves=t.learning_curves(record.trials, record.metric),
        importances=t.importances(record.study),
        lineage=t.pbt_lineage(record.trials, direction=record.direction),
        transfer=transfer,
        compute=_compute(record),
        expected_best=t.expected_best([v for v in (finite(tr) for tr in record.trials
                                                   if tr.state.name == "COMPLETE") if v is not None],
                                      record.direction),
        selection=t.selection_gap(final, rows, record.metric) if final is not None else None,
        changes=best_changes(record.trials, best_trial, record.config) if best_trial is not None else None,
        gain=gain_panels(final, comparison, search_cost) if final is not None and comparison else None,
        budget=_budget_line(record),
        front=_front(record),
    )


def _front(record: StudyRecord) -> Front | None:
    from lmtune.study import objectives_of

    objectives = objectives_of(record.study, record.meta)
    if len(objectives) < 2:
        return None
    on = {t.number for t in trial_record.front_of(record.trials, [d for _, d in objectives])}
    points = [FrontPoint(r.number, list(r.values), r.number in on, r.is_default, dict(r.params))
              for r in trial_record.records(record.trials)
              if r.state == "COMPLETE" and r.values is not None and len(r.values) == len(objectives)]
    return Front(objectives, points)


def _budget_line(record: StudyRecord) -> str:
    """Spent against the study's cost caps, from the trial records ("" without a cost cap)."""
    from lmtune.config import BudgetSection
    from lmtune.study import spent_line, trials_spent

    raw = record.config.get("budget") or {}
    try:
        budget = BudgetSection(**raw)
    except ValueError:
        return ""
    return spent_line(trials_spent(record.trials, budget), budget)
