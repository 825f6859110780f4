"""Trainer process entry point: ``python -m lmtune.training.worker TRIAL_FILE``.

Speaks `lmtune.protocol` (events as JSON lines on the original stdout, decisions on stdin); everything
else a library prints goes to stderr.
"""

from __future__ import annotations

import os
import sys
import traceback
from typing import Any, TextIO

from lmtune.protocol import Continue, Decision, TrialSpec, decode_decision, encode_event


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
        spec = TrialSpec.read(args[0])
        if spec.threads:
            import torch

            torch.set_num_threads(max(1, spec.threads // spec.world_size))  # ranks share the trial's cores
        from lmtune.training import distributed
        from lmtune.training.loop import train

        group = distributed.start(args[0], spec.world_size, spec.device)
        try:
            emit(train(spec, emit, decide))
        finally:
            group.close()
        return 0
    except BaseException as exc:  # report every failure to the driver, with its reason
        traceback.print_exc(file=sys.stderr)
        emit({"event": "error", "kind": classify_error(exc), "reason": f"{type(exc).__name__}: {exc}"[:2000]})
        return 1


def _rank(args: list[str]) -> int:
    """A rank > 0: trains its slice of every batch; rank 0 reports for the trial (and its failure)."""
    spec = TrialSpec.read(args[0])
    rank, port = int(args[args.index("--rank") + 1]), int(args[args.index("--port") + 1])
    if spec.threads:
        import torch

        torch.set_num_threads(max(1, spec.threads // spec.world_size))
    from lmtune.training import distributed
    from lmtune.training.loop import train

    group = distributed.start(args[0], spec.world_size, spec.device, rank=rank, port=port)
    try:
        train(spec, lambda _event: None, lambda: Continue())  # decisions: rank 0's, broadcast in train()
    finally:
        group.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
