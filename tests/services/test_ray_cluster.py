"""The Ray executor on a real two-node Ray cluster (started by .ci/run): a study whose trials land on
both nodes, and a trainer whose actor is killed mid-trial (retried, from scratch or from a checkpoint,
then failed with the reason once max_retries is spent)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import optuna
import pytest

from conftest import tiny_overrides
from lmtune.config import StudyConfig, load_config
from lmtune.execution.ray_backend import RayExecutor, RayTrialProcess
from lmtune.protocol import Continue
from lmtune.tuner.plan import Plan, make_plan, trial_spec

pytestmark = [pytest.mark.services, pytest.mark.slow]  # end-to-end on the cluster: the slow tier

ROOT = Path(__file__).parents[2]
QUICKSTART = str(ROOT / "examples" / "quickstart.yaml")


def test_study_runs_on_both_nodes(ray_address: str, tiny_model: Path, tiny_csv: Path, tmp_path: Path) -> None:
    d = tmp_path / "run"
    sets = [*tiny_overrides(tiny_model, tiny_csv, d), "execution.backend=ray", f"execution.address={ray_address}",
            "execution.workers=2", "execution.threads_per_worker=1"]
    out = subprocess.run([sys.executable, "-m", "lmtune", "tune", QUICKSTART, *[a for s in sets for a in ("--set", s)],
                          "--n-trials", "2"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    trials = optuna.load_study(study_name=None, storage=f"sqlite:///{d / 'study.db'}").trials
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]
    nodes = {re.search(r"Ray node (\w+)", (d / "trials" / f"{t.number:04d}" / "trainer.log").read_text())[1]
             for t in trials}
    assert len(nodes) == 2, "both trials ran on one node (each node has 1 CPU, each trial needs 1)"


def test_final_runs_on_the_studys_ray_backend(ray_address: str, tiny_model: Path, tiny_csv: Path,
                                              tmp_path: Path) -> None:
    d = tmp_path / "final"
    sets = [*tiny_overrides(tiny_model, tiny_csv, d), "execution.backend=ray", f"execution.address={ray_address}",
            "execution.workers=2", "execution.threads_per_worker=1"]
    tune = subprocess.run([sys.executable, "-m", "lmtune", "tune", QUICKSTART, *[a for s in sets for a in ("--set", s)],
                           "--n-trials", "2"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert tune.returncode == 0, tune.stdout[-2000:] + tune.stderr[-3000:]
    out = subprocess.run([sys.executable, "-m", "lmtune", "final", str(d), "--seeds", "1"], cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    logs = list((d / "final" / "runs").glob("*/trainer.log"))
    assert len(logs) == 2 and all(re.search(r"Ray node (\w+)", p.read_text()) for p in logs)


def test_pbt_population_spread_over_nodes(ray_address: str, tiny_model: Path, tiny_csv: Path,
                                         tmp_path: Path) -> None:
    """3 members on 2 slots (one per node): members pause at ready points and resume from their
    checkpoints wherever a slot is free, so checkpoints cross nodes (study.dir is the shared FS)."""
    d = tmp_path / "pbt"
    sets = [*tiny_overrides(tiny_model, tiny_csv, d), "search.strategy=pbt", "training.max_steps=9",
            "execution.backend=ray", f"execution.address={ray_address}", "execution.workers=2",
            "execution.threads_per_worker=1"]
    out = subprocess.run([sys.executable, "-m", "lmtune", "tune", QUICKSTART, *[a for s in sets for a in ("--set", s)],
                          "--n-trials", "3"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    trials = optuna.load_study(study_name=None, storage=f"sqlite:///{d / 'study.db'}").trials
    assert [t.state.name for t in trials] == ["COMPLETE"] * 3
    assert all(t.user_attrs["pbt"]["units"] == 3 for t in trials)
    logs = "".join(p.read_text() for p in d.glob("trials/*/trainer.log"))
    assert len(set(re.findall(r"Ray node (\w+)", logs))) == 2


@pytest.fixture(scope="module")
def cfg(ray_address: str, tiny_model: Path, tiny_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> StudyConfig:
    d = tmp_path_factory.mktemp("ray") / "run"
    return load_config(QUICKSTART, [*tiny_overrides(tiny_model, tiny_csv, d), "training.max_steps=12"])


@pytest.fixture(scope="module")
def plan(cfg: StudyConfig) -> Plan:
    return make_plan(cfg)


@pytest.fixture(scope="module")
def executor(ray_address: str) -> Iterator[RayExecutor]:
    ex = RayExecutor(workers=1, device="cpu", address=ray_address, cpus_per_trial=1, gpus_per_trial=0,
                     max_retries=1, threads=1)
    yield ex
    ex.ray.shutdown()


def _run_killing_once(executor: RayExecutor, cfg: StudyConfig, plan: Plan, number: int, *, kills: int,
                      **spec_extra: Any) -> tuple[RayTrialProcess, list[dict[str, Any]], int]:
    """Run one trial; SIGKILL the actor (and with it the trainer) after its first evaluation, ``kills`` times.
    The spec is built from the plan's own config: a trial's length comes from its config (max_steps 12)."""
    spec = replace(trial_spec(plan, number=number, hparams=plan.defaults, device="cpu", threads=1),
                   **spec_extra)
    slot = executor.acquire()
    proc = executor.launch(spec, plan.paths.trial_dir(number), slot)
    events = []
    for ev in proc.events():
        events.append(ev)
        if ev["event"] == "eval":
            if kills:
                kills -= 1
                pid = executor.ray.get(executor.host(slot).where.remote())["pid"]
                os.kill(pid, signal.SIGKILL)
            proc.send(Continue())
    code = proc.wait()
    executor.release(slot)
    return proc, events, code


def test_lost_actor_is_retried_from_scratch(executor: RayExecutor, cfg: StudyConfig, plan: Plan) -> None:
    proc, events, code = _run_killing_once(executor, cfg, plan, 0, kills=1)
    units = [ev["units"] for ev in events if ev["event"] == "eval"]
    assert code == 0 and events[-1]["event"] == "end", events[-1]
    assert units == sorted(set(units)) and units[-1] == plan.max_units  # no evaluation relayed twice
    assert len(proc.retries) == 1 and "from scratch" in proc.retries[0]


def test_lost_actor_resumes_from_checkpoint(executor: RayExecutor, cfg: StudyConfig, plan: Plan) -> None:
    proc, events, code = _run_killing_once(executor, cfg, plan, 1, kills=1, checkpoint_every=1)
    assert code == 0 and events[-1]["event"] == "end"
    assert len(proc.retries) == 1 and "from checkpoint" in proc.retries[0]
    units = [ev["units"] for ev in events if ev["event"] == "eval"]
    assert units == list(range(1, plan.max_units + 1))


def test_lost_too_often_fails_with_reason(executor: RayExecutor, cfg: StudyConfig, plan: Plan) -> None:
    _, events, code = _run_killing_once(executor, cfg, plan, 2, kills=2)  # max_retries=1
    assert code != 0 and events[-1]["event"] == "error" and events[-1]["kind"] == "lost"
    assert "max_retries=1" in events[-1]["reason"]
