"""When to stop a trial early: median, ASHA (asynchronous successive halving) and Hyperband.

Rungs are evaluation units (equal amounts of training data across trials, see DESIGN.md), so a
trial with batch size 8 and one with batch size 64 are compared after the same examples seen.

Where the space searches the training length (``epochs`` or ``max_steps``), a trial is compared only
with trials planned to train as long (rungs per length): at one epoch of data a 1-epoch trial has
finished its decayed schedule while a 3-epoch trial is a third into its own, still at a high learning
rate, so equal data alone prunes every long trial (measured: docs/benchmarks/search-small-cells.md, BBC topics).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # optuna (which loads subprocess) is imported when a sampler or pruner is built
    import optuna

from lmtune.config import lower_is_better

# How long a trial is planned to train (examples), None when unknown: the study's record supplies it.
LengthOf = Callable[["optuna.trial.FrozenTrial"], "int | None"]

STRATEGY_PRUNER = {"asha": "asha", "hyperband": "hyperband", "auto": "asha"}
# What a strategy prunes on when search.prune_metric is unset. auto prunes on eval_loss: in the strategy
# benchmark (docs/strategies.md) pruning on accuracy cut the best configurations at a first rung where
# every trial still sat at the majority class, pruning on loss kept them.
STRATEGY_PRUNE_METRIC = {"auto": "eval_loss", "halving": "eval_loss"}


def prune_metric(strategy: str, requested: str | None, metric: str) -> str:
    """The metric the pruner compares at each rung: ``search.prune_metric`` (``requested``), else the
    strategy's own, else the study's metric."""
    return requested or STRATEGY_PRUNE_METRIC.get(strategy, metric)


def pruning_value(metrics: dict[str, float], metric: str, direction: str) -> float | None:
    """What an evaluation reports to the pruner: ``metric``, turned to the study's direction.

    Optuna's pruners compare intermediate values in the study's direction, so a pruning metric of the
    opposite sense (eval_loss in a study that maximizes accuracy) is reported negated."""
    value = metrics.get(metric)
    if value is None:
        return None
    lower = lower_is_better(metric)
    return -float(value) if lower == (direction == "maximize") else float(value)


def pruner_name(strategy: str, pruner: str | None) -> str:
    """The pruner in force: the explicit ``search.pruner`` or the strategy's own (``none`` otherwise)."""
    if pruner is not None:
        return pruner
    return STRATEGY_PRUNER.get(strategy, "none")


