"""Strategies: which configuration next (samplers), when to stop (pruners), PBT decisions.

Never imports torch, transformers, subprocess or ray (a test enforces it).
"""

from lmtune.strategies.pruners import PLANNED_EXAMPLES, make_pruner, prune_metric, pruner_name, pruning_value
from lmtune.strategies.samplers import make_sampler, startup_trials

__all__ = ["PLANNED_EXAMPLES", "make_pruner", "make_sampler", "prune_metric", "pruner_name", "pruning_value",
           "startup_trials"]
