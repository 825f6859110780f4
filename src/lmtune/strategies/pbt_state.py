"""The records PBT keeps per member and for the best checkpoint, and their JSON form.

A *schedule* is a list of ``{"units": u, "config": {...}}`` entries, sorted by units, starting at 0:
the configuration in force from ``u`` units on. Training from scratch and switching configuration at
those units replays the member's whole history, including what it inherited by exploiting others.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

Schedule = list[dict[str, Any]]


@dataclass
class MemberState:
    """One member of the population.

    ``units``: the latest units reported (or inherited by an exploit). ``checkpoint``: the
    ``(owner, units)`` key to restart this member from, None before its first checkpoint; after an
    exploit it is the copied member's key until this member reports a checkpoint of its own.
    ``score``: the score of that checkpoint. ``history``: units -> score at every checkpoint in the
    lineage of the current weights (inherited from the copied member up to the copied units).
    ``generation``: how many exploits led to the current weights (the copied member's + 1).
    ``parent``: the member copied last, None if never.
    """

    member: int
    config: dict[str, Any]
    schedule: Schedule
    generation: int = 0
    parent: int | None = None
    units: int = 0
    checkpoint: tuple[int, int] | None = None
    score: float | None = None
    history: dict[int, float] = field(default_factory=dict)
    finished: bool = False


@dataclass
class Best:
    """The best checkpoint reported so far: key ``(member, units)``, its score, the schedule that
    produced it (entries up to ``units``) and the config in force when it was taken."""

    member: int
    units: int
    score: float
    schedule: Schedule = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)


def encode_score(score: float | None) -> float | str | None:
    """JSON has no NaN or infinities: those travel as strings that ``float()`` reads back."""
    if score is None or math.isfinite(score):
        return score
    return repr(score)


def encode_member(m: MemberState) -> dict[str, Any]:
    return {"member": m.member, "config": m.config, "schedule": m.schedule, "generation": m.generation,
            "parent": m.parent, "units": m.units, "finished": m.finished,
            "checkpoint": None if m.checkpoint is None else list(m.checkpoint),
            "score": encode_score(m.score), "history": [[u, encode_score(v)] for u, v in m.history.items()]}


def decode_member(d: dict[str, Any]) -> MemberState:
    ckpt = d["checkpoint"]
    schedule = [{"units": int(e["units"]), "config": dict(e["config"])} for e in d["schedule"]]
    return MemberState(member=int(d["member"]), config=dict(d["config"]), schedule=schedule,
                       generation=int(d["generation"]), parent=d["parent"], units=int(d["units"]),
                       checkpoint=None if ckpt is None else (int(ckpt[0]), int(ckpt[1])),
                       score=None if d["score"] is None else float(d["score"]), finished=bool(d["finished"]),
                       history={int(u): float(v) for u, v in d["history"]})


__all__ = ["Best", "MemberState", "Schedule", "decode_member", "encode_member", "encode_score"]
