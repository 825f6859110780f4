"""What a study's trials cost in device-hours and money, from their records (``wall_time_s``, ``device``,
``devices``) and the study's ``budget.prices``: one definition for the cost caps (`lmtune.tuner.cost`),
``lmtune status`` and the report (docs/budgets.md)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from optuna.trial import FrozenTrial, TrialState

from lmtune.config import BudgetSection
from lmtune.study import record

__all__ = ["Spent", "device_kind", "per_second", "spent_line", "trials_spent"]


def device_kind(device: str) -> str:
    """The kind a device is priced by: ``cpu``, ``cuda`` (``cuda:1`` too), or the name as given."""
    return device.split(":", 1)[0] if device else "cpu"


@dataclass(frozen=True)
class Spent:
    gpu_hours: float
    cost: float

    def __add__(self, other: Spent) -> Spent:
        return Spent(self.gpu_hours + other.gpu_hours, self.cost + other.cost)

    def times(self, seconds: float) -> Spent:
        return Spent(self.gpu_hours * seconds, self.cost * seconds)


def per_second(budget: BudgetSection, kind: str, devices: int) -> Spent:
    """What one second of a trial on ``devices`` devices of ``kind`` spends: GPU-hours (none on ``cpu``) and
    money (``budget.prices[kind]`` per device-hour; 0 without a price)."""
    gpu = 0.0 if kind == "cpu" else devices / 3600
    return Spent(gpu, devices * float(budget.prices.get(kind, 0.0)) / 3600)


def trials_spent(trials: Iterable[FrozenTrial], budget: BudgetSection, *, skip: Iterable[int] = ()) -> Spent:
    """What the finished trials (complete, pruned, failed: all held their devices) spent, by their records; a
    trial without a recorded device (an older study) counts nothing."""
    skipped = set(skip)
    total = Spent(0.0, 0.0)
    for t in trials:
        if t.state not in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL) or t.number in skipped:
            continue
        r = record.read(t)
        if r.wall_time_s is None or r.device is None:
            continue
        total = total + per_second(budget, device_kind(r.device), r.devices or 1).times(r.wall_time_s)
    return total


def spent_line(spent: Spent, budget: BudgetSection) -> str:
    """``GPU-hours x of cap y; cost x of cap y`` for the caps set ("" when none is)."""
    parts = []
    if budget.max_gpu_hours is not None:
        parts.append(f"GPU-hours {spent.gpu_hours:.4g} of cap {budget.max_gpu_hours:g}")
    if budget.max_cost is not None:
        parts.append(f"cost {spent.cost:.4g} of cap {budget.max_cost:g}")
    return "; ".join(parts)
