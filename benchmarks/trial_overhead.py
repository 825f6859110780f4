"""Fixed cost per trial, cold start vs warm start (``execution.warm_start``), through ``lmtune tune``.

Each arm runs the same small study on the built-in task (MiniLM-L6, Rotten Tomatoes) with one worker;
arms alternate over ``--repeats`` so drift on the machine hits both. Per trial the driver records
``startup_s`` (launch to the trainer's first step: process start, imports, model load, data) and
``overhead_s`` (wall time not spent training or evaluating: start-up plus the end: saving, exit, recording).

    .venv/bin/python benchmarks/trial_overhead.py --trials 4 --repeats 2
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna

ROOT = Path(__file__).parents[1]


def run_arm(warm: bool, trials: int, train_size: int, folder: Path) -> tuple[list[dict[str, float]], float]:
    over = [f"study.dir={folder}", f"execution.warm_start={str(warm).lower()}", f"task.train_size={train_size}",
            "task.validation_size=200", "task.test_size=50", "task.max_length=48", "training.epochs=1",
            "training.eval_every=10", "search.strategy=random", "execution.threads_per_worker=2"]
    cmd = [sys.executable, "-m", "lmtune", "tune", str(ROOT / "examples" / "quickstart.yaml"),
           *[a for o in over for a in ("--set", o)], "--n-trials", str(trials)]
    t0 = time.monotonic()
    subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT)
    study_wall = time.monotonic() - t0
    study = optuna.load_study(study_name=None, storage=f"sqlite:///{folder / 'study.db'}")
    return [{"startup_s": t.user_attrs["startup_s"], "overhead_s": t.user_attrs["overhead_s"],
             "wall_s": t.user_attrs["wall_time_s"]} for t in study.trials if t.state.name == "COMPLETE"], study_wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--train-size", type=int, default=1000)
    args = ap.parse_args()
    rows: dict[bool, list[dict[str, float]]] = {True: [], False: []}
    walls: dict[bool, float] = {True: 0.0, False: 0.0}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            for warm in ((False, True) if r % 2 == 0 else (True, False)):
                trials, wall = run_arm(warm, args.trials, args.train_size, Path(tmp) / f"{warm}-{r}")
                rows[warm] += trials
                walls[warm] += wall
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"load average before the last arm {os.getloadavg()[0]:.2f}")
    # overhead / trial wall: the trials' own fixed cost; not training / study wall: everything else in the
    # whole `lmtune tune` command (its own start-up, tokenizing, the study, every trial's fixed cost)
    print("| start | trials | first trial start-up s | later trials start-up s (median) | overhead s (median) "
          "| overhead / trial wall | study wall s | not training / study wall |")
    print("|---|---|---|---|---|---|---|---|")
    for warm in (False, True):
        t = rows[warm]
        firsts = [x["startup_s"] for i, x in enumerate(t) if i % args.trials == 0]
        later = [x["startup_s"] for i, x in enumerate(t) if i % args.trials]
        share = sum(x["overhead_s"] for x in t) / sum(x["wall_s"] for x in t)
        busy = sum(x["wall_s"] - x["overhead_s"] for x in t)
        print(f"| {'warm' if warm else 'cold'} | {len(t)} | {statistics.median(firsts):.2f} | "
              f"{statistics.median(later):.2f} | {statistics.median(x['overhead_s'] for x in t):.2f} | {share:.1%} | "
              f"{walls[warm]:.0f} | {1 - busy / walls[warm]:.1%} |")


if __name__ == "__main__":
    main()
