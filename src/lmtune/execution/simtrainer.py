"""A stand-in trainer for measuring executors and the driver: ``python -m lmtune.execution.simtrainer TRIAL_FILE``.

It speaks the trainer protocol of `lmtune.training.worker` (start, eval per unit answered by the
driver's decision, end; PBT's checkpoints, pause, exploit and resume) but trains nothing: each unit
sleeps ``LMTUNE_SIM_UNIT_S`` seconds (default 1) and the metric follows the toy learning curve of
`lmtune.strategies.toy` (gap to a learning-rate dependent ceiling closed at a learning-rate dependent
speed). A checkpoint is one small JSON manifest (units and settings, no other files). The same code runs
in-process as the simulated backend (`lmtune.execution.simulated`). Imports only the standard library and
`lmtune.protocol` (itself standard library only), so start-up costs what a bare Python start costs.
"""

from __future__ import annotations

import json
import math
import os
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lmtune.protocol import (
    CHECKPOINT_MANIFEST,
    Decision,
    Ending,
    Exploit,
    checkpoint_folder,
    decode_decision,
    encode_event,
)


def quality_after(units: int, lr: float, weight_decay: float) -> float:
    """Noise-free quality of `lmtune.strategies.toy.ToyCurve` after ``units`` units at a fixed rate."""
    speed = 0.25 * min(1.0, lr / 1e-3)
    ceiling = 0.70 - 0.15 * math.log10(lr / 1e-3) - 0.3 * abs(weight_decay - 0.05)
    return ceiling * (1 - (1 - speed) ** units)


def tokens_per_example(spec: dict[str, Any]) -> float:
    """The mean real tokens per train example of the trial's tokenized data (its cache's meta.json), as the
    budget estimates them; 32 without a cache (a script study, a bare spec)."""
    meta = Path(spec.get("data_cache") or "") / "meta.json"
    if spec.get("data_cache") and meta.is_file():
        train = json.loads(meta.read_text()).get("splits", {}).get("train", {})
        if train.get("rows") and train.get("tokens"):
            return float(train["tokens"]) / float(train["rows"])
    return 32.0


def save_manifest(output_dir: str, units: int, hparams: dict[str, Any]) -> str:
    """A stand-in trainer's checkpoint after ``units`` units: one small manifest (units and settings, no
    other files) in the layout's folder; returns the folder for the eval event."""
    folder = checkpoint_folder(output_dir or ".", units)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / CHECKPOINT_MANIFEST).write_text(json.dumps({"units": units, "hparams": hparams, "files": []}))
    return str(folder)




def serving(hp: dict[str, Any]) -> dict[str, float]:
    """The stand-in's serving cost (``measure_serving``): a 1M-parameter model, a LoRA adapter of 10k
    parameters per rank on top, latency growing with both."""
    adapter = 10_000 * int(hp.get("lora_r", 8)) if hp.get("lora_enabled") else 0
    total = 1_000_000 + adapter
    return {"serve_params": float(total), "serve_trainable_params": float(adapter or total),
            "serve_latency_ms": 5.0 + total / 1e6}


def simulate(spec: dict[str, Any], emit: Callable[[dict[str, Any]], None], receive: Callable[[], Decision | None],
             *, unit_s: float, sleep: Callable[[float], None] = time.sleep) -> int:
    """Run one simulated trial of ``spec`` (a TrialSpec as JSON): ``emit`` each event, ``receive`` the
    answer to each evaluation. Returns the exit code (0)."""
    hp = dict(spec["hparams"])
    per_unit = spec["examples_per_unit"]
    units = max(1, math.ceil(spec["total_examples"] / per_unit))
    rng = random.Random(f"{spec['trial']}")
    metric = spec["metric"]
    every = int(spec.get("checkpoint_every") or 0)
    start = 0
    if spec.get("resume_from"):
        saved = json.loads((Path(spec["resume_from"]) / CHECKPOINT_MANIFEST).read_text())
        start = int(saved["units"])
    t0 = time.perf_counter()
    emit({"event": "start", "precision": "fp32", "device": "sim", "total_steps": units, "load_time_s": 0.0,
          "resumed_at_units": start})
    stopped_by, done, metrics = None, start, {}
    per_token = tokens_per_example(spec)

    def seen(u: int) -> int:  # examples after u units: the last, shorter interval ends at the planned length
        return min(u * per_unit, int(spec["total_examples"]))

    # as lmtune's trainer: evaluated only there and at the end (every unit under early stopping)
    needed = set() if hp.get("early_stopping_patience") else {int(x) for x in spec.get("eval_units") or ()}
    for u in range(start + 1, units + 1):
        sleep(unit_s * (seen(u) - seen(u - 1)) / per_unit)  # a shorter last interval takes its share of a unit
        done = u
        if needed and u not in needed and u < units:
            continue
        q = quality_after(u, float(hp.get("learning_rate", 1e-3)), float(hp.get("weight_decay", 0.0)))
        serve = serving(hp) if spec.get("measure_serving") else {}
        if serve and hp.get("lora_enabled"):  # the serving trade-off: a larger adapter fits a little better
            q += 0.02 * math.log2(max(1, int(hp.get("lora_r", 8))))
        metrics = {metric: q + 0.01 * rng.gauss(0, 1), "train_loss": 1 - q, "eval_loss": 1 - q, **serve}
        ev: dict[str, Any] = {"event": "eval", "step": u, "units": u, "examples": seen(u),
                              "tokens": round(seen(u) * per_token), "metrics": metrics,
                              "elapsed_s": time.perf_counter() - t0}
        if every and u % every == 0:
            ev["checkpoint"] = save_manifest(spec.get("output_dir") or ".", u, hp)
        emit(ev)
        answer = receive() if spec.get("interactive", True) and u < units else None
        if isinstance(answer, Exploit):  # go on from the donor's units with the new settings
            hp = dict(answer.hparams)
            continue
        ending = Ending.after(answer)
        if ending is not None:
            stopped_by = ending.wire
            break
    end: dict[str, Any] = {"event": "end", "units": done, "metrics": metrics, "stopped_by": stopped_by,
                           "train_tokens": round(seen(done) * per_token), "train_time_s": (done - start) * unit_s,
                           "eval_time_s": 0.0}
    if spec.get("evaluate_test"):  # final runs: the same curve, scored "on test"
        end["test_metrics"] = {"test_" + k.removeprefix("eval_"): v for k, v in metrics.items() if k != "train_loss"}
    emit(end)
    return 0


def main(argv: list[str]) -> int:
    with open(argv[0]) as fh:
        spec: dict[str, Any] = json.load(fh)

    def emit(event: dict[str, Any]) -> None:
        sys.stdout.write(encode_event(event) + "\n")
        sys.stdout.flush()

    return simulate(spec, emit, lambda: decode_decision(sys.stdin.readline()),
                    unit_s=float(os.environ.get("LMTUNE_SIM_UNIT_S", "1")))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
