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

import pytest

from conftest import tiny_overrides
from lmtune.config import load_config
from lmtune.execution import TRAINER, Executor, LocalExecutor
from lmtune.execution.simulated import SimulatedExecutor
from lmtune.protocol import TrialSpec
from lmtune.testing import BACKEND_CHECKS, SIM_TRAINER, SpecFor, check_backend, sim_spec
from lmtune.tuner.plan import make_plan, trial_spec

SIM = SIM_TRAINER
ROOT = Path(__file__).parents[2]
QUICKSTART = str(ROOT / "examples" / "quickstart.yaml")


@pytest.fixture(params=["local", "local-warm", "ray", "simulated"])
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory,
            ) -> Iterator[tuple[Executor, SpecFor]]:
    monkeypatch.setenv("LMTUNE_SIM_UNIT_S", "0.2")  # long enough to kill a trial mid-run
    ex: Executor
    spec_for: SpecFor = sim_spec
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


@pytest.mark.parametrize("check", BACKEND_CHECKS, ids=lambda c: c.__name__)
def test_the_backend_keeps_the_contract(backend: tuple[Executor, SpecFor], check: Callable[..., None],
                                        tmp_path: Path) -> None:
    ex, spec_for = backend
    check(ex, spec_for, tmp_path)


def test_check_backend_runs_every_check_and_names_what_a_broken_backend_does(tmp_path: Path) -> None:
    check_backend(SimulatedExecutor(workers=2, unit_s=0.01), spec_for=sim_spec, folder=tmp_path / "ok")

    class OneSlot(SimulatedExecutor):
        def acquire(self) -> int:
            super().acquire()
            return 0  # every slot the same

    with pytest.raises(AssertionError, match="slots must be distinct"):
        check_backend(OneSlot(workers=2, unit_s=0.01), folder=tmp_path / "broken")
