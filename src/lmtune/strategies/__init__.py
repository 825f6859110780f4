"""Strategies: which configuration next (samplers), when to stop (pruners), PBT decisions.

Never imports torch, transformers, subprocess or ray (a test enforces it).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from lmtune.strategies.pruners import LengthOf, make_pruner, prune_metric, pruner_name, pruning_value
from lmtune.strategies.samplers import make_sampler, startup_trials
from lmtune.strategies.traits import StrategyTraits, traits

if TYPE_CHECKING:
    from lmtune.strategies.pbt import PBT

__all__ = ["PBT", "LengthOf", "StrategyTraits", "make_pruner", "make_sampler", "prune_metric", "pruner_name",
           "pruning_value", "startup_trials", "traits"]

# The rest of the face: each name imported from its module when first named, so importing the package stays
# cheap (no torch, no Optuna until used) and free of import cycles between layers.
_FACE = {
    "PBT": "pbt",
}


def __getattr__(name: str) -> Any:
    module = _FACE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
