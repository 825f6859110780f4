"""The wire format of `lmtune.protocol`: every decision and event survives a round trip, and nothing
else is taken for one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lmtune.protocol import (
    CHECKPOINT_MANIFEST,
    CheckpointRef,
    Continue,
    End,
    Ending,
    Error,
    Eval,
    Exploit,
    Note,
    OomRetry,
    Outcome,
    Pause,
    Progress,
    Start,
    Stop,
    checkpoint_complete,
    decode_decision,
    decode_event,
    encode_decision,
    encode_event,
    failure_reason,
    progress_event,
    read_event,
)


@pytest.mark.parametrize("decision", [Continue(), Stop(), Pause(),
                                      Exploit(CheckpointRef(2, 3), checkpoint="/s/trials/0002/checkpoints/u00003",
                                              hparams={"learning_rate": 1e-4, "lora_target_modules": None})])
def test_every_decision_round_trips_on_one_line(decision: object) -> None:
    line = encode_decision(decision)  # type: ignore[arg-type]
    assert "\n" not in line and decode_decision(line + "\n") == decision


def test_a_silent_driver_means_stop_and_garbage_is_an_error() -> None:
    assert decode_decision("") == Stop()  # stdin closed: the driver is gone
    with pytest.raises(ValueError, match="unknown decision"):
        decode_decision("contnue")


def test_events_round_trip_and_library_prints_are_not_events() -> None:
    import numpy as np

    ev = {"event": "eval", "units": 2, "metrics": {"eval_loss": np.float32(0.5)}}
    assert decode_event(encode_event(ev)) == {"event": "eval", "units": 2, "metrics": {"eval_loss": 0.5}}
    assert decode_event("Some weights were not initialized") is None
    assert decode_event("{not json") is None and decode_event('{"no_event": 1}') is None


def test_failure_reason_is_worded_once() -> None:
    assert failure_reason(Outcome(end=End())) == ""
    assert failure_reason(Outcome(error=Error("oom", "CUDA out of memory"))) == "oom: CUDA out of memory"
    lost = failure_reason(Outcome(code=-9, log_path="/s/trials/0001/trainer.log"))
    assert lost.startswith("trainer exited with code -9 and no result") and "/s/trials/0001/trainer.log" in lost


def test_a_checkpoint_is_complete_when_its_manifest_and_every_file_it_names_are_there(tmp_path: Path) -> None:
    folder = tmp_path / "u00002"
    assert not checkpoint_complete(folder)  # gone
    folder.mkdir()
    (folder / "weights.safetensors").write_bytes(b"w")
    assert not checkpoint_complete(folder)  # no manifest (a half-copied folder)
    (folder / CHECKPOINT_MANIFEST).write_text(json.dumps({"units": 2, "files": ["weights.safetensors"]}))
    assert checkpoint_complete(folder)
    (folder / "weights.safetensors").unlink()
    assert not checkpoint_complete(folder)  # a file it names was deleted
    (folder / CHECKPOINT_MANIFEST).write_text("{half")
    assert not checkpoint_complete(folder)


def test_how_a_run_ended_is_read_from_its_end_event_in_one_place() -> None:
    assert Ending.of(None) is Ending.FAILED
    assert Ending.of({"event": "end", "stopped_by": None}) is Ending.COMPLETED
    assert Ending.of({"event": "end"}) is Ending.COMPLETED
    assert [Ending.of({"stopped_by": w}) for w in ("pruned", "paused", "early_stopping")] == \
        [Ending.PRUNED, Ending.PAUSED, Ending.EARLY_STOPPED]
    # what the trainers and the script API write is what the driver reads
    from lmtune.protocol import Pause, Stop, script_end
    assert Ending.of(script_end({}, Stop())) is Ending.PRUNED and Ending.of(script_end({}, Pause())) is Ending.PAUSED


def test_the_checkpoint_layout_is_defined_once() -> None:
    from pathlib import Path

    from lmtune.protocol import checkpoint_folder

    assert checkpoint_folder("/runs/t3", 7) == Path("/runs/t3/checkpoints/u00007")


def test_an_exploit_travels_only_once_its_checkpoint_is_resolved() -> None:
    with pytest.raises(ValueError, match="before its checkpoint was resolved"):
        encode_decision(Exploit(CheckpointRef(3, 4), {"learning_rate": 1e-4}))
    assert Stop("reached max_units") != Stop() and encode_decision(Stop("reached max_units")) == "stop"


def test_every_event_kind_is_typed_in_one_place() -> None:
    ev = read_event({"event": "eval", "units": 3, "step": 9, "examples": 96, "tokens": 1200,
                     "metrics": {"eval_loss": 0.4}, "checkpoint": "/c/u00003", "elapsed_s": 2.0})
    assert ev == Eval(units=3, metrics={"eval_loss": 0.4}, step=9, examples=96, tokens=1200, checkpoint="/c/u00003")
    assert ev.point() == {"step": 9, "units": 3, "examples": 96, "tokens": 1200, "metrics": {"eval_loss": 0.4}}
    assert read_event({"event": "start", "precision": "bf16", "forward": "padded"}) == \
        Start(precision="bf16", forward="padded")
    assert read_event(progress_event(examples=5, tokens=50, total_examples=10)) == Progress(5, 50, 10)
    assert read_event({"event": "oom_retry", "micro_batch_size": 4, "step": 2}) == OomRetry(4)
    assert read_event({"event": "error", "kind": "oom", "reason": "out of memory"}) == Error("oom", "out of memory")
    assert read_event({"event": "exploited", "units": 4}) == Note("exploited", {"units": 4})
    end = read_event({"event": "end", "metrics": {"eval_loss": 0.3}, "stopped_by": "pruned", "units": 2,
                      "train_tokens": 640, "train_time_s": 1.5, "eval_time_s": 0.5, "micro_batch_size": 8})
    assert isinstance(end, End) and end.ending is Ending.PRUNED and end.busy_s == 2.0
    assert (end.units, end.train_tokens, end.micro_batch_size, end.last_metrics) == (2, 640, 8, {"eval_loss": 0.3})
    # malformed numbers read as 0, not as a crash of the driver; an unknown ending is the trainer's error
    assert read_event({"event": "eval", "units": "two", "metrics": None}) == Eval(units=0, metrics={})
    bad = read_event({"event": "end", "stopped_by": "bored"})
    assert isinstance(bad, Error) and "bored" in bad.reason


def test_an_outcome_says_how_the_run_ended() -> None:
    assert Outcome().ending is Ending.FAILED  # no end event: killed or crashed
    assert Outcome(end=End(), error=Error("oom", "x")).ending is Ending.FAILED
    assert Outcome(end=End(ending=Ending.PAUSED)).ending is Ending.PAUSED
    assert Ending.PRUNED.stopped and Ending.BUDGET.stopped and not Ending.EARLY_STOPPED.stopped
    assert Ending.COMPLETED.wire is None and Ending.BUDGET.wire == "budget"
