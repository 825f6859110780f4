"""How many CPU threads each trainer gets, chosen so a busy machine slows trials gracefully.

A trainer whose OpenMP threads share cores with other processes spins while it waits for the slowest
thread: on this project's 2-core CPU a trainer sharing its cores with other processes ran ~15x slower
per token than alone (measured from outside the project, issue 11). So the default is the cores this
process may use (its CPU affinity, not the machine's count) divided among the workers, *less the cores
other processes are busy on right now*; when that cuts the count, the trainers also wait passively
(``OMP_WAIT_POLICY=PASSIVE``) and the driver says so. An explicit ``execution.threads_per_worker`` is
always taken as given.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass

log = logging.getLogger("lmtune")


@dataclass(frozen=True)
class ThreadPlan:
    threads: int
    passive: bool = False         # set OMP_WAIT_POLICY=PASSIVE in the trainers
    warning: str | None = None


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def busy_elsewhere(interval: float = 0.3) -> float:
    """Cores other processes kept busy over ``interval`` seconds (from /proc/stat, less this process's
    own CPU time); 0.0 where /proc is unavailable."""
    def sample() -> tuple[float, float]:
        with open("/proc/stat") as fh:
            fields = [float(x) for x in fh.readline().split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)
        return sum(fields) - idle, os.times().user + os.times().system
    try:
        hz = os.sysconf("SC_CLK_TCK")
        (busy0, own0), t0 = sample(), time.monotonic()
        time.sleep(interval)
        (busy1, own1), t1 = sample(), time.monotonic()
    except (OSError, ValueError, IndexError):
        return 0.0
    return max(0.0, ((busy1 - busy0) / hz - (own1 - own0)) / max(t1 - t0, 1e-6))


def plan_threads(workers: int, requested: int | None, *, cores: int | None = None,
                 busy: float | None = None) -> ThreadPlan:
    """Threads per trainer for ``workers`` trainers at once; see the module docstring."""
    if requested:
        return ThreadPlan(requested)
    cores = cores or usable_cores()
    fair = max(1, cores // max(workers, 1))
    busy = busy_elsewhere() if busy is None else busy
    free = cores - busy
    if free >= workers * fair - 0.5:  # quiet enough: every trainer gets its fair share
        return ThreadPlan(fair)
    threads = max(1, min(fair, int(free // max(workers, 1))))
    warning = (f"other processes keep {busy:.1f} of {cores} cores busy; each of {workers} trainer(s) gets "
               f"{threads} thread(s) (not {fair}) with passive OpenMP waits, since trainers sharing cores "
               "run many times slower per token; trials will be slower than on a quiet machine "
               "(set execution.threads_per_worker to choose the count yourself)")
    return ThreadPlan(threads, passive=True, warning=warning)
