"""What a scheduling strategy answers when a running member (or trial) reports a result.

Decisions are apart from execution (as in Syne Tune): a strategy only says *what* should happen; the
executor starts, stops and restores trainer processes and copies or deletes checkpoint files.

All amounts are in evaluation *units*: equal amounts of training data (examples or tokens) for every
member, never optimizer steps, so members with different batch sizes are compared at equal data.

There is no ``Pause``: the asynchronous PBT here never waits for slow members. An executor with fewer
workers than members may still suspend a member after any report whose checkpoint it holds and
resume it later from ``PBT.member_state(m).checkpoint``; that is an executor policy, not a decision.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Continue:
    """Keep training the member with its current configuration."""


@dataclass(frozen=True)
class Stop:
    """Stop the member for good. ``reason`` is for humans and trial records (e.g. "reached max_units")."""

    reason: str


@dataclass(frozen=True)
class Exploit:
    """Restart the reporting member from member ``source_member``'s checkpoint taken at ``source_units``
    and train on from there with ``config``.

    The reporting member's unit counter becomes ``source_units`` (never smaller than its own latest
    units). ``config`` is complete for the space (exactly the active parameters) and must not be
    mutated by the receiver.
    """

    source_member: int
    source_units: int
    config: dict[str, Any]


Decision = Continue | Stop | Exploit

__all__ = ["Continue", "Decision", "Exploit", "Stop"]
