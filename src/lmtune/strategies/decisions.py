"""What a scheduling strategy answers when a running member (or trial) reports a result: the protocol's own
decisions (`lmtune.protocol`), one vocabulary from the strategy to the trainer.

Decisions are apart from execution (as in Syne Tune): a strategy only says *what* should happen; the
executor starts, stops and restores trainer processes and resolves, lists and deletes checkpoints.

- `Continue`: keep training the member with its current configuration;
- `Stop` (``reason`` for people and records, e.g. "reached max_units"): stop the member for good;
- `Exploit`: restart the reporting member from the checkpoint ``source`` (a `CheckpointRef` naming the
  donor *member* and the units it was taken at) and train on from there with ``hparams``, the searched
  settings (complete for the space: exactly the active parameters; the receiver must not mutate them).
  The reporting member's unit counter becomes ``source.units`` (never smaller than its own latest units).
  The scheduler that forwards it names the donor's trial, the full training section and the folder.

All amounts are in evaluation *units*: equal amounts of training data (examples or tokens) for every
member, never optimizer steps, so members with different batch sizes are compared at equal data.

A strategy never answers ``Pause``: the asynchronous PBT here never waits for slow members. An executor
with fewer workers than members may still suspend a member after any report whose checkpoint it holds and
resume it later from ``PBT.member_state(m).checkpoint``; that is the scheduler's policy, not a decision.
"""

from __future__ import annotations

from lmtune.protocol import CheckpointRef, Continue, Exploit, Stop

Decision = Continue | Stop | Exploit

__all__ = ["CheckpointRef", "Continue", "Decision", "Exploit", "Stop"]
