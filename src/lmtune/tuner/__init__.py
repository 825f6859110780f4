"""The tuner: the recipes (`Tuner`, final runs, `lmtune train`), the one loop connecting a scheduler to a
backend (`lmtune.tuner.drive`), the study's plan, budgets and the failure policy. The schedulers that
decide are in `lmtune.schedulers`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lmtune._faces import lazy
from lmtune.tuner.plan import Plan, make_plan, trial_spec

if TYPE_CHECKING:
    from lmtune.tuner.budget import Budget, RunSummary
    from lmtune.tuner.coordination import Beat, Coordination
    from lmtune.tuner.final import FinalRunner, FinalSummary
    from lmtune.tuner.final_plan import FinalJob, FinalRunError, boundary, job_spec
    from lmtune.tuner.plan import (
        length_of,
        longest_fitting,
        longest_length,
        shortest_examples,
        shortest_length,
        training_examples,
    )
    from lmtune.tuner.progress import PlainReporter, Reporter, make_reporter
    from lmtune.tuner.proxy import TwoStageTuner
    from lmtune.tuner.search import Tuner
    from lmtune.tuner.tracking import NoTracking, RunRecord, Tracker
    from lmtune.tuner.train_one import TrainResult

__all__ = ["Beat", "Budget", "Coordination", "FinalJob", "FinalRunError", "FinalRunner", "FinalSummary", "NoTracking",
           "PlainReporter", "Plan", "Reporter", "RunRecord", "RunSummary", "Tracker", "TrainResult", "Tuner",
           "TwoStageTuner", "boundary", "job_spec", "length_of", "longest_fitting", "longest_length", "make_plan",
           "make_reporter", "shortest_examples", "shortest_length", "training_examples", "trial_spec"]

# the rest of the face, each name imported from its module when first named (lmtune._faces)
_FACE = {
    "Beat": "coordination",
    "Budget": "budget",
    "Coordination": "coordination",
    "FinalJob": "final_plan",
    "FinalRunError": "final_plan",
    "FinalRunner": "final",
    "FinalSummary": "final",
    "NoTracking": "tracking",
    "PlainReporter": "progress",
    "Reporter": "progress",
    "RunRecord": "tracking",
    "RunSummary": "budget",
    "Tracker": "tracking",
    "TrainResult": "train_one",
    "Tuner": "search",
    "TwoStageTuner": "proxy",
    "boundary": "final_plan",
    "job_spec": "final_plan",
    "length_of": "plan",
    "longest_fitting": "plan",
    "longest_length": "plan",
    "make_reporter": "progress",
    "shortest_examples": "plan",
    "shortest_length": "plan",
    "training_examples": "plan",
}

__getattr__ = lazy(__name__, _FACE)
