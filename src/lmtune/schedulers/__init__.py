"""Schedulers: what decides for the one trial loop (`lmtune.tuner.drive.drive`).

Each is a `Scheduler` subclass: the search (`SearchScheduler`, Optuna's sampler and pruner; every strategy
but PBT), PBT (`PBTRunner`), the final runs (`FinalScheduler`) and `lmtune train`'s one run (`OneRun`).
`scheduler_for` looks up the one that serves a ``search.strategy``; a new strategy registers its scheduler
with `register`. The tuner (`lmtune.tuner`) keeps the loop, the budget and the failure policy.
"""

from lmtune.schedulers.base import Launch, Scheduler, register, scheduler_for, strategies_served

__all__ = ["FinalScheduler", "Launch", "OneRun", "PBTRunner", "Scheduler", "SearchScheduler", "register",
           "scheduler_for", "strategies_served"]


def __getattr__(name: str) -> object:
    """The schedulers themselves, imported when first named (they import the tuner's parts, which import
    this package's base)."""
    modules = {"SearchScheduler": "search", "PBTRunner": "pbt", "FinalScheduler": "final", "OneRun": "one"}
    if name in modules:
        import importlib

        return getattr(importlib.import_module(f"lmtune.schedulers.{modules[name]}"), name)
    raise AttributeError(f"module 'lmtune.schedulers' has no attribute {name!r}")
