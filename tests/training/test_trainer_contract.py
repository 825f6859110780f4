"""The trainer protocol, one suite for every trainer lmtune drives: the real worker (``training/worker.py``,
on the tiny model) and the stand-in (``execution/simtrainer.py``), checked with the contract users import for
their own trainers (`lmtune.testing.check_trainer`): a trainer reads a frozen TrialSpec, streams ``start``,
one ``eval`` per evaluation unit and ``end``, and obeys the driver's answer to each evaluation
(``Continue``, ``Stop``, and PBT's ``Pause`` at a checkpoint, resumed later from it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from conftest import tiny_overrides
from lmtune.config import load_config
from lmtune.execution import TRAINER
from lmtune.protocol import Continue, Eval, Progress, TrialSpec
from lmtune.testing import TRAINER_CHECKS, check_trainer, sim_spec
from lmtune.testing.trainers import run_trainer
from lmtune.tuner import make_plan, trial_spec

ROOT = Path(__file__).parents[2]
QUICKSTART = str(ROOT / "examples" / "quickstart.yaml")
SIM = "lmtune.execution.simtrainer"


@pytest.fixture(params=["real", "sim"])
def trainer(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch,
            tmp_path_factory: pytest.TempPathFactory) -> tuple[str, TrialSpec]:
    """(module, a spec of 4 evaluation units) for each trainer."""
    if request.param == "sim":
        monkeypatch.setenv("LMTUNE_SIM_UNIT_S", "0.01")
        return SIM, sim_spec(0, Path("."))
    d = tmp_path_factory.mktemp("contract") / "run"
    cfg = load_config(QUICKSTART, [*tiny_overrides(request.getfixturevalue("tiny_model"),
                                                   request.getfixturevalue("tiny_csv"), d),
                                   "training.max_steps=12", "training.eval_every=3"])
    plan = make_plan(cfg)
    return TRAINER, trial_spec(plan, number=0, hparams=plan.defaults, device="cpu", threads=1)


@pytest.mark.parametrize("check", TRAINER_CHECKS, ids=lambda c: c.__name__)
def test_every_trainer_keeps_the_contract(trainer: tuple[str, TrialSpec], tmp_path: Path,
                                          check: Callable[[str, TrialSpec, Path], None]) -> None:
    module, spec = trainer
    check(module, spec, tmp_path)


def test_lmtune_trainer_shows_progress_after_its_first_step(trainer: tuple[str, TrialSpec], tmp_path: Path) -> None:
    """lmtune's trainer (not the contract: the display's bars) says how far it got right after its first step."""
    module, spec = trainer
    if module != TRAINER:
        pytest.skip("the stand-in sends no progress events")
    events, code, _ = run_trainer(module, spec, tmp_path / "t", lambda ev: Continue())
    first = events[1]
    assert code == 0 and isinstance(first, Progress) and 0 < first.examples <= first.total_examples


def test_the_contract_names_what_a_broken_trainer_does(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A trainer that ignores Stop fails the contract with a message that says so."""
    monkeypatch.setenv("LMTUNE_SIM_UNIT_S", "0.01")
    (tmp_path / "deaf_trainer.py").write_text(  # reads every answer, obeys none
        "import json, sys\nfrom lmtune.execution.simtrainer import simulate\nfrom lmtune.protocol import encode_event\n"
        "spec = json.load(open(sys.argv[1]))\n"
        "emit = lambda e: (sys.stdout.write(encode_event(e) + '\\n'), sys.stdout.flush())\n"
        "sys.exit(simulate(spec, emit, lambda: sys.stdin.readline() and None, unit_s=0.01))\n")
    monkeypatch.setenv("PYTHONPATH", f"{tmp_path}:{ROOT / 'src'}")
    with pytest.raises(AssertionError, match="exit 0, events"):
        check_trainer("deaf_trainer", sim_spec(0, tmp_path), folder=tmp_path / "checks")


def test_lmtune_trainer_evaluates_only_the_units_its_scheduler_needs(trainer: tuple[str, TrialSpec],
                                                                     tmp_path: Path) -> None:
    """``eval_units`` (a halving's rungs): lmtune's trainer skips the evaluations between them and always
    evaluates the end; under early stopping, whose patience counts evaluations, it evaluates every unit. A
    trainer that evaluates every unit anyway (the stand-in) keeps the protocol too."""
    module, spec = trainer
    if module != TRAINER:
        pytest.skip("the stand-in evaluates every unit, which the protocol allows")

    def units(s: TrialSpec, name: str) -> list[int]:
        events, code, log = run_trainer(module, s, tmp_path / name, lambda ev: Continue())
        assert code == 0, log
        return [e.units for e in events if isinstance(e, Eval)]

    assert units(replace(spec, eval_units=[2]), "rung") == [2, 4]
    assert units(replace(spec, eval_units=[1, 3]), "rungs") == [1, 3, 4]
    assert units(spec, "every") == [1, 2, 3, 4]
    patient = replace(spec, eval_units=[2], hparams={**spec.hparams, "early_stopping_patience": 3})
    assert units(patient, "patience") == [1, 2, 3, 4]
