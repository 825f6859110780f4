"""The driver's memory, file descriptors and threads stay flat over a long study (#13 item 7).

Runs `benchmarks/driver_memory.py` on the simulated backend (the loop, sampler, records and reporter of a
real driver; trainers are stand-ins in threads), 50 trials in about ten seconds. The same benchmark on the
local backend with real trainers is run on demand; its numbers are in docs/reliability.md."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]


@pytest.mark.slow
def test_driver_peak_memory_over_50_trials_stays_within_3_percent_of_trial_5(tiny_model: Path) -> None:
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "driver_memory.py"), "--backend", "simulated",
                          "--trials", "50", "--model", str(tiny_model), "--json"],
                         capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["trials"] == 50
    assert r["hwm_growth_pct"] <= 3.0, r
    five, last = r["after_5"], r["after_last"]
    assert last["fds"] <= five["fds"] and last["threads"] <= five["threads"], r  # no pipe, log or thread leak