def default_min_units(name: str, max_units: int, reduction_factor: int) -> int:
    """First rung when the user sets none. A first rung too early favours high learning rates, which
    lead early and lose late: on the toy curves of `lmtune.strategies.toy` (30 configs × 40 units)
    ASHA with its first rung at 1 unit ended 0.038 below the best config, at 13 units 0.007 below
    (at 55% of the units); Hyperband with min 4 of 40 ended 0.007 below at 51% of the units."""
    if name == "asha":
        return max(1, max_units // reduction_factor)
    return max(1, max_units // reduction_factor**2)


def rungs_from_end(max_units: int, first: int, reduction_factor: int) -> list[int]:
    """Successive halving's rungs in evaluation units, laid from the end as Hyperband lays them:
    max_units / reduction_factor^k for k = 1, 2, ... down to the first rung (``first``), so no rung falls just
    before the end. Counted from the first rung up (Optuna's ``SuccessiveHalvingPruner``: first x factor^k), 10
    units gave rungs at 3 and 9, 16 at 5 and 15, 20 at 6 and 18: a trial stopped at 9 of 10 had spent nine
    tenths of its run for nothing. With no rung between ``first`` and the end, ``first`` itself."""
    rungs: set[int] = set()
    k = 1
    while (rung := round(max_units / reduction_factor**k)) >= max(first, 1):
        if rung < max_units:
            rungs.add(rung)
        k += 1
    if not rungs and first < max_units:
        rungs.add(first)
    return sorted(rungs)


def _asha(rungs: list[int], reduction_factor: int) -> optuna.pruners.BasePruner:
    import optuna

    class RungHalving(optuna.pruners.BasePruner):
        """Asynchronous successive halving at explicit rungs (`rungs_from_end`), by Optuna's rule otherwise: at
        a rung a trial goes on only when its value ranks among the first 1/reduction_factor of the values the
        trials that reached that rung had there (itself counted; fewer than reduction_factor of them: only
        when it is the best so far); a NaN stops it. Each trial's value at each rung it passed is kept in its
        system attributes (``completed_rung_k``), as Optuna's pruner keeps it."""

        def __init__(self) -> None:
            self.rungs, self.factor = list(rungs), reduction_factor

        def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
            step = trial.last_step
            if step is None:
                return False
            value = trial.intermediate_values[step]
            rung = sum(f"completed_rung_{k}" in trial.system_attrs for k in range(len(self.rungs)))
            trials: list[optuna.trial.FrozenTrial] | None = None
            while rung < len(self.rungs) and step >= self.rungs[rung]:
                if math.isnan(value):
                    return True
                if trials is None:
                    trials = study.get_trials(deepcopy=False)
                key = f"completed_rung_{rung}"
                study._storage.set_trial_system_attr(trial._trial_id, key, value)
                competing = sorted([t.system_attrs[key] for t in trials
                                    if key in t.system_attrs and t.number != trial.number] + [value])
                keep = max(len(competing) // self.factor - 1, 0)
                maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
                if not (value >= competing[-(keep + 1)] if maximize else value <= competing[keep]):
                    return True
                rung += 1
            return False

    return RungHalving()


def asha_rungs(name: str, *, max_units: int, reduction_factor: int = 3,
               min_units: int | None = None) -> list[int] | None:
    """The units at which pruner ``name`` decides, where it decides only at fixed rungs (``asha``: the rungs
    `make_pruner` lays); None for a pruner that may decide at any evaluation (median, hyperband's brackets,
    none). A trainer need evaluate only there and at the end (`lmtune.protocol.TrialSpec.eval_units`)."""
    if name != "asha":
        return None
    return rungs_from_end(max_units, min_units or default_min_units(name, max_units, reduction_factor),
                          reduction_factor)


def make_pruner(name: str, *, max_units: int, reduction_factor: int = 3, min_units: int | None = None,
                length_of: LengthOf | None = None) -> optuna.pruners.BasePruner:
    """An Optuna pruner over rungs 1..max_units (units are reported as the trial's step). With
    ``length_of``, a trial is compared only with trials of its own planned length (see the module's
    docstring); trials whose length is unknown are compared with all."""
    import optuna

    if name == "none":
        return optuna.pruners.NopPruner()
    first = min_units or default_min_units(name, max_units, reduction_factor)
    inner: optuna.pruners.BasePruner
    if name == "median":
        inner = optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=max(0, first - 1))
    elif name == "asha":  # rungs laid from the end (`rungs_from_end`), not Optuna's first x factor^k
        inner = _asha(asha_rungs(name, max_units=max_units, reduction_factor=reduction_factor, min_units=first) or [],
                      reduction_factor)
    elif name == "hyperband":
        inner = _hyperband_per_length()(min_resource=first, max_resource=max(max_units, first),
                                        reduction_factor=reduction_factor)
    else:
        raise ValueError(f"search.pruner: unknown pruner {name!r}; use none, median, asha or hyperband")
    return inner if length_of is None else _per_length()(inner, length_of)


class _SameLength:
    """A view of a study that lists only the trials planned to train ``examples`` examples (trials of
    unknown length count as every length); everything else is the study's own."""

    def __init__(self, study: Any, examples: int, length_of: LengthOf) -> None:
        self._lmtune_study, self._lmtune_examples, self._lmtune_length_of = study, examples, length_of

    def get_trials(self, deepcopy: bool = True, states: Any = None) -> list[optuna.trial.FrozenTrial]:
        return [t for t in self._lmtune_study.get_trials(deepcopy=deepcopy, states=states)
                if self._lmtune_length_of(t) in (None, self._lmtune_examples)]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._lmtune_study, name)


def _per_length() -> type:
    import optuna

    class PerLength(optuna.pruners.BasePruner):
        """Runs ``inner`` on the trials of the pruned trial's own planned length."""

        def __init__(self, inner: optuna.pruners.BasePruner, length_of: LengthOf) -> None:
            self.inner, self.length_of = inner, length_of

        def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
            examples = self.length_of(trial)
            view = study if examples is None else _SameLength(study, examples, self.length_of)
            return bool(self.inner.prune(view, trial))  # type: ignore[arg-type]

    return PerLength


def _hyperband_per_length() -> type[optuna.pruners.HyperbandPruner]:
    import optuna

    class HyperbandPerLength(optuna.pruners.HyperbandPruner):
        """Optuna's Hyperband builds a study of its own per bracket from the storage; the bracket's view
        must keep the length filter too."""

        def _create_bracket_study(self, study: optuna.Study, bracket_id: int) -> optuna.Study:
            bracket = super()._create_bracket_study(study, bracket_id)
            if isinstance(study, _SameLength):
                return _SameLength(bracket, study._lmtune_examples,  # type: ignore[return-value]
                                   study._lmtune_length_of)
            return bracket

    return HyperbandPerLength
