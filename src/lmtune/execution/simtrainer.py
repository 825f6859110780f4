"""A stand-in trainer for measuring executors and the driver: ``python -m lmtune.execution.simtrainer TRIAL_FILE``.

It speaks the trainer protocol of `lmtune.training.worker` (start, eval per unit answered by the
driver's decision, end) but trains nothing: each unit sleeps ``LMTUNE_SIM_UNIT_S`` seconds (default
1) and the metric follows the toy learning curve of `lmtune.strategies.toy` (gap to a learning-rate
dependent ceiling closed at a learning-rate dependent speed). Imports only the standard library and
`lmtune.protocol` (itself standard library only), so start-up costs what a bare Python start costs.
"""

from __future__ import annotations

import json
import math
import os
import random
import sys
import time
from typing import Any

from lmtune.protocol import Continue, decode_decision, encode_event


def quality_after(units: int, lr: float, weight_decay: float) -> float:
    """Noise-free quality of `lmtune.strategies.toy.ToyCurve` after ``units`` units at a fixed rate."""
    speed = 0.25 * min(1.0, lr / 1e-3)
    ceiling = 0.70 - 0.15 * math.log10(lr / 1e-3) - 0.3 * abs(weight_decay - 0.05)
    return ceiling * (1 - (1 - speed) ** units)


def main(argv: list[str]) -> int:
    with open(argv[0]) as fh:
        spec: dict[str, Any] = json.load(fh)
    unit_s = float(os.environ.get("LMTUNE_SIM_UNIT_S", "1"))
    hp = spec["hparams"]
    units = max(1, math.ceil(spec["total_examples"] / spec["examples_per_unit"]))
    rng = random.Random(f"{spec['trial']}")
    metric = spec["metric"]

    def emit(event: dict[str, Any]) -> None:
        sys.stdout.write(encode_event(event) + "\n")
        sys.stdout.flush()

    t0 = time.perf_counter()
    emit({"event": "start", "precision": "fp32", "device": "sim", "total_steps": units, "load_time_s": 0.0,
          "resumed_at_units": 0})
    stopped_by, done, metrics = None, 0, {}
    for u in range(1, units + 1):
        time.sleep(unit_s)
        done = u
        q = quality_after(u, float(hp.get("learning_rate", 1e-3)), float(hp.get("weight_decay", 0.0)))
        metrics = {metric: q + 0.01 * rng.gauss(0, 1), "train_loss": 1 - q}
        emit({"event": "eval", "step": u, "units": u, "examples": u * spec["examples_per_unit"],
              "tokens": u * spec["examples_per_unit"] * 32, "metrics": metrics,
              "elapsed_s": time.perf_counter() - t0})
        answer = decode_decision(sys.stdin.readline()) if spec.get("interactive", True) and u < units else None
        if answer is not None and not isinstance(answer, Continue):
            stopped_by = "pruned"
            break
    emit({"event": "end", "units": done, "metrics": metrics, "stopped_by": stopped_by,
          "train_tokens": done * spec["examples_per_unit"] * 32, "train_time_s": done * unit_s, "eval_time_s": 0.0})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
