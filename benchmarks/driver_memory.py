"""Does the driver's memory stay flat over a long study? (#13 item 7)

Runs one study of ``--trials`` trials in this process (this process *is* the driver) and samples, each
time a trial finishes: resident memory (VmRSS), its peak so far (VmHWM), open file descriptors and live
threads. A leak of records, curves, pipes, log files or reader threads shows as growth from trial 5 to
the last one. Two backends:

- ``local`` (default): the real trainers, one process per trial, on the built-in MiniLM (or ``--model``)
  with a tiny slice of data: what a user's driver does, pipes and log files included;
- ``simulated``: the stand-in trainer in threads (`lmtune.execution.simulated`): the loop, sampler,
  study records and reporter only, in seconds (tests/tuner/test_driver_memory.py runs this one).

Run from the project root: ``.venv/bin/python benchmarks/driver_memory.py [--backend local] [--trials 50]``
(local: about 5 minutes on 2 cores). Prints a Markdown table and, with ``--json``, one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from reliability_probe import tiny_data  # the same 80 made-up reviews (benchmarks/ is on sys.path)

from lmtune.config import load_config
from lmtune.execution.simulated import SimulatedExecutor
from lmtune.tuner.progress import PlainReporter
from lmtune.tuner.search import Tuner

ROOT = Path(__file__).parents[1]
QUICKSTART = ROOT / "examples" / "quickstart.yaml"


def status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


class Sampling(PlainReporter):
    """The plain reporter (into a file), plus one sample of this process per finished trial."""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self.samples: list[dict[str, int]] = []

    def trial_finished(self, number: int, state: str, value: float | None, reason: str,
                       best: float | None) -> None:
        super().trial_finished(number, state, value, reason, best)
        self.samples.append({"finished": len(self.samples) + 1, "rss_kib": status_kib("VmRSS"),
                             "hwm_kib": status_kib("VmHWM"), "fds": len(os.listdir("/proc/self/fd")),
                             "threads": threading.active_count()})


def measure(backend: str, trials: int, model: str, data: Path | None, work: Path) -> dict[str, Any]:
    data = data or tiny_data(work)
    overrides = [f"study.dir={work / 'study'}", f"task.model={model}", f"task.dataset={data}",
                 "task.train_size=48", "task.validation_size=16", "task.test_size=16", "task.max_length=16",
                 "training.batch_size=8", "training.max_steps=4", "training.eval_every=2",
                 "search.strategy=random", "execution.workers=1"]
    cfg = load_config(QUICKSTART, overrides)
    with (work / "driver.log").open("w") as log:
        reporter = Sampling(log)
        executor = SimulatedExecutor(workers=1) if backend == "simulated" else None
        t0 = time.monotonic()
        Tuner(cfg, n_trials=trials, reporter=reporter, backend=executor).run()
        wall = time.monotonic() - t0
    s = reporter.samples
    at5, last = s[min(4, len(s) - 1)], s[-1]
    return {"backend": backend, "trials": len(s), "wall_s": round(wall, 1), "after_5": at5, "after_last": last,
            "hwm_growth_pct": round(100 * (last["hwm_kib"] / at5["hwm_kib"] - 1), 2),
            "rss_growth_pct": round(100 * (last["rss_kib"] / at5["rss_kib"] - 1), 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", choices=("local", "simulated"), default="local")
    ap.add_argument("--trials", type=int, default=50)
    ap.add_argument("--model", default="builtin:minilm-l6")
    ap.add_argument("--data", type=Path, default=None, help="a text,label CSV (default: 80 made-up rows)")
    ap.add_argument("--json", action="store_true", help="also print the result as one JSON line")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="lmtune-driver-memory-") as tmp:
        r = measure(args.backend, args.trials, args.model, args.data, Path(tmp))
    a, b = r["after_5"], r["after_last"]
    print(f"driver memory, backend {r['backend']}, {r['trials']} trials in {r['wall_s']} s "
          f"({platform.node()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}, Python {sys.version.split()[0]})")
    print("\n| after trial | RSS (MiB) | peak RSS (MiB) | open fds | threads |\n|---|---|---|---|---|")
    for row in (a, b):
        print(f"| {row['finished']} | {row['rss_kib'] / 1024:.1f} | {row['hwm_kib'] / 1024:.1f} | {row['fds']} "
              f"| {row['threads']} |")
    print(f"\npeak RSS growth from trial 5 to {r['trials']}: {r['hwm_growth_pct']:+.2f}%; "
          f"RSS growth: {r['rss_growth_pct']:+.2f}%")
    if args.json:
        print(json.dumps(r))


if __name__ == "__main__":
    main()
