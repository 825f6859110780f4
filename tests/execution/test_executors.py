"""Executor selection and the stand-in trainer's protocol (no Ray needed)."""

from pathlib import Path

import pytest

from lmtune.config import load_config
from lmtune.errors import ConfigError
from lmtune.execution import LocalExecutor, make_executor
from lmtune.protocol import Continue, Stop, TrialSpec


def test_local_backend_is_the_default() -> None:
    ex = make_executor(load_config(None, ["execution.device=cpu"]).execution)
    assert isinstance(ex, LocalExecutor) and ex.workers == 1


@pytest.mark.parametrize("override, message", [
    ("execution.address=headnode", "is not a Ray address"),
    ("execution.grace_period=5", "must exceed heartbeat_interval"),
])
def test_execution_settings_are_validated(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override, "execution.heartbeat_interval=10"])


@pytest.mark.parametrize("address", ["auto", "ray://head:10001", "10.0.0.1:6379"])
def test_ray_addresses_accepted(address: str) -> None:
    assert load_config(None, [f"execution.address={address}"]).execution.address == address


def test_simulated_trainer_speaks_the_trainer_protocol(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LMTUNE_SIM_UNIT_S", "0.01")
    ex = LocalExecutor(workers=1, device="cpu", threads=1, module="lmtune.execution.simtrainer")
    spec = TrialSpec(trial=0, model="-", task_type="classification", data_cache="-", examples_per_unit=8,
                     total_examples=24, hparams={"learning_rate": 1e-3, "weight_decay": 0.0})
    proc = ex.launch(spec, tmp_path / "t0", ex.acquire())
    events = []
    for ev in proc.events():
        events.append(ev)
        if ev["event"] == "eval":
            proc.send(Stop() if ev["units"] == 2 else Continue())
    assert proc.wait() == 0
    assert [e["event"] for e in events if e["event"] != "progress"] == ["start", "eval", "eval", "end"]
    assert events[-1]["stopped_by"] == "pruned" and events[-1]["units"] == 2
    assert 0 < events[-1]["metrics"]["eval_accuracy"] < 1
