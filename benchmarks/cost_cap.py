"""Does a cost cap hold? Studies of simulated trials of varying speed under ``budget.max_cost``, each run until the
cap stops it; what they spent against their cap (docs/benchmarks/cost/cap.json, read by ../shared/checks/cost).

The trials are lmtune's stand-in trainer (the real loop, scheduler, budget and records; no training) on the
simulated backend, two at a time. Speed varies three ways: between trials (a per-trial factor of 0.4–2.5), within
a trial (every evaluation interval ±40 %), and between runs (the base seconds per unit). Caps are a few
trials' worth, so one trial too many would overrun by a third. The price makes a
second of one CPU device cost 1, so a cap of C is C device-seconds; spent is counted from the trial records
(wall time × devices × price), as `lmtune status` counts it.

    .venv/bin/python benchmarks/cost_cap.py --out docs/benchmarks/cost/cap.json

``--strategy auto`` runs the same caps with ``strategy: auto`` over epochs 1..3 (and the learning rate): every
trial planned at 3 epochs until that no longer fits the cost left, then the last one planned from what the cap
leaves at the measured speed (docs/configuration.md, ``budget``); it records whether that last trial completed.

    .venv/bin/python benchmarks/cost_cap.py --strategy auto --out docs/benchmarks/cost/cap-auto.json

``--cap wall`` runs the same kind of studies under ``budget.max_wall_time`` instead (a trial starts only if it
ends before the deadline at the speed measured so far; a running one stops at the evaluation whose next would
end after it): caps are seconds of the whole run of the command, set-up included, and what was spent is the
run's wall time.

    .venv/bin/python benchmarks/cost_cap.py --cap wall --out docs/benchmarks/cost/wall.json
    .venv/bin/python benchmarks/cost_cap.py --cap wall --strategy auto --out docs/benchmarks/cost/wall-auto.json
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).parents[1]


def varying(seed: int):  # type: ignore[no-untyped-def]
    """The stand-in trainer with a per-trial speed factor and ±40 % jitter on every interval."""
    from lmtune.execution.simtrainer import simulate

    def trainer(spec: dict[str, Any], emit: Any, receive: Any, *, unit_s: float, sleep: Any) -> int:
        rng = random.Random(f"{seed}-{spec['trial']}")
        factor = rng.choice([0.4, 0.7, 1.0, 1.5, 2.5])
        return simulate(spec, emit, receive, unit_s=unit_s * factor,
                        sleep=lambda s: sleep(s * rng.uniform(0.6, 1.4)))

    return trainer


def one_run(cap: float, unit_s: float, seed: int, folder: Path, strategy: str = "random",
            kind: str = "cost") -> dict[str, Any]:
    from lmtune.config import load_config
    from lmtune.execution.simulated import SimulatedExecutor
    from lmtune.study import record
    from lmtune.tuner import Tuner

    sets = [f"study.dir={folder}", f"study.seed={seed}", "task.model=builtin:minilm-l6",
            "task.dataset=builtin:rotten_tomatoes", "task.train_size=160", "task.validation_size=32",
            "task.test_size=32", "task.max_length=32", "training.batch_size=16", "training.max_steps=40",
            "training.eval_every=2", f"search.strategy={strategy}",
            "search.n_trials=40", "execution.workers=2", "execution.device=cpu",
            *([f"budget.max_cost={cap}", "budget.prices={cpu: 3600}"] if kind == "cost" else
              [f"budget.max_wall_time={cap}"])]
    if strategy == "auto":  # 10 steps an epoch: a 3-epoch trial is 15 units, about 0.75 device-seconds at 0.05
        sets += ["training.max_steps=null", "training.epochs=1", "search.include_default=false",
                 "search.space={epochs: {type: int, low: 1, high: 3}, learning_rate: {type: float, low: 1e-5, "
                 "high: 1e-2, log: true}}"]
    cfg = load_config(str(ROOT / "examples" / "quickstart.yaml"), sets)
    t0 = time.monotonic()
    summary = Tuner(cfg, backend=SimulatedExecutor(workers=2, unit_s=unit_s, trainer=varying(seed))).run()
    recs = record.records(summary.study.trials)
    spent = sum((r.wall_time_s or 0.0) * (r.devices or 1) for r in recs) if kind == "cost" else summary.wall_time_s
    out = {"cap": cap, "spent": round(spent, 3), "over": round(spent / cap - 1, 4), "unit_s": unit_s, "seed": seed,
           "trials": len(recs), "stopped_by_budget": sum(r.stopped_by == "budget" for r in recs),
           "stop_reason": summary.stop_reason, "wall_s": round(time.monotonic() - t0, 1)}
    if strategy == "auto":  # the trials planned shorter than 3 epochs from the cost left, and how they ended
        out["planned_from_budget"] = [{"epochs": round(float(r.config["epochs"]), 3), "state": r.state}
                                      for r in recs if float(r.config.get("epochs", 3)) < 3]
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks" / "cost" / "cap.json")
    ap.add_argument("--runs", type=int, default=8)
    ap.add_argument("--strategy", default="random", choices=["random", "auto"])
    ap.add_argument("--cap", default="cost", choices=["cost", "wall"], help="budget.max_cost or max_wall_time")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    runs = []
    # a trial of 20 evaluation units at 0.05 s per unit costs about 1 (0.4-2.5 by its speed): caps of 3 to 16
    # trials' worth, where one trial more or less is a large share of the cap
    plan = [(cap, unit_s) for cap, unit_s in ((3.0, 0.05), (5.0, 0.05), (4.0, 0.08), (8.0, 0.05), (6.0, 0.03),
                                              (10.0, 0.06), (3.5, 0.04), (16.0, 0.05))][: args.runs]
    if args.cap == "wall":  # seconds of the whole run, set-up (a few seconds) included: 2-8 trials' worth
        plan = [(cap, unit_s) for cap, unit_s in ((10.0, 0.1), (15.0, 0.1), (12.0, 0.15), (20.0, 0.1),
                                                  (9.0, 0.06), (25.0, 0.12), (11.0, 0.08), (30.0, 0.1))][: args.runs]
    for i, (cap, unit_s) in enumerate(plan):
        with tempfile.TemporaryDirectory() as d:
            runs.append(one_run(cap, unit_s, seed=i, folder=Path(d) / "s", strategy=args.strategy, kind=args.cap))
        print(json.dumps(runs[-1]), flush=True)
    what = "budget.max_cost caps" if args.cap == "cost" else "budget.max_wall_time caps (seconds of the run)"
    out = {"what": f"{what} of simulated trials of varying speed (benchmarks/cost_cap.py), strategy {args.strategy}",
           "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
           "date": time.strftime("%Y-%m-%d %H:%M"), "max_over": max(r["over"] for r in runs), "runs": runs}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1))
    print(f"worst overrun {out['max_over']:+.1%} of the cap over {len(runs)} runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
