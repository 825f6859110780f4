"""The one place a running trainer's events are read: every trial of every kind (search, PBT member,
final run) is relayed here, its events typed (`lmtune.protocol.read_event`), its evaluations answered
with the caller's `lmtune.protocol` decision, and its ending returned as one `Outcome` (curve, end or
error event, exit code), whose failure reason `lmtune.protocol.failure_reason` words once for all callers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lmtune.execution import TrialHandle
from lmtune.protocol import Decision, End, Error, Eval, Event, Outcome, Start, read_event

OnEval = Callable[[Eval, list[dict[str, Any]]], Decision]


def relay(proc: TrialHandle, *, on_eval: OnEval | None = None,
          on_event: Callable[[Event], None] | None = None) -> Outcome:
    """Read ``proc`` until it exits. ``on_eval(event, curve)`` answers each evaluation (``curve``
    already holds it; None: a non-interactive run, nothing is answered); ``on_event`` hears every other
    event but the end and the error, which the outcome holds."""
    outcome = Outcome(log_path=str(proc.log_path))
    for wire in proc.events():
        ev = read_event(wire)
        if isinstance(ev, Eval):
            outcome.curve.append(ev.point())
            if on_eval is not None:
                proc.send(on_eval(ev, outcome.curve))
        elif isinstance(ev, End):
            outcome.end = ev
        elif isinstance(ev, Error):
            outcome.error = ev
        else:
            if isinstance(ev, Start) and outcome.start is None:
                outcome.start = ev
            if on_event is not None:
                on_event(ev)
    outcome.code = proc.wait()
    return outcome
