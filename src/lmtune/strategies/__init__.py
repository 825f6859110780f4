"""Strategies: which configuration next (samplers), when to stop (pruners), PBT decisions.

Never imports torch, transformers, subprocess or ray (a test enforces it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lmtune._faces import lazy
from lmtune.strategies.halving import HalvingPlan, default_first_rung, earliest_choice, fill, plan_halving, resize
from lmtune.strategies.practice import Narrowed, practice_space
from lmtune.strategies.pruners import (
    LengthOf,
    asha_rungs,
    default_min_units,
    make_pruner,
    prune_metric,
    pruner_name,
    pruning_value,
    rungs_from_end,
)
from lmtune.strategies.samplers import make_sampler, startup_trials
from lmtune.strategies.traits import StrategyTraits, traits

if TYPE_CHECKING:
    from lmtune.strategies.pbt import PBT

__all__ = ["PBT", "HalvingPlan", "LengthOf", "Narrowed", "StrategyTraits", "asha_rungs", "default_first_rung",
           "default_min_units", "earliest_choice", "fill", "make_pruner", "make_sampler", "plan_halving",
           "practice_space", "prune_metric", "pruner_name", "pruning_value", "resize", "rungs_from_end",
           "startup_trials", "traits"]

# the rest of the face, each name imported from its module when first named (lmtune._faces)
_FACE = {
    "PBT": "pbt",
}

__getattr__ = lazy(__name__, _FACE)
