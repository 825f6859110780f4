"""Trial throughput of the Ray executor with 1, 2, 4, ... N concurrent simulated trials.

Each level runs the real `Tuner` (Optuna ask/tell on SQLite, one watcher thread per trial, the same
event relay as real trainers) with ``execution.backend: ray`` on a local Ray instance, but every trial's
trainer is `lmtune.execution.simtrainer`: it sleeps ``--unit-s`` per evaluation unit and reports a toy
metric, so the ideal is known: ``c`` concurrent trials of ``units × unit_s`` seconds each finish
``c / (units × unit_s)`` trials per second. Each level runs ``--waves × c`` trials.

Reported per level: measured throughput (trials finished / time from the first trial's start to the last
trial's end) against the ideal; per-trial overhead (trial wall time minus simulated work: actor and
process start, relaying); and the driver's own time per trial in ask + launch, per-evaluation report +
pruning decision, and tell (including waits for the study lock, which is where concurrency shows).

    .venv/bin/python benchmarks/ray_scaling.py --max-concurrency 64 --out /tmp/scale.md
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import lmtune.tuner.search as search
from lmtune.config import load_config
from lmtune.execution import make_executor
from lmtune.tuner import Tuner

ROOT = Path(__file__).parents[1]
SIM = "lmtune.execution.simtrainer"


class Quiet:
    def study_started(self, *a: Any) -> None: ...
    def trial_started(self, *a: Any) -> None: ...
    def trial_progress(self, *a: Any) -> None: ...
    def trial_finished(self, *a: Any) -> None: ...
    def close(self) -> None: ...


class TreeCPU:
    """CPU seconds used by this process and all its descendants (Ray's GCS, raylet, slot actors and,
    through the actors' reaped children, the trainers), sampled twice a second."""

    def __init__(self) -> None:
        import psutil

        self._root = psutil.Process()
        self._seen: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.start = self._sample()
        self._thread.start()

    def _sample(self) -> float:
        import psutil

        for proc in [self._root, *self._root.children(recursive=True)]:
            try:
                t = proc.cpu_times()
                self._seen[proc.pid] = max(self._seen.get(proc.pid, 0.0),
                                           t.user + t.system + t.children_user + t.children_system)
            except psutil.Error:
                continue
        return sum(self._seen.values())

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            self._sample()

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self._sample() - self.start


class TimedTuner(Tuner):
    """The Tuner, with the time spent in its driver-side steps added up."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.spent = {"launch": 0.0, "report": 0.0, "record": 0.0}
        self.evals = 0
        self._t = threading.Lock()

    def _timed(self, key: str, fn: Any, *args: Any) -> Any:
        t = time.perf_counter()
        try:
            return fn(*args)
        finally:
            with self._t:
                self.spent[key] += time.perf_counter() - t
                self.evals += key == "report"

    def _launch(self, *args: Any) -> None:
        self._timed("launch", super()._launch, *args)

    def _report(self, *args: Any) -> bool:
        return bool(self._timed("report", super()._report, *args))

    def _record(self, *args: Any) -> Any:
        return self._timed("record", super()._record, *args)


def run_level(c: int, *, units: int, unit_s: float, waves: int, root: Path) -> dict[str, Any]:
    n = waves * c
    cfg = load_config(ROOT / "examples" / "quickstart.yaml", [
        f"study.dir={root / f'c{c}'}", "task.train_size=64", "task.validation_size=16", "task.test_size=16",
        "task.max_length=16", "training.batch_size=8", "training.eval_every=1", f"training.max_steps={units}",
        "search.strategy=random", "search.include_default=false", f"search.n_trials={n}",
        "execution.backend=ray", f"execution.workers={c}", "execution.threads_per_worker=1",
        "execution.cpus_per_trial=1"])
    tuner = TimedTuner(cfg, reporter=Quiet())  # type: ignore[arg-type]
    cpu = TreeCPU()
    summary = tuner.run()
    cpu_s = cpu.stop()
    trials = [t for t in summary.study.trials if t.state.name == "COMPLETE"]
    assert len(trials) == n, f"{len(trials)}/{n} trials completed: {summary.stop_reason}"
    start = min(t.datetime_start for t in trials if t.datetime_start)
    end = max(t.datetime_complete for t in trials if t.datetime_complete)
    span = (end - start).total_seconds()
    ideal = c / (units * unit_s)
    # after the first wave (slot actors up): completions from the last first-wave completion to the end
    t1 = max(t.datetime_complete for t in trials if t.number < c and t.datetime_complete)
    later = sum(1 for t in trials if t.datetime_complete and t.datetime_complete > t1)
    steady = later / max(1e-9, (end - t1).total_seconds())
    return {"c": c, "trials": n, "span_s": span, "throughput": n / span, "ideal": ideal,
            "ratio": n / span / ideal, "steady": steady, "steady_ratio": steady / ideal,
            "overhead_s": statistics.mean(t.user_attrs["overhead_s"] for t in trials),
            # the first wave also starts the slot actors (one Ray worker process each); later waves reuse them
            "overhead_first_s": _mean(t.user_attrs["overhead_s"] for t in trials if t.number < c),
            "overhead_later_s": _mean(t.user_attrs["overhead_s"] for t in trials if t.number >= c),
            "launch_ms": 1000 * tuner.spent["launch"] / n,
            "report_ms": 1000 * tuner.spent["report"] / max(1, tuner.evals),
            "record_ms": 1000 * tuner.spent["record"] / n,
            "driver_ms": 1000 * sum(tuner.spent.values()) / n,
            "cpu_per_trial_s": cpu_s / n, "cores_used": cpu_s / summary.wall_time_s}


def _mean(values: Any) -> float:
    values = list(values)
    return statistics.mean(values) if values else float("nan")


def machine() -> str:
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        model = next(line.split(":", 1)[1].strip() for line in lscpu.splitlines() if line.startswith("Model name"))
    except (OSError, StopIteration):
        model = platform.processor()
    import ray

    load = os.getloadavg()
    return (f"{model}, {os.cpu_count()} cores, Python {platform.python_version()}, Ray {ray.__version__}; "
            f"{time.strftime('%Y-%m-%d %H:%M')}; load average at start {load[0]:.1f}")


def table(rows: list[dict[str, Any]], *, units: int, unit_s: float) -> str:
    head = (f"Simulated trials of {units} units × {unit_s:g} s = {units * unit_s:g} s each; the driver reports every "
            "unit to Optuna (SQLite) and answers each evaluation.\n\n"
            "| concurrent | trials | span s | trials/s | ideal | ratio | after 1st wave: trials/s (ratio) "
            "| overhead s/trial (1st wave / later) "
            "| driver ms/trial | ask+launch ms | report+decide ms/eval | tell ms | CPU s/trial | cores busy |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
    return head + "".join(
        f"| {r['c']} | {r['trials']} | {r['span_s']:.1f} | {r['throughput']:.3f} | {r['ideal']:.3f} | "
        f"{r['ratio']:.2f} | {r['steady']:.3f} ({r['steady_ratio']:.2f}) | "
        f"{r['overhead_s']:.2f} ({r['overhead_first_s']:.2f} / {r['overhead_later_s']:.2f}) | "
        f"{r['driver_ms']:.0f} | {r['launch_ms']:.0f} | "
        f"{r['report_ms']:.1f} | {r['record_ms']:.0f} | {r['cpu_per_trial_s']:.2f} | {r['cores_used']:.2f} |\n"
        for r in rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--max-concurrency", type=int, default=64)
    ap.add_argument("--levels", help="comma-separated concurrencies (default: 1, 2, 4, ... max)")
    ap.add_argument("--units", type=int, default=5)
    ap.add_argument("--unit-s", type=float, default=2.0)
    ap.add_argument("--waves", type=int, default=3)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    os.environ["LMTUNE_SIM_UNIT_S"] = str(args.unit_s)  # forwarded to the trainers by the Ray executor
    search.make_executor = functools.partial(make_executor, module=SIM)  # type: ignore[assignment]
    import ray

    # Sleeping trainers need almost no CPU: declare enough logical CPUs for one per concurrent trial.
    ray.init(num_cpus=args.max_concurrency, include_dashboard=False, log_to_driver=False,
             object_store_memory=100_000_000)
    levels = ([int(c) for c in args.levels.split(",")] if args.levels
              else [c for c in (1, 2, 4, 8, 16, 32, 64, 128, 256) if c <= args.max_concurrency])
    info = machine()
    rows = []
    with tempfile.TemporaryDirectory(prefix="lmtune-scale-") as tmp:
        for c in levels:
            rows.append(run_level(c, units=args.units, unit_s=args.unit_s, waves=args.waves, root=Path(tmp)))
            print(table(rows[-1:], units=args.units, unit_s=args.unit_s).splitlines()[-1], flush=True)
    ray.shutdown()
    text = f"Machine: {info}\n\n{table(rows, units=args.units, unit_s=args.unit_s)}"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
