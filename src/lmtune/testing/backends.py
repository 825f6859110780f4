"""The backend contract (`lmtune.execution.Executor`): the call order ``execution/base.py`` documents —
acquire → launch → events (answered with send) → wait → release; close — and what a trainer's events,
exit code, log and checkpoints must look like through it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from lmtune.execution import Executor
from lmtune.protocol import Continue, Decision, Ending, Stop, TrialSpec

__all__ = ["BACKEND_CHECKS", "SIM_TRAINER", "SpecFor", "check_backend", "sim_spec"]

SIM_TRAINER = "lmtune.execution.simtrainer"  # the stand-in trainer's module (a backend's ``module=``)
SpecFor = Callable[[int, Path], TrialSpec]
_KILL = "kill"


def sim_spec(number: int, trial_dir: Path) -> TrialSpec:
    """A trial of the stand-in trainer: 4 evaluations of 8 examples each."""
    return TrialSpec(trial=number, model="-", task_type="classification", data_cache="-", examples_per_unit=8,
                     total_examples=32, hparams={"learning_rate": 1e-3, "weight_decay": 0.0},
                     output_dir=str(trial_dir))


def run_one(ex: Executor, spec: TrialSpec, trial_dir: Path, answer: Callable[[dict[str, Any]], Decision | str | None],
            ) -> tuple[list[dict[str, Any]], int, Path]:
    """Run one trial through ``ex`` in the documented call order; ``answer`` gives each evaluation's decision
    (or ``"kill"``). Returns its events, exit code and log path."""
    slot = ex.acquire()
    try:
        proc = ex.launch(spec, trial_dir, slot)
        events = []
        for ev in proc.events():
            events.append(ev)
            if ev["event"] == "eval":
                decision = answer(ev)
                if decision == _KILL:
                    proc.kill()
                elif isinstance(decision, Decision):
                    proc.send(decision)
        return events, proc.wait(), proc.log_path
    finally:
        ex.release(slot)


def check_slots(ex: Executor, spec_for: SpecFor, folder: Path) -> None:
    """``workers`` distinct slots, each on a device, and the same ones back after release."""
    slots = [ex.acquire() for _ in range(ex.workers)]
    assert len(set(slots)) == ex.workers, f"acquire gave {slots} for {ex.workers} workers: slots must be distinct"
    assert all(ex.device_for(s) for s in slots) and ex.threads >= 1, "every slot names a device; threads >= 1"
    for s in slots:
        ex.release(s)
    again = [ex.acquire() for _ in range(ex.workers)]
    assert sorted(again) == sorted(slots), f"released slots {slots} did not come back ({again})"
    for s in again:
        ex.release(s)


def check_runs_to_its_end(ex: Executor, spec_for: SpecFor, folder: Path) -> None:
    """A trial answered with Continue streams start, its evaluations in order and an end, and exits 0."""
    d = folder / "end"
    events, code, log = run_one(ex, spec_for(0, d), d, lambda ev: Continue())
    kinds = [e["event"] for e in events]
    assert code == 0, f"a trial that ran to its end exited with {code}; see {log}"
    assert kinds[0] == "start" and kinds[-1] == "end" and "eval" in kinds, f"events in the wrong order: {kinds}"
    units = [e["units"] for e in events if e["event"] == "eval"]
    assert units == sorted(set(units)), f"evaluation units not increasing: {units}"
    assert Ending.of(events[-1]) is Ending.COMPLETED and events[-1]["train_tokens"] > 0, f"its end: {events[-1]}"
    assert Path(log).is_file(), f"no log at {log}"


def check_stop(ex: Executor, spec_for: SpecFor, folder: Path) -> None:
    """A Stop ends the trial at the evaluation it answers, with a "pruned" end."""
    d = folder / "stop"
    events, code, _ = run_one(ex, spec_for(1, d), d, lambda ev: Stop())
    kinds = [e["event"] for e in events if e["event"] != "progress"]
    assert code == 0 and kinds == ["start", "eval", "end"], f"a stopped trial: exit {code}, events {kinds}"
    evals = [e for e in events if e["event"] == "eval"]
    assert Ending.of(events[-1]) is Ending.PRUNED and events[-1]["units"] == evals[0]["units"], \
        f"a stopped trial's end: {events[-1]}"


def check_kill(ex: Executor, spec_for: SpecFor, folder: Path) -> None:
    """A killed trial's event stream ends without an end event and its exit code is not 0."""
    d = folder / "kill"
    events, code, _ = run_one(ex, spec_for(2, d), d, lambda ev: _KILL)
    assert code != 0 and not any(e["event"] == "end" for e in events), f"a killed trial: exit {code}, an end event"


