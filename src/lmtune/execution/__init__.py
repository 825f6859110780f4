"""Execution: starting/stopping trainer processes and relaying their metric stream."""

from lmtune.execution.local import LocalExecutor, TrialProcess

__all__ = ["LocalExecutor", "TrialProcess"]
