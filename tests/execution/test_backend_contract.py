"""One contract every backend (``Executor``) passes, whatever runs the trainers: local cold processes, local
processes forked from a warm parent, Ray actors (on the CI cluster), simulated trainers in threads. The call
order is the one ``execution/base.py`` documents: acquire → launch → events (answered with send) → wait →
release; close.

Local and Ray run the stand-in trainer (``execution/simtrainer.py``: the trainer protocol, no training), so
the contract is about the backend; the warm start exists only for the real trainer, which it runs on the
tiny model.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from conftest import tiny_overrides
from lmtune.config import load_config
from lmtune.execution import TRAINER, Executor, LocalExecutor
from lmtune.execution.simulated import SimulatedExecutor
from lmtune.protocol import Continue, Stop, TrialSpec
from lmtune.tuner.plan import make_plan, trial_spec

SIM = "lmtune.execution.simtrainer"
ROOT = Path(__file__).parents[2]
QUICKSTART = str(ROOT / "examples" / "quickstart.yaml")

SpecFor = Callable[[int, Path], TrialSpec]


def _sim_spec(number: int, trial_dir: Path) -> TrialSpec:
    return TrialSpec(trial=number, model="-", task_type="classification", data_cache="-", examples_per_unit=8,
                     total_examples=32, hparams={"learning_rate": 1e-3, "weight_decay": 0.0},
                     output_dir=str(trial_dir))


@pytest.fixture(params=["local", "local-warm", "ray", "simulated"])
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory,
            ) -> Iterator[tuple[Executor, SpecFor]]:
    monkeypatch.setenv("LMTUNE_SIM_UNIT_S", "0.2")  # long enough to kill a trial mid-run
    ex: Executor
    spec_for: SpecFor = _sim_spec
    if request.param == "local":
        ex = LocalExecutor(workers=2, device="cpu", threads=1, module=SIM)
    elif request.param == "local-warm":
        ex = LocalExecutor(workers=2, device="cpu", threads=1, module=TRAINER, warm_start=True)
        tiny_model, tiny_csv = request.getfixturevalue("tiny_model"), request.getfixturevalue("tiny_csv")
        d = tmp_path_factory.mktemp("warm") / "run"
        cfg = load_config(QUICKSTART, [*tiny_overrides(tiny_model, tiny_csv, d), "training.max_steps=12"])
        plan = make_plan(cfg)

        def spec_for(number: int, trial_dir: Path) -> TrialSpec:
            return replace(trial_spec(plan, number=number, hparams=plan.defaults, device="cpu", threads=1),
                           output_dir=str(trial_dir))
    elif request.param == "simulated":
        ex = SimulatedExecutor(workers=2, unit_s=0.2)
    else:
        from lmtune.execution.ray_backend import RayExecutor

        ex = RayExecutor(workers=2, device="cpu", address=request.getfixturevalue("ray_address"),
                         cpus_per_trial=1, gpus_per_trial=0, max_retries=0, threads=1, module=SIM)
    yield ex, spec_for
    ex.close()


def _run(ex: Executor, spec: TrialSpec, trial_dir: Path, answer: Callable[[dict[str, Any]], Any],
         ) -> tuple[list[dict[str, Any]], int, Path]:
    slot = ex.acquire()
    try:
        proc = ex.launch(spec, trial_dir, slot)
        events = []
        for ev in proc.events():
            events.append(ev)
            if ev["event"] == "eval":
                decision = answer(ev)
                if decision == "kill":
                    proc.kill()
                elif decision is not None:
                    proc.send(decision)
        return events, proc.wait(), proc.log_path
    finally:
        ex.release(slot)


def test_slots_are_distinct_and_come_back(backend: tuple[Executor, SpecFor]) -> None:
    ex, _ = backend
    slots = [ex.acquire() for _ in range(ex.workers)]
    assert len(set(slots)) == ex.workers == 2
    assert all(ex.device_for(s) == "cpu" for s in slots) and ex.threads >= 1
    for s in slots:
        ex.release(s)
    again = [ex.acquire() for _ in range(ex.workers)]
    assert sorted(again) == sorted(slots)
    for s in again:
        ex.release(s)


def test_a_trial_runs_to_its_end(backend: tuple[Executor, SpecFor], tmp_path: Path) -> None:
    ex, spec_for = backend
    events, code, log = _run(ex, spec_for(0, tmp_path / "t0"), tmp_path / "t0", lambda ev: Continue())
    kinds = [e["event"] for e in events]
    assert code == 0 and kinds[0] == "start" and kinds[-1] == "end" and "eval" in kinds
    units = [e["units"] for e in events if e["event"] == "eval"]
    assert units == sorted(set(units)) and events[-1]["stopped_by"] is None
    assert events[-1]["train_tokens"] > 0 and log.is_file()


def test_stop_ends_the_trial_at_that_evaluation(backend: tuple[Executor, SpecFor], tmp_path: Path) -> None:
    ex, spec_for = backend
    events, code, _ = _run(ex, spec_for(1, tmp_path / "t1"), tmp_path / "t1", lambda ev: Stop())
    assert code == 0 and [e["event"] for e in events if e["event"] != "progress"] == ["start", "eval", "end"]
    evals = [e for e in events if e["event"] == "eval"]
    assert events[-1]["stopped_by"] == "pruned" and events[-1]["units"] == evals[0]["units"]


def test_kill_ends_the_event_stream_without_an_end(backend: tuple[Executor, SpecFor], tmp_path: Path) -> None:
    ex, spec_for = backend
    events, code, _ = _run(ex, spec_for(2, tmp_path / "t2"), tmp_path / "t2", lambda ev: "kill")
    assert code != 0 and not any(e["event"] == "end" for e in events)


def test_a_crashing_trainer_exits_nonzero_with_its_log(backend: tuple[Executor, SpecFor], tmp_path: Path) -> None:
    ex, spec_for = backend
    broken = replace(spec_for(3, tmp_path / "t3"), hparams={"learning_rate": "not a number"},
                     model=str(tmp_path / "no-such-model"))
    events, code, log = _run(ex, broken, tmp_path / "t3", lambda ev: Continue())
    assert code != 0 and not any(e["event"] == "end" for e in events)
    assert log.is_file() and log.read_text().strip()  # the trainer's own account of why


def test_checkpoints_are_listed_sized_and_deleted_by_the_backend(backend: tuple[Executor, SpecFor],
                                                                 tmp_path: Path) -> None:
    ex, spec_for = backend
    d = tmp_path / "t0"
    d.mkdir()
    spec = replace(spec_for(0, d), checkpoint_every=2)
    events, code, _ = _run(ex, spec, d, lambda ev: Continue())
    assert code == 0
    reported = [Path(ev["checkpoint"]) for ev in events if ev["event"] == "eval" and ev.get("checkpoint")]
    assert reported and ex.list_checkpoints(d) == sorted(reported)
    assert all(ex.checkpoint_bytes(p) > 0 for p in reported)
    ex.delete_checkpoint(reported[0])
    ex.delete_checkpoint(reported[0])  # already gone: no error
    assert ex.list_checkpoints(d) == sorted(reported[1:]) and ex.checkpoint_bytes(reported[0]) == 0
