"""Execution: starting/stopping trainer processes and relaying their metric stream."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lmtune.execution.base import Checkpoints, Executor, TrialHandle
from lmtune.execution.checkpoints import FolderCheckpoints
from lmtune.execution.local import TRAINER, LocalExecutor, TrialProcess

if TYPE_CHECKING:
    from lmtune.config import ExecutionSection

__all__ = ["TRAINER", "Checkpoints", "Executor", "FolderCheckpoints", "LocalExecutor", "TrialHandle", "TrialProcess",
           "make_executor"]


def make_executor(execution: ExecutionSection, *, module: str = TRAINER) -> Executor:
    """The executor that ``execution.backend`` names; Ray is imported only when asked for.

    ``module``: the trainer entry point run per trial (a stand-in in the scaling benchmark).
    """
    if execution.backend == "ray":
        from lmtune.execution.ray_backend import RayExecutor

        return RayExecutor(workers=execution.workers, device=execution.device, address=execution.address,
                           cpus_per_trial=execution.cpus_per_trial, gpus_per_trial=execution.gpus_per_trial,
                           max_retries=execution.max_retries, threads=execution.threads_per_worker, module=module)
    return LocalExecutor(workers=execution.workers, device=execution.device,
                         threads=execution.threads_per_worker, module=module, warm_start=execution.warm_start,
                         processes_per_trial=execution.trial_processes)
