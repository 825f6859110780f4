"""The trial record: what lmtune keeps in an Optuna trial, written and read here only.

lmtune's facts about a trial live in its Optuna user attrs (so the study opens with plain
``optuna.load_study`` and optuna-dashboard). Every writer goes through :func:`write` (or
:func:`enqueue_attrs` for a queued trial), which refuses a key that is not a :class:`TrialRecord`
field; every reader goes through :func:`read`, which turns the attrs into a typed record and reads a
missing or malformed attr (a half-written or older study) as its default instead of failing.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from optuna.trial import FrozenTrial, TrialState

from lmtune.errors import StudyError
from lmtune.pareto import fronts, oriented
from lmtune.protocol import Ending, Outcome, Start, failure_reason


@dataclass(frozen=True)
class TrialRecord:
    """One trial as lmtune reads it. Optuna's own fields first, then lmtune's attrs."""

    number: int
    # COMPLETE, PRUNED, FAIL, RUNNING, WAITING, or PAUSED: a successive-halving configuration paused at a rung
    # (Optuna holds it RUNNING until it goes on or is pruned; `paused_at_units` says where)
    state: str
    value: float | None              # the objective (the first, the score, of several), when finite
    params: dict[str, Any]           # what the sampler chose (the searched fields only)
    values: list[float] | None = None  # every objective (study.objectives), COMPLETE trials only
    # -- lmtune's attrs (each the name of its user attr) --
    config: dict[str, Any] = field(default_factory=dict)  # the training settings the trial ran
    is_default: bool = False         # the default-settings trial
    curve: list[dict[str, Any]] = field(default_factory=list)  # one entry per evaluation (units, metrics…)
    train_tokens: int | None = None  # real (non-padding) tokens trained on (None: not recorded)
    wall_time_s: float | None = None
    overhead_s: float | None = None  # wall time not spent training or evaluating
    startup_s: float | None = None   # launch → first event
    planned_examples: int | None = None  # the training length it was launched with
    trial_dir: str | None = None
    precision: str | None = None     # the precision that ran
    precision_reason: str | None = None  # why it ran (training.precision as set, or what `auto` chose and why)
    forward: str | None = None       # which forward the training steps ran, and why (lmtune.training.fastpath)
    micro_batch_size: int | None = None
    adapter_dir: str | None = None   # where a LoRA trial saved its adapter
    stopped_by: str | None = None    # why a trial ended before its length: pruned, budget, early_stopping…
    pruned_at_units: int | None = None
    paused_at_units: int | None = None  # paused at this rung with a checkpoint, to go on (None once it trains on)
    fail_reason: str | None = None
    stop_reason: str | None = None   # why a trial that did not fail was stopped (the budget)
    pbt: dict[str, Any] | None = None  # member, generation, parent_trial, schedule, units
    proxy_trial: int | None = None   # the proxy-study trial this configuration came from
    proxy_value: float | None = None
    prior_study: str | None = None   # the earlier study a warm-start configuration came from
    prior_trial: int | None = None
    prior_value: float | None = None
    retry_of: int | None = None      # the failed trial (another worker's) whose configuration this re-runs
    tool_args: dict[str, Any] | None = None  # a tool trial: what the tool's Trainer ran with (HF key names)
    device: str | None = None        # what it ran on (execution.device for its slot: cpu, cuda:1, ...)
    devices: int | None = None       # the devices (processes) it held: its cost is wall time x devices

    @property
    def examples(self) -> int | None:
        """Training examples seen at the last evaluation."""
        return _int(self.curve[-1].get("examples")) if self.curve else None

    @property
    def units(self) -> int | None:
        """Evaluation units reached at the last evaluation."""
        return _int(self.curve[-1].get("units")) if self.curve else None


_OPTUNA_FIELDS = ("number", "state", "value", "params", "values")
ATTRS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(TrialRecord) if f.name not in _OPTUNA_FIELDS)
# Facts about a configuration (not about one run of it) that a re-run of an interrupted trial keeps.
_CARRIED = ("is_default", "proxy_value", "proxy_trial")


class _HasUserAttrs(Protocol):
    def set_user_attr(self, key: str, value: Any) -> None: ...


def _int(v: Any) -> int | None:
    return None if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) else int(v)


def _float(v: Any) -> float | None:
    return None if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) else float(v)


def _str(v: Any) -> str | None:
    return v if isinstance(v, str) else None


def value_of(trial: FrozenTrial) -> float | None:
    """The trial's objective value (the first objective's, the score, in a multi-objective study) when finite,
    else None."""
    return _float(trial.values[0]) if trial.values else None


def read(trial: FrozenTrial) -> TrialRecord:
    """The typed record of ``trial``; missing or malformed attrs read as their defaults."""
    a = trial.user_attrs
    curve = a.get("curve")
    paused = _int(a.get("paused_at_units"))
    running = trial.state == TrialState.RUNNING
    return TrialRecord(
        number=trial.number, state="PAUSED" if running and paused is not None else trial.state.name,
        value=value_of(trial), params=dict(trial.params),
        values=[float(v) for v in trial.values] if trial.values else None,
        config=dict(a["config"]) if isinstance(a.get("config"), Mapping) else {},
        is_default=bool(a.get("is_default", False)),
        curve=[dict(p) for p in curve if isinstance(p, Mapping)] if isinstance(curve, list) else [],
        train_tokens=_int(a.get("train_tokens")),
        wall_time_s=_float(a.get("wall_time_s")), overhead_s=_float(a.get("overhead_s")),
        startup_s=_float(a.get("startup_s")), planned_examples=_int(a.get("planned_examples")),
        trial_dir=_str(a.get("trial_dir")), precision=_str(a.get("precision")),
        precision_reason=_str(a.get("precision_reason")), forward=_str(a.get("forward")),
        micro_batch_size=_int(a.get("micro_batch_size")), adapter_dir=_str(a.get("adapter_dir")),
        stopped_by=_str(a.get("stopped_by")), pruned_at_units=_int(a.get("pruned_at_units")),
        paused_at_units=paused if running else None,
        fail_reason=_str(a.get("fail_reason")), stop_reason=_str(a.get("stop_reason")),
        pbt=dict(a["pbt"]) if isinstance(a.get("pbt"), Mapping) else None,
        proxy_trial=_int(a.get("proxy_trial")), proxy_value=_float(a.get("proxy_value")),
        prior_study=_str(a.get("prior_study")), prior_trial=_int(a.get("prior_trial")),
        prior_value=_float(a.get("prior_value")), retry_of=_int(a.get("retry_of")),
        tool_args=dict(a["tool_args"]) if isinstance(a.get("tool_args"), Mapping) else None,
        device=_str(a.get("device")), devices=_int(a.get("devices")),
    )


def started(event: Start, *, startup_s: float) -> dict[str, Any]:
    """The record's fields from a trainer's start event, for every scheduler: the precision and forward it
    runs, and ``startup_s`` (launch to the first step: process, imports, model, data)."""
    return {"precision": event.precision, "precision_reason": event.precision_reason, "forward": event.forward,
            "startup_s": startup_s}


@dataclass(frozen=True)
class Ended:
    """How one trainer run's outcome goes into its trial: how it ended, the state Optuna is told, the objective,
    the reason (a failure's, or why a run that did not fail was stopped) and the record's fields to write."""

    ending: Ending
    state: str                 # COMPLETE, PRUNED, PAUSED (a PBT member, resumed later) or FAIL
    value: float | None        # the objective (COMPLETE only)
    reason: str                # "" when there is none
    fields: dict[str, Any]     # TrialRecord attrs (write them with `write`)
    values: list[float] | None = None  # every objective of a multi-objective study (COMPLETE only)


_STATES = {Ending.COMPLETED: "COMPLETE", Ending.EARLY_STOPPED: "COMPLETE", Ending.PRUNED: "PRUNED",
           Ending.BUDGET: "PRUNED", Ending.PAUSED: "PAUSED", Ending.FAILED: "FAIL"}


def ended(outcome: Outcome, *, metric: str | None, wall_s: float, busy_s: float | None = None,
          curve: list[dict[str, Any]] | None = None, train_tokens: int | None = None,
          stopped_for_budget: str = "", objectives: Sequence[str] = (),
          costs: Mapping[str, float] | None = None) -> Ended:
    """The one mapping from a run's outcome to its trial record, for every scheduler.

    ``metric``: the study's objective, read from the end event's metrics (None: a run judged on another
    split, as the final runs are on the test split, completes without one). ``wall_s``: launch to end (a PBT
    member: summed over its runs, as are ``busy_s``, the seconds it trained and evaluated, and ``curve`` and
    ``train_tokens``; by default the outcome's own). ``stopped_for_budget``: the scheduler stopped this run
    because the budget is spent (why, in words): a stop it sent is then recorded as ``Ending.BUDGET`` with
    that stop reason, not as pruned. ``objectives``: every objective of a multi-objective study (the first is
    ``metric``), read from the end event's metrics, the run's train tokens and ``costs`` (what the scheduler
    measured: ``train_gpu_hours``). The end event's precision, forward, micro-batch and adapter folder are
    recorded as the trainer reports them (precision and forward from its start event where the end does not
    say); a run that ended without an end event, or with an error, or
    without a finite objective fails with its reason."""
    end = outcome.end
    curve = list(outcome.curve if curve is None else curve)
    if train_tokens is None:
        train_tokens = int((end.train_tokens if end else 0) or (curve[-1].get("tokens") if curve else 0) or 0)
    fields: dict[str, Any] = {"curve": curve, "train_tokens": int(train_tokens), "wall_time_s": wall_s}
    how = outcome.ending
    if how is Ending.PRUNED and stopped_for_budget:
        how = Ending.BUDGET
    if end is not None:
        fields["overhead_s"] = max(0.0, wall_s - (end.busy_s if busy_s is None else busy_s))
        fields["stopped_by"] = how.wire if how is not Ending.FAILED else end.ending.wire
        fields.update({k: getattr(end, k) for k in _FROM_END if getattr(end, k) is not None})
    if outcome.start is not None:  # what it ran with, when the end event does not say (a script, the stand-in)
        fields.update({k: v for k, v in started(outcome.start, startup_s=0.0).items()
                       if k != "startup_s" and v is not None and fields.get(k) is None})
    reason = failure_reason(outcome)
    if how is Ending.FAILED:
        return Ended(how, "FAIL", None, reason, {**fields, "fail_reason": reason})
    if how is Ending.PAUSED:
        return Ended(how, "PAUSED", None, "", fields)
    assert end is not None
    if how.stopped:
        fields["pruned_at_units"] = end.units
        if how is Ending.BUDGET:
            fields["stop_reason"] = stopped_for_budget
        return Ended(how, _STATES[how], None, stopped_for_budget, fields)
    if metric is None:
        return Ended(how, "COMPLETE", None, "", fields)
    value = end.metrics.get(metric)
    if value is None or not isinstance(value, int | float) or not math.isfinite(value):
        reason = (f"metric '{metric}' was {value!r}; reported metrics: {sorted(end.metrics)}; "
                  "set study.metric to one of them")
        return Ended(Ending.FAILED, "FAIL", None, reason, {**fields, "fail_reason": reason})
    values: list[float] | None = None
    if len(objectives) > 1:
        known = {**end.metrics, "train_tokens": fields["train_tokens"], **(costs or {})}
        values = []
        for name in objectives:
            v = known.get(name)
            if v is None or isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                reason = (f"objective '{name}' was {v!r}; reported metrics: {sorted(end.metrics)}; every objective "
                          "in study.objectives must be reported or measured")
                return Ended(Ending.FAILED, "FAIL", None, reason, {**fields, "fail_reason": reason})
            values.append(float(v))
    return Ended(how, "COMPLETE", float(value), "", fields, values)


# what a trainer's end event says about how the run ran, recorded as it says it
_FROM_END = ("precision", "precision_reason", "forward", "micro_batch_size", "adapter_dir")


def _checked(fields: Mapping[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(fields) - set(ATTRS))
    if unknown:
        raise KeyError(f"not fields of the trial record: {unknown}; add them to TrialRecord (study/record.py)")
    return dict(fields)


def write(trial: _HasUserAttrs, **fields: Any) -> None:
    """Record ``fields`` (names of :class:`TrialRecord` attrs) on a live ``optuna.Trial``."""
    for key, value in _checked(fields).items():
        trial.set_user_attr(key, value)


def write_frozen(study: Any, trial: FrozenTrial, **fields: Any) -> None:
    """Record ``fields`` on a trial known only as a FrozenTrial (one another process started)."""
    for key, value in _checked(fields).items():
        study._storage.set_trial_user_attr(trial._trial_id, key, value)


def enqueue_attrs(**fields: Any) -> dict[str, Any] | None:
    """The user attrs of a queued trial (``study.enqueue_trial(..., user_attrs=...)``); None for none."""
    kept = {k: v for k, v in _checked(fields).items() if v is not None}
    return kept or None


def carried(record: TrialRecord) -> dict[str, Any] | None:
    """What a re-queued trial inherits from the one it re-runs (default mark, proxy link)."""
    values = {k: getattr(record, k) for k in _CARRIED}
    kept = {k: v for k, v in values.items() if v is not None and v is not False}  # 0 is a trial number
    return enqueue_attrs(**kept)


def records(trials: list[FrozenTrial]) -> list[TrialRecord]:
    """The records of ``trials``, in their order."""
    return [read(t) for t in trials]


def train_tokens_of(trials: list[FrozenTrial]) -> int:
    return sum(read(t).train_tokens or 0 for t in trials)


def planned_examples_of(trial: FrozenTrial) -> int | None:
    """The training length a trial was launched with (what a per-length pruner compares on)."""
    return _int(trial.user_attrs.get("planned_examples"))


def best_of(trials: list[FrozenTrial], direction: str) -> FrozenTrial | None:
    """The one best-trial rule: the COMPLETE trial with the best finite value (first on ties)."""
    done = [t for t in trials if t.state == TrialState.COMPLETE and value_of(t) is not None]
    if not done:
        return None
    pick = max if direction == "maximize" else min
    return pick(done, key=lambda t: float(t.values[0]))


def chosen_of(trials: list[FrozenTrial], number: int) -> FrozenTrial:
    """Trial ``number`` when it completed with a value (what ``--trial N`` of export and final take, e.g. a point
    of a Pareto front); else `StudyError` naming what it is and the trials to choose from."""
    t = next((t for t in trials if t.number == number), None)
    if t is None or t.state != TrialState.COMPLETE or value_of(t) is None:
        done = ", ".join([str(t.number) for t in trials if t.state == TrialState.COMPLETE][:20])
        where = "the study has no such trial" if t is None else f"it is {t.state.name}, not COMPLETE"
        raise StudyError(f"--trial {number}: {where}; choose a completed trial ({done or 'none yet'}; 'lmtune "
                         "best' lists the best, and a multi-objective study's Pareto front)")
    return t


def front_of(trials: list[FrozenTrial], directions: Sequence[str]) -> list[FrozenTrial]:
    """The Pareto front of a multi-objective study: the COMPLETE trials with every objective finite that no
    other such trial dominates, in trial order (one objective: the best trial, ties included)."""
    done = [t for t in trials if t.state == TrialState.COMPLETE and t.values is not None
            and len(t.values) == len(directions) and all(math.isfinite(v) for v in t.values)]
    if not done:
        return []
    points = [oriented(t.values, directions) for t in done]
    return sorted((done[i] for i in fronts(points)[0]), key=lambda t: t.number)


def default_of(trials: list[FrozenTrial]) -> FrozenTrial | None:
    """The COMPLETE default-settings trial, if any."""
    return next((t for t in trials if t.state == TrialState.COMPLETE and read(t).is_default), None)
