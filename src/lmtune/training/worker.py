"""Trainer process entry point: ``python -m lmtune.training.worker TRIAL_FILE``.

Speaks `lmtune.protocol` (events as JSON lines on the original stdout, decisions on stdin); everything
else a library prints goes to stderr.
"""

from __future__ import annotations

import os
import sys
import traceback
from typing import TYPE_CHECKING, Any, TextIO

from lmtune.protocol import Continue, Decision, TrialSpec, decode_decision, encode_event

if TYPE_CHECKING:  # the trainer's imports (torch) wait until a trial needs them: see zygote.py
    from lmtune.training.loop import Decide, Emit


def _channel() -> tuple[TextIO, TextIO]:
    """Keep the real stdout for the protocol; send library prints to stderr."""
    proto = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    return proto, sys.stdin


def classify_error(exc: BaseException) -> str:
    name = type(exc).__name__
    text = str(exc).lower()
    if name == "OutOfMemoryError" or "out of memory" in text:
        return "oom"
    if name == "TrainingDiverged":
        return "nan"
    if name in ("ModelLoadError", "DataError", "ConfigError", "LayerDecayError"):
        return "input"
    return "exception"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if "--rank" in args:  # rank 1.. of a data-parallel trial: no protocol, decisions come from rank 0
        return _rank(args)
    proto, inbox = _channel()

    def emit(event: dict[str, Any]) -> None:
        proto.write(encode_event(event) + "\n")
        proto.flush()

    def decide() -> Decision:
        return decode_decision(inbox.readline())  # an empty line (driver gone) is Stop

    try:
        emit(_train(args[0], emit, decide))
        return 0
    except BaseException as exc:  # report every failure to the driver, with its reason
        traceback.print_exc(file=sys.stderr)
        emit({"event": "error", "kind": classify_error(exc), "reason": f"{type(exc).__name__}: {exc}"[:2000]})
        return 1


def _train(trial_file: str, emit: Emit, decide: Decide, rank: int = 0, port: int | None = None) -> dict[str, Any]:
    """Train the trial in this process, as ``rank`` of its group (rank 0 starts the others)."""
    spec = TrialSpec.read(trial_file)
    if spec.threads:
        import torch

        torch.set_num_threads(max(1, spec.threads // spec.world_size))  # ranks share the trial's cores
    from lmtune.training import distributed
    from lmtune.training.loop import train

    group = distributed.start(trial_file, spec.world_size, spec.device, rank=rank, port=port,
                              sharded=spec.shard_model)
    try:
        return train(spec, emit, decide)
    finally:
        group.close()


def _rank(args: list[str]) -> int:
    """A rank > 0: trains its slice of every batch; rank 0 reports for the trial (and its failure)."""
    rank, port = int(args[args.index("--rank") + 1]), int(args[args.index("--port") + 1])
    # decisions are rank 0's, broadcast inside train(); events are rank 0's to send
    _train(args[0], lambda _event: None, lambda: Continue(), rank=rank, port=port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
