"""The tuner: the one loop connecting strategy, executor and study; budgets; failure policy."""

from lmtune.tuner.plan import Plan, make_plan, trial_spec
from lmtune.tuner.search import RunSummary, Tuner

__all__ = ["Plan", "RunSummary", "Tuner", "make_plan", "trial_spec"]