def check_crash(ex: Executor, spec_for: SpecFor, folder: Path) -> None:
    """A trainer that crashes exits non-zero, sends no end, and leaves its own account in its log."""
    d = folder / "crash"
    broken = replace(spec_for(3, d), hparams={"learning_rate": "not a number"}, model=str(folder / "no-such-model"))
    events, code, log = run_one(ex, broken, d, lambda ev: Continue())
    assert code != 0 and not any(e["event"] == "end" for e in events), f"a crashed trial: exit {code}, an end event"
    assert Path(log).is_file() and Path(log).read_text().strip(), f"a crashed trial left no log at {log}"


def check_checkpoints(ex: Executor, spec_for: SpecFor, folder: Path) -> None:
    """The backend resolves, lists, sizes and deletes the checkpoints its trainers reported (deleting twice is
    fine)."""
    d = folder / "checkpoints"
    d.mkdir(parents=True, exist_ok=True)
    events, code, _ = run_one(ex, replace(spec_for(0, d), checkpoint_every=2), d, lambda ev: Continue())
    assert code == 0, f"a checkpointing trial exited with {code}"
    reported = [Path(ev["checkpoint"]) for ev in events if ev["event"] == "eval" and ev.get("checkpoint")]
    assert reported, "no evaluation reported a checkpoint with checkpoint_every=2"
    assert ex.list_checkpoints(d) == sorted(reported), f"listed {ex.list_checkpoints(d)}, reported {reported}"
    assert all(ex.checkpoint_bytes(p) > 0 for p in reported), "a reported checkpoint sized 0 bytes"
    at = {int(ev["units"]): Path(ev["checkpoint"]) for ev in events if ev["event"] == "eval" and ev.get("checkpoint")}
    for units, path in at.items():  # a scheduler names a checkpoint by (trial folder, units): the backend resolves it
        assert ex.checkpoint_path(d, units) == path, f"checkpoint_path({d}, {units}) is not the reported {path}"
        assert ex.checkpoint_units(path) == units and ex.checkpoint_ready(path), f"{path}: not whole, or not at {units}"
    assert not ex.checkpoint_ready(ex.checkpoint_path(d, 999)), "a checkpoint never saved reads as ready"
    ex.delete_checkpoint(reported[0])
    ex.delete_checkpoint(reported[0])  # already gone: no error
    assert ex.list_checkpoints(d) == sorted(reported[1:]) and ex.checkpoint_bytes(reported[0]) == 0, \
        "a deleted checkpoint is still listed or sized"


BACKEND_CHECKS: tuple[Callable[[Executor, SpecFor, Path], None], ...] = (
    check_slots, check_runs_to_its_end, check_stop, check_kill, check_crash, check_checkpoints)


def check_backend(ex: Executor, *, spec_for: SpecFor = sim_spec, folder: Path) -> None:
    """Run every check of the backend contract on ``ex`` (trial folders under ``folder``); the first that fails
    raises ``AssertionError``. The caller closes ``ex``."""
    for check in BACKEND_CHECKS:
        check(ex, spec_for, Path(folder) / check.__name__)
