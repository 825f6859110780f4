"""When to stop a trial early: median, ASHA (asynchronous successive halving) and Hyperband.

Rungs are evaluation units (equal amounts of training data across trials, see DESIGN.md), so a
trial with batch size 8 and one with batch size 64 are compared after the same examples seen.
"""

from __future__ import annotations

import optuna

STRATEGY_PRUNER = {"asha": "asha", "hyperband": "hyperband"}


def pruner_name(strategy: str, pruner: str | None) -> str:
    """The pruner in force: the explicit ``search.pruner`` or the strategy's own (``none`` otherwise)."""
    if pruner is not None:
        return pruner
    return STRATEGY_PRUNER.get(strategy, "none")


def make_pruner(name: str, *, max_units: int, reduction_factor: int = 3) -> optuna.pruners.BasePruner:
    """An Optuna pruner over rungs 1..max_units (units are reported as the trial's step)."""
    if name == "none":
        return optuna.pruners.NopPruner()
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1)
    if name == "asha":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=reduction_factor)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(max_units, 1),
                                              reduction_factor=reduction_factor)
    raise ValueError(f"search.pruner: unknown pruner {name!r}; use none, median, asha or hyperband")
