"""The tuner: the recipes (`Tuner`, final runs, `lmtune train`), the one loop connecting a scheduler to a
backend (`lmtune.tuner.drive`), the study's plan, budgets and the failure policy. The schedulers that
decide are in `lmtune.schedulers`."""

from typing import TYPE_CHECKING

from lmtune.tuner.plan import Plan, make_plan, trial_spec

if TYPE_CHECKING:
    from lmtune.tuner.budget import RunSummary
    from lmtune.tuner.search import Tuner

__all__ = ["Plan", "RunSummary", "Tuner", "make_plan", "trial_spec"]


def __getattr__(name: str) -> object:
    """`Tuner` and `RunSummary`, imported when first named: the search recipe imports the schedulers, which
    import the tuner's parts (the plan, the budget), so importing this package must not import it."""
    if name == "Tuner":
        from lmtune.tuner.search import Tuner

        return Tuner
    if name == "RunSummary":
        from lmtune.tuner.budget import RunSummary

        return RunSummary
    raise AttributeError(f"module 'lmtune.tuner' has no attribute {name!r}")
