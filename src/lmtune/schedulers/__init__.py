"""Schedulers: what decides for the one trial loop (`lmtune.tuner.drive.drive`).

Each is a `Scheduler` subclass: the search (`SearchScheduler`, Optuna's sampler and pruner; every strategy
but PBT and halving), synchronous successive halving (`HalvingScheduler`), PBT (`PBTRunner`), the final runs
(`FinalScheduler`) and `lmtune train`'s one run (`OneRun`). `scheduler_for` looks up the one that serves a
``search.strategy``; a new strategy registers its scheduler with `register`. The tuner (`lmtune.tuner`) keeps
the loop, the budget and the failure policy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lmtune._faces import lazy
from lmtune.schedulers.base import Launch, Scheduler, register, scheduler_for, strategies_served

if TYPE_CHECKING:
    from lmtune.schedulers.final import FinalScheduler
    from lmtune.schedulers.halving import HALVING_STATE, HalvingScheduler
    from lmtune.schedulers.one import OneRun
    from lmtune.schedulers.pbt import PBTRunner
    from lmtune.schedulers.search import SearchScheduler, waiting

__all__ = ["HALVING_STATE", "FinalScheduler", "HalvingScheduler", "Launch", "OneRun", "PBTRunner", "Scheduler",
           "SearchScheduler", "register", "scheduler_for", "strategies_served", "waiting"]

# the rest of the face, each name imported from its module when first named (lmtune._faces)
_FACE = {
    "FinalScheduler": "final",
    "HALVING_STATE": "halving",
    "HalvingScheduler": "halving",
    "OneRun": "one",
    "PBTRunner": "pbt",
    "SearchScheduler": "search",
    "waiting": "search",
}

__getattr__ = lazy(__name__, _FACE)
