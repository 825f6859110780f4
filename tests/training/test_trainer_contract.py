"""The trainer protocol, one suite for every trainer lmtune drives: the real worker (``training/worker.py``,
on the tiny model) and the stand-in (``execution/simtrainer.py``). A trainer reads a frozen TrialSpec,
streams ``start``, one ``eval`` per evaluation unit and ``end``, and obeys the driver's answer to each
evaluation (``Continue``, ``Stop``, and PBT's ``Pause`` at a checkpoint, resumed later from it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from conftest import tiny_overrides
from lmtune.config import load_config
from lmtune.execution import TRAINER, LocalExecutor
from lmtune.protocol import Continue, Decision, Pause, Stop, TrialSpec
from lmtune.tuner.plan import make_plan, trial_spec

ROOT = Path(__file__).parents[2]
QUICKSTART = str(ROOT / "examples" / "quickstart.yaml")
SIM = "lmtune.execution.simtrainer"


@pytest.fixture(params=["real", "sim"])
def trainer(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch,
            tmp_path_factory: pytest.TempPathFactory) -> tuple[str, TrialSpec]:
    """(module, a spec of 4 evaluation units) for each trainer."""
    if request.param == "sim":
        monkeypatch.setenv("LMTUNE_SIM_UNIT_S", "0.01")
        return SIM, TrialSpec(trial=0, model="-", task_type="classification", data_cache="-", examples_per_unit=8,
                              total_examples=32, hparams={"learning_rate": 1e-3, "weight_decay": 0.0})
    d = tmp_path_factory.mktemp("contract") / "run"
    cfg = load_config(QUICKSTART, [*tiny_overrides(request.getfixturevalue("tiny_model"),
                                                   request.getfixturevalue("tiny_csv"), d),
                                   "training.max_steps=12", "training.eval_every=3"])
    plan = make_plan(cfg)
    return TRAINER, trial_spec(plan, number=0, hparams=plan.defaults, device="cpu", threads=1)


def _run(module: str, spec: TrialSpec, trial_dir: Path,
         answer: Callable[[dict[str, Any]], Decision]) -> tuple[list[dict[str, Any]], int]:
    ex = LocalExecutor(workers=1, device="cpu", threads=1, module=module)
    proc = ex.launch(replace(spec, output_dir=str(trial_dir)), trial_dir, ex.acquire())
    events = []
    for ev in proc.events():
        events.append(ev)
        if ev["event"] == "eval" and spec.interactive:
            proc.send(answer(ev))
    return events, proc.wait()


def test_a_trainer_streams_start_evals_and_end(trainer: tuple[str, TrialSpec], tmp_path: Path) -> None:
    module, spec = trainer
    events, code = _run(module, spec, tmp_path / "t", lambda ev: Continue())
    assert code == 0 and events[0]["event"] == "start" and events[-1]["event"] == "end"
    assert {"precision", "device"} <= set(events[0])
    if module == TRAINER:  # lmtune's trainer: a progress event right after its first step (the display's bars)
        assert events[1]["event"] == "progress" and 0 < events[1]["examples"] <= events[1]["total_examples"]
    evals = [e for e in events if e["event"] == "eval"]
    assert [e["units"] for e in evals] == [1, 2, 3, 4]  # one per evaluation unit, to the spec's length
    for e in evals:
        assert {"step", "units", "examples", "tokens", "metrics"} <= set(e) and spec.metric in e["metrics"]
        assert e["examples"] == e["units"] * spec.examples_per_unit
    tokens = [e["tokens"] for e in evals]
    assert tokens == sorted(tokens) and tokens[0] > 0
    end = events[-1]
    assert end["stopped_by"] is None and end["units"] == 4 and spec.metric in end["metrics"]
    assert end["train_tokens"] == tokens[-1] and end["train_time_s"] >= 0


def test_a_trainer_stops_where_it_is_told(trainer: tuple[str, TrialSpec], tmp_path: Path) -> None:
    module, spec = trainer
    events, code = _run(module, spec, tmp_path / "t", lambda ev: Stop() if ev["units"] == 2 else Continue())
    assert code == 0 and [e["event"] for e in events if e["event"] != "progress"] == ["start", "eval", "eval", "end"]
    assert events[-1]["stopped_by"] == "pruned" and events[-1]["units"] == 2


def test_a_non_interactive_trainer_needs_no_answers(trainer: tuple[str, TrialSpec], tmp_path: Path) -> None:
    module, spec = trainer
    events, code = _run(module, replace(spec, interactive=False), tmp_path / "t", lambda ev: Stop())
    assert code == 0 and events[-1]["event"] == "end" and events[-1]["units"] == 4


def test_a_trainer_pauses_at_a_checkpoint_and_resumes_from_it(trainer: tuple[str, TrialSpec], tmp_path: Path) -> None:
    module, spec = trainer
    spec = replace(spec, checkpoint_every=2)
    events, code = _run(module, spec, tmp_path / "t", lambda ev: Pause() if "checkpoint" in ev else Continue())
    evals = [e for e in events if e["event"] == "eval"]
    assert code == 0 and [e["units"] for e in evals] == [1, 2] and "checkpoint" not in evals[0]
    assert events[-1]["stopped_by"] == "paused" and Path(evals[1]["checkpoint"]).is_dir()
    events, code = _run(module, replace(spec, resume_from=evals[1]["checkpoint"]), tmp_path / "t",
                        lambda ev: Continue())
    assert code == 0 and events[0]["resumed_at_units"] == 2
    assert [e["units"] for e in events if e["event"] == "eval"] == [3, 4] and events[-1]["stopped_by"] is None
