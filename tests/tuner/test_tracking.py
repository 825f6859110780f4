"""Tracking read back with the real clients: each trial (and each final run) a run nested under the study's
run in a local MLflow store (MlflowClient), and TensorBoard event files (tensorboard's EventAccumulator)."""

from __future__ import annotations

from pathlib import Path

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
