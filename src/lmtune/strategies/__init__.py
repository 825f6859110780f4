"""Strategies: which configuration next (samplers), when to stop (pruners), PBT decisions.

Never imports torch, transformers, subprocess or ray (a test enforces it).
"""

from lmtune.strategies.pruners import LengthOf, make_pruner, prune_metric, pruner_name, pruning_value
from lmtune.strategies.samplers import make_sampler, startup_trials

__all__ = ["LengthOf", "make_pruner", "make_sampler", "prune_metric", "pruner_name", "pruning_value",
           "startup_trials"]
