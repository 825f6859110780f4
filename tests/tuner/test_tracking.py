"""Tracking read back with the real clients: each trial (and each final run) a run nested under the study's
run in a local MLflow store (MlflowClient), TensorBoard event files (tensorboard's EventAccumulator), and W&B
offline runs (their ``.wandb`` files, decoded with wandb's own protobuf classes)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import tiny_overrides
from lmtune.config import load_config
from lmtune.errors import ConfigError
from lmtune.execution.simulated import SimulatedExecutor
from lmtune.tuner.final import FinalRunner
from lmtune.tuner.search import Tuner

pytest.importorskip("mlflow")
pytest.importorskip("tensorboard")

QUICKSTART = str(Path(__file__).parents[2] / "examples" / "quickstart.yaml")


def _cfg(tiny_model: Path, tiny_csv: Path, d: Path, *extra: str):  # type: ignore[no-untyped-def]
    return load_config(QUICKSTART, [*tiny_overrides(tiny_model, tiny_csv, d), "training.max_steps=12",
                                    "search.strategy=random", *extra])


def test_trials_and_final_runs_are_runs_in_mlflow_and_tensorboard(tiny_model: Path, tiny_csv: Path,
                                                                  tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    uri, tb = f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "tb"
    d = tmp_path / "run"
    cfg = _cfg(tiny_model, tiny_csv, d, f"tracking.mlflow={uri}", f"tracking.tensorboard={tb}")
    Tuner(cfg, n_trials=3, backend=SimulatedExecutor(workers=1)).run()
    FinalRunner(d, seeds=1, log=lambda _m: None, backend=SimulatedExecutor(workers=1)).run()

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("quickstart")
    runs = client.search_runs([exp.experiment_id])
    parent = [r for r in runs if r.data.tags.get("lmtune.study") == "quickstart"]
    assert len(parent) == 1
    children = {r.info.run_name: r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent[0].info.run_id}
    assert set(children) == {"trial-0000", "trial-0001", "trial-0002", "final-default-seed0", "final-best-seed0"}
    t1 = children["trial-0001"]
    assert t1.data.tags["state"] == "COMPLETE" and float(t1.data.params["learning_rate"]) > 0
    assert "final_eval_accuracy" in t1.data.metrics and t1.data.metrics["train_tokens"] > 0
    history = client.get_metric_history(t1.info.run_id, "eval_accuracy")
    assert len(history) >= 2 and sorted(m.step for m in history)[-1] == 12 * 16  # steps = train examples seen
    assert "final_test_accuracy" in children["final-best-seed0"].data.metrics

    acc = EventAccumulator(str(tb / "quickstart" / "trial-0002"))
    acc.Reload()
    scalars = acc.Scalars("eval_accuracy")
    assert len(scalars) == len(history) and scalars[-1].step == 12 * 16
    assert "final/eval_accuracy" in acc.Tags()["scalars"]

    # resumed: more trials go under the same parent run
    Tuner(cfg, n_trials=4, backend=SimulatedExecutor(workers=1)).run()
    runs = client.search_runs([exp.experiment_id])
    assert len([r for r in runs if r.data.tags.get("lmtune.study") == "quickstart"]) == 1
    assert "trial-0003" in {r.info.run_name for r in runs}


def test_a_failing_sink_is_switched_off_and_the_study_goes_on(tiny_model: Path, tiny_csv: Path, tmp_path: Path,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")  # event files cannot go under a file
    cfg = _cfg(tiny_model, tiny_csv, tmp_path / "run", f"tracking.tensorboard={blocker}")
    with caplog.at_level("WARNING", logger="lmtune"):
        summary = Tuner(cfg, n_trials=2, backend=SimulatedExecutor(workers=1)).run()
    assert [t.state.name for t in summary.study.trials] == ["COMPLETE", "COMPLETE"]
    assert caplog.text.count("tracking: TensorBoard failed") == 1


def test_a_sink_without_its_package_is_refused_up_front(tiny_model: Path, tiny_csv: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    with pytest.raises(ConfigError, match=r"tracking.wandb: the wandb package is not installed; pip install"):
        _cfg(tiny_model, tiny_csv, tmp_path / "run", "tracking.wandb={project: x, mode: offline}")


def test_an_mlflow_store_that_cannot_be_opened_is_refused_before_any_trial(tiny_model: Path, tiny_csv: Path,
                                                                           tmp_path: Path) -> None:
    d = tmp_path / "run"
    cfg = _cfg(tiny_model, tiny_csv, d, "tracking.mlflow=nosuchscheme://x")
    with pytest.raises(ConfigError, match=r"tracking.mlflow: cannot open the MLflow store 'nosuchscheme://x'"):
        Tuner(cfg, n_trials=1, backend=SimulatedExecutor(workers=1)).run()
    assert not (d / "trials").exists()  # nothing ran


def _wandb_records(path: Path) -> list[Any]:
    """The records of an offline run's ``.wandb`` file: W&B's LevelDB-style log (a 7-byte ``:W&B`` header,
    then 32 KiB blocks of chunks, each ``crc32 | length | type`` + payload; type 1 a whole record, 2/3/4
    its first/middle/last part), each record a ``wandb_internal_pb2.Record``. wandb 0.31 ships no Python
    reader of its own (``wandb sync`` reads it in wandb-core)."""
    import struct

    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    block, pos, part, out = 32768, 7, b"", []
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:  # a block's tail too short for a chunk header is padding
            pos += left
            continue
        _crc, size, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0:  # zero padding to the end of the block
            pos += left
            continue
        part += data[pos + 7:pos + 7 + size]
        pos += 7 + size
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(part)
            out.append(record)
            part = b""
    return out


def _wandb_runs(folder: Path, wait_s: float = 30.0) -> dict[str, dict[str, Any]]:
    """Every offline run under ``folder``, by display name: group, project, config, history (step ->
    values), summary and exit code, as the run's ``.wandb`` file holds them. W&B's service process writes
    the file after ``finish`` returns; on a loaded machine the run record came later (a KeyError in a
    run of the suite under load), so this waits up to ``wait_s`` for every file to hold its run record."""
    import time

    deadline = time.monotonic() + wait_s
    while True:
        try:
            return _read_wandb_runs(folder)
        except _Unfinished:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


class _Unfinished(Exception):
    """A run file without its run record yet."""


def _read_wandb_runs(folder: Path) -> dict[str, dict[str, Any]]:
    import json

    runs: dict[str, dict[str, Any]] = {}
    for path in sorted(folder.glob("wandb/offline-run-*/run-*.wandb")):
        run: dict[str, Any] = {"history": {}, "summary": {}, "exit_code": None}
        for record in _wandb_records(path):
            kind = record.WhichOneof("record_type")
            if kind == "run":
                run.update(name=record.run.display_name, group=record.run.run_group, project=record.run.project,
                           config={u.key: json.loads(u.value_json) for u in record.run.config.update})
            elif kind == "history":
                run["history"][record.history.step.num] = {
                    (i.key or ".".join(i.nested_key)): json.loads(i.value_json) for i in record.history.item}
            elif kind == "summary":
                run["summary"].update({(u.key or ".".join(u.nested_key)): json.loads(u.value_json)
                                       for u in record.summary.update})
            elif kind == "exit":
                run["exit_code"] = record.exit.exit_code
        if "name" not in run or run["exit_code"] is None:
            raise _Unfinished(str(path))
        runs[run["name"]] = run
    return runs


@pytest.fixture
def wandb_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """W&B in offline mode with every folder under tmp_path, and a server address where nothing listens:
    a run that tried the network would fail (and its logs would name the address), never reach out.
    WANDB_SILENT is not set: the sink itself keeps W&B quiet."""
    wandb = pytest.importorskip("wandb")
    folder = tmp_path / "wandb-home"
    for var, sub in (("WANDB_DIR", ""), ("WANDB_CONFIG_DIR", "config"), ("WANDB_CACHE_DIR", "cache"),
                     ("WANDB_DATA_DIR", "data"), ("WANDB_ARTIFACT_DIR", "artifacts")):
        (folder / sub).mkdir(parents=True, exist_ok=True)
        monkeypatch.setenv(var, str(folder / sub))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    yield folder
    wandb.teardown()  # stop the wandb-core service this process started


def test_trials_and_final_runs_are_wandb_runs_grouped_by_study(tiny_model: Path, tiny_csv: Path, tmp_path: Path,
                                                              wandb_offline: Path,
                                                              capfd: pytest.CaptureFixture[str]) -> None:
    d = tmp_path / "run"
    cfg = _cfg(tiny_model, tiny_csv, d, "tracking.wandb={project: lmtune-test, mode: offline}")
    summary = Tuner(cfg, n_trials=3, backend=SimulatedExecutor(workers=1)).run()
    FinalRunner(d, seeds=1, log=lambda _m: None, backend=SimulatedExecutor(workers=1)).run()

    printed = capfd.readouterr()
    assert "trial 2 COMPLETE" in printed.out and "wandb" not in printed.out + printed.err  # W&B printed nothing
    runs = _wandb_runs(wandb_offline)
    assert set(runs) == {"trial-0000", "trial-0001", "trial-0002", "final-default-seed0", "final-best-seed0"}
    assert {r["group"] for r in runs.values()} == {"quickstart"}  # grouped by the study
    assert {r["project"] for r in runs.values()} == {"lmtune-test"}
    for trial in summary.study.trials:
        run = runs[f"trial-{trial.number:04d}"]
        assert trial.params and all(run["config"][k] == v for k, v in trial.params.items())  # its own settings
        assert run["config"]["max_steps"] == 12  # and the study's fixed ones
        curve = trial.user_attrs["curve"]
        # the learning curve at step = train examples seen, as the study recorded it
        assert sorted(run["history"]) == [int(e["examples"]) for e in curve] and max(run["history"]) == 12 * 16
        assert [run["history"][int(e["examples"])]["eval_accuracy"] for e in curve] == \
            [e["metrics"]["eval_accuracy"] for e in curve]
        assert run["summary"]["final_eval_accuracy"] == trial.value
        assert run["summary"]["state"] == "COMPLETE" and run["exit_code"] == 0
        assert run["summary"]["train_tokens"] == trial.user_attrs["train_tokens"] > 0
        assert run["summary"]["wall_time_s"] > 0
    assert runs["final-best-seed0"]["summary"]["final_test_accuracy"] > 0
    logs = "".join(p.read_text(errors="replace") for p in wandb_offline.glob("wandb/**/*.log"))
    assert "127.0.0.1:9" not in logs  # nothing tried the server


def test_a_failed_trial_is_a_failed_wandb_run_with_its_reason(wandb_offline: Path) -> None:
    from lmtune.config.schema import TrackingSection, WandbSection
    from lmtune.tuner.tracking import RunRecord, make_tracker

    tracker = make_tracker(TrackingSection(wandb=WandbSection(project="p", mode="offline")), "study-x")
    tracker.log_run(RunRecord(name="trial-0007", params={"learning_rate": 0.5, "lora_target_modules": ["q", "v"]},
                              curve=[{"examples": 32, "metrics": {"eval_loss": float("nan")}}], metrics={},
                              state="FAIL", reason="loss is nan at step 2"))
    tracker.close()
    run = _wandb_runs(wandb_offline)["trial-0007"]
    assert run["group"] == "study-x" and run["config"]["lora_target_modules"] == ["q", "v"]
    assert run["summary"]["state"] == "FAIL" and run["summary"]["reason"] == "loss is nan at step 2"
    assert run["exit_code"] == 1 and run["history"] == {}  # a non-finite value is not logged
