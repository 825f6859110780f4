"""`lmtune worker` processes sharing one study on a real PostgreSQL server (started by .ci/run)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from conftest import tiny_overrides
from lmtune.study.store import storage_for

pytestmark = pytest.mark.services

ROOT = Path(__file__).parents[2]
QUICKSTART = str(ROOT / "examples" / "quickstart.yaml")
GRID = ["search.strategy=grid", "search.space={}",
        "search.space.learning_rate={type: float, low: 1e-5, high: 1e-2, grid: [1e-4, 1e-3]}",
        "search.space.batch_size={type: categorical, choices: [8, 16]}"]


def worker(model: Path, data: Path, study_dir: Path, url: str, name: str, *extra: str) -> list[str]:
    sets = [*tiny_overrides(model, data, study_dir), f"study.storage={url}", f"study.name={name}",
            "execution.heartbeat_interval=1", "execution.threads_per_worker=1", *extra]
    return [sys.executable, "-m", "lmtune", "worker", QUICKSTART, *[a for s in sets for a in ("--set", s)]]


def trials_of(url: str, name: str) -> list[optuna.trial.FrozenTrial]:
    """The study's trials, read on connections closed before returning: tests that poll would otherwise
    leave pooled connections open and inflate the connection count other tests measure."""
    storage = storage_for(url)
    try:
        return optuna.load_study(study_name=name, storage=storage).trials
    finally:
        storage.engine.dispose()  # type: ignore[attr-defined]


def point(t: optuna.trial.FrozenTrial) -> tuple[tuple[str, object], ...]:
    return tuple(sorted(t.params.items()))


class ConnectionPeak:
    """Most connections the server had open to the test database while the workers ran."""

    def __init__(self, url: str) -> None:
        import sqlalchemy

        self.peak = 0
        self._engine = sqlalchemy.create_engine(url.replace("postgresql://", "postgresql+psycopg2://"),
                                                poolclass=sqlalchemy.pool.NullPool)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import sqlalchemy

        query = sqlalchemy.text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                "AND pid <> pg_backend_pid()")
        with self._engine.connect() as conn:
            while not self._stop.wait(0.2):
                self.peak = max(self.peak, int(conn.execute(query).scalar_one()))
                conn.commit()

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        self._engine.dispose()
        return self.peak


@pytest.mark.slow
def test_four_workers_run_every_grid_point_once(postgres_url: str, study_name: str, tiny_model: Path,
                                                tiny_csv: Path, tmp_path: Path) -> None:
    cmd = worker(tiny_model, tiny_csv, tmp_path / "run", postgres_url, study_name, *GRID)
    peak = ConnectionPeak(postgres_url)
    procs = [subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for _ in range(4)]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    connections = peak.stop()
    assert all(p.returncode == 0 for p in procs), "\n".join(o[-2000:] for o in outs)
    trials = trials_of(postgres_url, study_name)
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    assert sorted(point(t) for t in done) == sorted(set(point(t) for t in done)), "a grid point ran twice"
    assert len(done) == 4, [(t.number, t.state.name, t.params) for t in trials]
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    assert all(t.user_attrs["fail_reason"].startswith(("duplicate", "not run")) for t in trials
               if t.state == TrialState.FAIL)
    ran = sum(int(o.split("this worker ran ")[1].split()[0]) for o in outs)
    assert ran == 4  # every trial was run by exactly one worker
    assert sum(t.user_attrs.get("is_default", False) for t in done) == 1
    assert connections <= 4 * 4, f"{connections} connections for 4 workers (pool: 2 + overflow 2 each)"


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["random", "bayes"])
def test_four_workers_never_draw_one_configuration_twice(strategy: str, postgres_url: str, study_name: str,
                                                         tiny_model: Path, tiny_csv: Path, tmp_path: Path) -> None:
    """Seeded alike, four samplers would draw one sequence: every worker's seed takes its own entropy, so
    the 8 sampled configurations (random draws, or TPE's start-up and modelled draws) are all distinct."""
    space = "search.space={learning_rate: {type: float, low: 1.0e-5, high: 1.0e-2, log: true}}"
    cmd = [*worker(tiny_model, tiny_csv, tmp_path / "run", postgres_url, study_name, f"search.strategy={strategy}",
                   "search.include_default=false", "training.max_steps=3", space), "--n-trials", "8"]
    procs = [subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for _ in range(4)]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), "\n".join(o[-2000:] for o in outs)
    trials = trials_of(postgres_url, study_name)
    lrs = [t.params["learning_rate"] for t in trials if t.state == TrialState.COMPLETE]
    assert len(lrs) >= 8 and len(set(lrs)) == len(lrs), sorted(lrs)
    assert sum(int(o.split("this worker ran ")[1].split()[0]) > 0 for o in outs) >= 2  # they shared the work


@pytest.mark.slow
def test_sigkilled_worker_trial_is_taken_up(postgres_url: str, study_name: str, tiny_model: Path,
                                            tiny_csv: Path, tmp_path: Path) -> None:
    grid = [*GRID[:3], "search.space.batch_size={type: categorical, choices: [16]}"]
    cmd = worker(tiny_model, tiny_csv, tmp_path / "run", postgres_url, study_name, *grid,
                 "execution.grace_period=3")
    victim = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    try:
        while not _running(postgres_url, study_name):
            assert time.time() < deadline and victim.poll() is None, "the first worker never started a trial"
            time.sleep(0.3)
    finally:
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait()
    killed = _running(postgres_url, study_name)
    assert len(killed) == 1
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    trials = {t.number: t for t in trials_of(postgres_url, study_name)}
    lost = trials[killed[0]]
    assert lost.state == TrialState.FAIL and lost.user_attrs["fail_reason"].startswith("lost: no heartbeat")
    done = [t for t in trials.values() if t.state == TrialState.COMPLETE]
    assert len(done) == 2 and len({point(t) for t in done}) == 2
    retry = [t for t in done if t.user_attrs.get("retry_of") == lost.number]
    assert len(retry) == 1 and point(retry[0]) == tuple(sorted(lost.system_attrs["fixed_params"].items()))


def _running(url: str, name: str) -> list[int]:
    try:
        return [t.number for t in trials_of(url, name) if t.state == TrialState.RUNNING]
    except KeyError:  # the study is not created yet
        return []


def test_pbt_is_refused_for_workers_with_the_alternative(postgres_url: str, tmp_path: Path) -> None:
    """PBT's population state lives with one driver; across machines it runs through the Ray executor
    (tests/services/test_ray_cluster.py::test_pbt_population_spread_over_nodes)."""
    cmd = [sys.executable, "-m", "lmtune", "worker", QUICKSTART, "--set", f"study.storage={postgres_url}",
           "--set", "search.strategy=pbt", "--set", f"study.dir={tmp_path}"]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "execution.backend: ray" in out.stderr, out.stderr
