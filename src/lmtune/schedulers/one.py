"""`lmtune train`'s scheduler: one fixed configuration (the study's training section, or an exported best),
scored on the test split and saved, through the one trial loop."""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from typing import Any

from lmtune.protocol import Decision, Eval, Outcome
from lmtune.schedulers.base import Launch, Scheduler
from lmtune.tuner import Plan, trial_spec

__all__ = ["OneRun"]


class OneRun(Scheduler):
    """The single run as a `lmtune.schedulers.Scheduler`: one fixed configuration, not interactive."""

    def __init__(self, plan: Plan, log: Callable[[str], None]) -> None:
        self.plan, self.log = plan, log
        self.launched = False
        self.outcome: Outcome | None = None
        self.started_at = 0.0
        self.wall_s = 0.0  # launch to end

    def suggest(self, device: str, threads: int) -> Launch | None:
        if self.launched:
            return None
        self.launched = True
        spec = trial_spec(self.plan, number=0, hparams=dict(self.plan.defaults), device=device, threads=threads,
                          interactive=False, evaluate_test=True, save_model=True, save_adapter=False)
        self.log(f"training one configuration on {device} ({spec.total_examples} train examples)")
        self.started_at = time.monotonic()
        return Launch(0, spec, self.plan.paths.trial_dir(0))

    def on_eval(self, key: Hashable, event: Eval, curve: list[dict[str, Any]]) -> Decision:
        raise AssertionError("lmtune train's run is not interactive")

    def on_end(self, key: Hashable, outcome: Outcome) -> None:
        self.outcome, self.wall_s = outcome, time.monotonic() - self.started_at

    def on_crash(self, key: Hashable, exc: Exception) -> None:
        self.log(f"the run could not be followed: {type(exc).__name__}: {exc}")

    def abandon(self, keys: list[Hashable]) -> None:
        """Interrupted: nothing is kept but the trial's folder; run the command again."""
