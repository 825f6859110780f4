"""The table trainer: a stand-in with `lmtune.execution.simtrainer.simulate`'s signature that answers a
trial spec from a recorded table instead of training. It runs inside lmtune's simulated backend, so a
replayed study goes through the same tuner loop, schedulers, budget and study records as a live one.

Per trial: the spec's settings and planned length pick a recorded configuration (`tables.table.Mapper`); each
evaluation unit (``spec.examples_per_unit`` examples) reports that run's curve at that amount of data
(interpolated); the decision after each evaluation is obeyed (stop, pause); a paused trial resumed from its
checkpoint goes on from the units it reached (the checkpoint is a small manifest, as the simulator's); a run
that diverged when it was recorded fails at the same point with the recorded reason. Train tokens and
simulated seconds come from the recording.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lmtune.execution.simtrainer import save_manifest
from lmtune.protocol import CHECKPOINT_MANIFEST, Decision, Ending, Exploit
from tables.table import Mapper, Table


def table_trainer(table: Table, world: int, picked: dict[int, int] | None = None,
                  lengths: dict[int, int] | None = None, mapper: Mapper | None = None) -> Callable[..., int]:
    """A trainer for `lmtune.execution.simulated.SimulatedExecutor` replaying ``table``'s seed ``world``;
    ``picked`` (trial number -> configuration id) and ``lengths`` (trial number -> planned train examples)
    are filled as trials start. ``mapper``: the search's mapping onto the table (default: a new
    `tables.table.Mapper`, no repeats)."""
    mapping = mapper if mapper is not None else table.mapper()

    def run(spec: dict[str, Any], emit: Callable[[dict[str, Any]], None], receive: Callable[[], Decision | None],
            *, unit_s: float = 0.0, sleep: Callable[[float], None] | None = None) -> int:
        hp = dict(spec["hparams"])
        epochs = spec["total_examples"] / table.rows
        config = mapping(hp, epochs)
        if picked is not None:
            picked[int(spec["trial"])] = config
        if lengths is not None:
            lengths[int(spec["trial"])] = int(spec["total_examples"])
        recorded = table.run(config, world)
        per_unit = int(spec["examples_per_unit"])
        units = max(1, math.ceil(spec["total_examples"] / per_unit))
        every = int(spec.get("checkpoint_every") or 0)
        start = 0
        if spec.get("resume_from"):
            start = int(json.loads((Path(spec["resume_from"]) / CHECKPOINT_MANIFEST).read_text())["units"])
        emit({"event": "start", "precision": "fp32", "device": "table", "total_steps": units, "load_time_s": 0.0,
              "resumed_at_units": start, "table_config": config})
        last_recorded = recorded.points[-1]["examples"] if recorded.points else 0
        stopped_by, done, point = None, start, {}
        for u in range(start + 1, units + 1):
            examples = min(u * per_unit, spec["total_examples"])
            if recorded.error and examples > last_recorded:
                emit({"event": "error", "kind": "TrainingDiverged", "reason": recorded.error})
                return 1
            point = recorded.at(examples)
            done = u
            metrics = {k: v for k, v in point.items() if k.startswith(("eval_", "train_loss"))}
            ev: dict[str, Any] = {"event": "eval", "step": round(point.get("step", u)), "units": u,
                                  "examples": examples, "tokens": round(point.get("tokens", 0)), "metrics": metrics,
                                  "elapsed_s": point.get("elapsed_s", 0.0)}
            if every and (u % every == 0 or u == units):
                ev["checkpoint"] = save_manifest(spec.get("output_dir") or ".", u, hp)
            emit(ev)
            answer = receive() if spec.get("interactive", True) and u < units else None
            if isinstance(answer, Exploit):
                raise RuntimeError("a table cannot replay an exploit (PBT changes settings mid-run)")
            ending = Ending.after(answer)
            if ending is not None:
                stopped_by = ending.wire
                break
        end: dict[str, Any] = {"event": "end", "units": done, "metrics": {k: v for k, v in point.items()
                                                                          if k.startswith(("eval_", "train_loss"))},
                               "stopped_by": stopped_by, "train_tokens": round(point.get("tokens", 0)),
                               "train_time_s": point.get("elapsed_s", 0.0), "eval_time_s": 0.0,
                               "table_config": config}
        if stopped_by is None:  # a trial planned shorter than the recorded run: its test score where it ended
            end["test_metrics"] = {k: (v if spec["total_examples"] >= last_recorded else
                                       recorded.test_at(spec["total_examples"], k))
                                   for k, v in recorded.final.items() if k.startswith("test_")}
        emit(end)
        return 0

    return run
