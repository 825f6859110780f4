"""Trainer process entry point: ``python -m lmtune.training.worker TRIAL_FILE``.

Protocol (one JSON object per line on the original stdout; everything else goes to stderr):
  → {"event": "start", ...}            once the model is loaded
  → {"event": "eval", "units": u, ...}  after each evaluation; then, when the spec is interactive,
  ← one line on stdin: "continue" or "stop"  (the driver's pruning decision)
  → {"event": "end", ...} | {"event": "error", "kind": ..., "reason": ...}
Exit code 0 after "end" (also when stopped), 1 after "error".
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from typing import Any, TextIO

from lmtune.training.spec import TrialSpec


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
    proto, inbox = _channel()

    def emit(event: dict[str, Any]) -> None:
        proto.write(json.dumps(event, default=float) + "\n")
        proto.flush()

    def decide() -> str:
        line = inbox.readline()
        return line.strip() or "stop"  # driver gone: stop rather than train unobserved

    try:
        spec = TrialSpec.read(args[0])
        if spec.threads:
            import torch

            torch.set_num_threads(spec.threads)
        from lmtune.training.loop import train

        emit(train(spec, emit, decide))
        return 0
    except BaseException as exc:  # report every failure to the driver, with its reason
        traceback.print_exc(file=sys.stderr)
        emit({"event": "error", "kind": classify_error(exc), "reason": f"{type(exc).__name__}: {exc}"[:2000]})
        return 1


if __name__ == "__main__":
    sys.exit(main())
