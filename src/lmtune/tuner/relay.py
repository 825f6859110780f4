"""The one place a running trainer's events are read: every trial of every kind (search, PBT member,
final run) is relayed here, its evaluations answered with the caller's `lmtune.protocol` decision,
and its ending returned as one `Outcome` (curve, end or error event, exit code), whose failure reason
`lmtune.protocol.failure_reason` words once for all callers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lmtune.execution import TrialHandle
from lmtune.protocol import Decision, Outcome

CURVE_KEYS = ("step", "units", "examples", "tokens", "metrics")
OnEval = Callable[[dict[str, Any], list[dict[str, Any]]], Decision]


def relay(proc: TrialHandle, *, on_eval: OnEval | None = None,
          on_event: Callable[[dict[str, Any]], None] | None = None) -> Outcome:
    """Read ``proc`` until it exits. ``on_eval(event, curve)`` answers each evaluation (``curve``
    already holds it; None: a non-interactive run, nothing is answered); ``on_event`` hears every other
    event but the end and the error, which the outcome holds."""
    outcome = Outcome(log_path=str(proc.log_path))
    for ev in proc.events():
        kind = ev.get("event")
        if kind == "eval":
            outcome.curve.append({k: ev[k] for k in CURVE_KEYS if k in ev})
            if on_eval is not None:
                proc.send(on_eval(ev, outcome.curve))
        elif kind == "end":
            outcome.end = ev
        elif kind == "error":
            outcome.error = ev
        elif on_event is not None:
            on_event(ev)
    outcome.code = proc.wait()
    return outcome
