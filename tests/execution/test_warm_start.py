"""Warm start: trainers forked from a parent that imported torch/transformers once, still one fresh
process per trial, the same trainer protocol as a cold start, and a cold start whenever it cannot serve."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest

from lmtune.config import TrainingSection
from lmtune.data.sources import DataSpec
from lmtune.data.tokenized import build_cache
from lmtune.execution import LocalExecutor, TrialProcess
from lmtune.execution.forkserver import ForkedTrial
from lmtune.protocol import Continue, Stop, TrialSpec


@pytest.fixture(scope="module")
def spec(tiny_model: Path, tiny_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> TrialSpec:
    from transformers import AutoTokenizer

    data = DataSpec(dataset=str(tiny_csv), dataset_config=None, text_column="text", text_pair_column=None,
                    label_column="label", sizes={"train": 64, "validation": 32, "test": 32}, seed=0)
    cache = build_cache(data, AutoTokenizer.from_pretrained(tiny_model), str(tiny_model), 16,
                        tmp_path_factory.mktemp("cache"))
    hp = {**TrainingSection().model_dump(), "learning_rate": 3e-3, "batch_size": 16}
    return TrialSpec(trial=0, model=str(tiny_model), task_type="classification", data_cache=str(cache),
                     hparams=hp, examples_per_unit=32, total_examples=96, threads=1)


def drive(proc: Any, stop_at: int | None = None) -> list[dict[str, Any]]:
    events = []
    for ev in proc.events():
        events.append(ev)
        if ev["event"] == "eval":
            proc.send(Stop() if ev["units"] == stop_at else Continue())
    return events


@pytest.mark.slow
def test_warm_trials_are_forked_children_that_speak_the_protocol(spec: TrialSpec, tmp_path: Path) -> None:
    ex = LocalExecutor(workers=1, device="cpu", threads=1, warm_start=True)
    try:
        first = ex.launch(spec, tmp_path / "t0", 0)
        assert isinstance(first, ForkedTrial)
        events = drive(first)
        assert first.wait() == 0 and _kinds(events) == ["start", "eval", "eval", "eval", "end"]
        second = ex.launch(spec, tmp_path / "t1", 0)  # a new process for every trial
        assert isinstance(second, ForkedTrial) and second.pid != first.pid
        events = drive(second, stop_at=1)
        assert second.wait() == 0 and events[-1]["stopped_by"] == "pruned"
        assert (tmp_path / "t1" / "trainer.log").exists()
        with pytest.raises(ProcessLookupError):
            os.kill(first.pid, 0)  # the first trial's process is gone, its memory back to the system
    finally:
        ex.close()


@pytest.mark.slow
def test_a_killed_warm_trial_reports_a_signal_exit(spec: TrialSpec, tmp_path: Path) -> None:
    ex = LocalExecutor(workers=1, device="cpu", threads=1, warm_start=True)
    try:
        proc = ex.launch(spec, tmp_path / "t0", 0)
        next(iter(proc.events()))  # started
        proc.kill()
        assert proc.wait() == -signal.SIGKILL
    finally:
        ex.close()


@pytest.mark.slow
def test_without_a_warm_parent_trials_start_cold(spec: TrialSpec, tmp_path: Path) -> None:
    cold = LocalExecutor(workers=1, device="cpu", threads=1, warm_start=False)
    proc = cold.launch(spec, tmp_path / "c0", 0)
    assert isinstance(proc, TrialProcess)
    assert drive(proc)[-1]["event"] == "end" and proc.wait() == 0
    ex = LocalExecutor(workers=1, device="cpu", threads=1, warm_start=True)
    try:
        first = ex.launch(spec, tmp_path / "t0", 0)
        drive(first)
        first.wait()
        assert ex._server is not None
        ex._server.proc.kill()  # the warm parent dies: the next trial still runs, cold
        ex._server.proc.wait()
        ex._server.wait_exit(-1)  # returns once the channel saw the parent go
        proc = ex.launch(spec, tmp_path / "t1", 0)
        assert isinstance(proc, TrialProcess)
        assert drive(proc)[-1]["event"] == "end" and proc.wait() == 0
    finally:
        ex.close()


def _kinds(events: list[dict[str, Any]]) -> list[str]:
    return [e["event"] for e in events if e["event"] != "progress"]  # progress: display only


@pytest.mark.slow
def test_a_prestarted_parent_serves_the_first_trial(spec: TrialSpec, tmp_path: Path) -> None:
    ex = LocalExecutor(workers=1, device="cpu", threads=1, warm_start=True)
    try:
        ex.prestart(spec.model, tmp_path)
        server = ex._server
        assert server is not None and (tmp_path / "warm-parent.log").exists()
        first = ex.launch(spec, tmp_path / "trials" / "0000", 0)
        assert isinstance(first, ForkedTrial) and ex._server is server  # forked from it, none started anew
        assert drive(first)[-1]["event"] == "end" and first.wait() == 0
    finally:
        ex.close()


@pytest.mark.slow
def test_the_tuner_starts_the_warm_parent_before_it_tokenizes(tiny_model: Path, tiny_csv: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Trial 0 need not wait for the parent's imports: they overlap the driver's own start-up."""
    from conftest import tiny_overrides
    from lmtune.config import load_config
    from lmtune.tuner import search
    from lmtune.tuner.search import Tuner

    seen: list[bool] = []
    real_make_plan, real_prestart = search.make_plan, LocalExecutor.prestart

    def prestart(self: LocalExecutor, model: str, study_dir: Path) -> None:
        real_prestart(self, model, study_dir)
        seen.append(True)

    def make_plan(cfg: Any) -> Any:
        seen.append(False)
        return real_make_plan(cfg)

    monkeypatch.setattr(LocalExecutor, "prestart", prestart)
    monkeypatch.setattr(search, "make_plan", make_plan)
    root = Path(__file__).parents[2]
    cfg = load_config(str(root / "examples" / "quickstart.yaml"),
                      [*tiny_overrides(tiny_model, tiny_csv, tmp_path / "s"), "execution.warm_start=true"])
    summary = Tuner(cfg, n_trials=1).run()
    assert seen == [True, False]  # the parent was started, then the plan made
    assert [t.state.name for t in summary.study.trials] == ["COMPLETE"]
    assert (tmp_path / "s" / "warm-parent.log").exists()
