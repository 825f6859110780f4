"""Collect every table of a report once, from a loaded study record.

``collect`` is the single place where the report decides *what* it says (which trial is best, whether a
comparison exists, which optional sections apply); Markdown and HTML rendering only format it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmtune.config.writer import config_yaml
from lmtune.report import tables as t
from lmtune.report.load import StudyRecord
from lmtune.study import record as trial_record

__all__ = ["ReportContent", "best_row", "best_yaml", "collect"]


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
    selection: t.SelectionGap | None = None  # None until `lmtune final` has run


def best_row(rows: list[t.TrialRow], direction: str) -> t.TrialRow | None:
    """The COMPLETE row with the best value for ``direction``; ties go to the lower trial number."""
    done = [r for r in rows if r.state == "COMPLETE" and r.value is not None]
    if not done:
        return None
    sign = -1.0 if direction == "minimize" else 1.0
    return max(done, key=lambda r: (sign * (r.value or 0.0), -r.number))


def best_yaml(record: StudyRecord, best: t.TrialRow) -> str:
    """The best trial as the config that trains it: the one writer ``lmtune export --format yaml`` uses,
    from the settings the trial recorded (not its params laid over the study's defaults)."""
    trial = next(tr for tr in record.trials if tr.number == best.number)
    return config_yaml(record.config, trial_record.read(trial).config,
                       header=[f"best trial {best.number} of study {record.study.study_name} in {record.study_dir}: "
                               f"{record.metric} {best.value}"])


def _comparison_directions(metric: str, direction: str, final: dict[str, Any]) -> dict[str, bool]:
    """The study's own metric direction also decides its ``test_`` counterpart (e.g. test_accuracy)."""
    base = metric.removeprefix("eval_")
    return {
        name: direction != "minimize"
        for name in final.get("metric_names", [])
        if name.removeprefix("test_") == base
    }


def collect(record: StudyRecord) -> ReportContent:
    """Compute every table the report shows for ``record``."""
    rows = t.trial_table(record.trials)
    best = best_row(rows, record.direction)
    final = record.final
    comparison = None
    if final is not None:
        directions = _comparison_directions(record.metric, record.direction, final)
        comparison = t.comparison_table(final, higher_is_better=directions)
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
        search_cost=t.search_cost(record.trials),
        trials=rows,
        failures=t.failures(record.trials),
        curves=t.learning_curves(record.trials, record.metric),
        importances=t.importances(record.study),
        lineage=t.pbt_lineage(record.trials, direction=record.direction),
        transfer=transfer,
        selection=t.selection_gap(final, rows, record.metric) if final is not None else None,
    )
