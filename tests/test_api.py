"""The Python API (`lmtune.tune`, `lmtune.load`, `lmtune.final`): typed results, the CLI's checks and
messages as exceptions, and an ``import lmtune`` that loads nothing heavy."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import lmtune
from conftest import run_lmtune, set_args, tiny_overrides
from lmtune.config import load_config

ROOT = Path(__file__).parents[1]
QUICKSTART = ROOT / "examples" / "quickstart.yaml"


@pytest.mark.slow
def test_tune_returns_the_study_and_load_reads_it_back(tiny_model: Path, tiny_csv: Path, tmp_path: Path) -> None:
    d = tmp_path / "api"
    result = lmtune.tune(QUICKSTART, overrides=[*tiny_overrides(tiny_model, tiny_csv, d), "search.strategy=random"],
                         n_trials=3, progress=False)
    assert isinstance(result, lmtune.StudyResult)
    assert result.study_dir == d and result.metric == "eval_accuracy" and result.direction == "maximize"
    assert len(result.trials) == 3 and all(isinstance(t, lmtune.TrialRecord) for t in result.trials)
    assert result.best is not None and result.default is not None and result.default.is_default
    assert result.best.value == max(t.value for t in result.trials if t.value is not None)
    assert result.best_config["learning_rate"] == result.best.config["learning_rate"]
    assert result.gain == pytest.approx(result.best.value - result.default.value)
    assert result.stop_reason == "n_trials reached" and result.wall_time_s is not None
    assert len(result.study.trials) == 3  # the Optuna study itself
    again = lmtune.load(d)
    assert again.best == result.best and again.trials == result.trials and again.stop_reason is None
    more = lmtune.tune(QUICKSTART, overrides=[*tiny_overrides(tiny_model, tiny_csv, d), "search.strategy=random"],
                       n_trials=4, progress=False)  # resumes, as the CLI does
    assert len(more.trials) == 4 and more.trials[:3] == result.trials


@pytest.mark.slow
def test_a_mapping_config_and_mapping_overrides_take_effect(tiny_model: Path, tiny_csv: Path, tmp_path: Path) -> None:
    raw = load_config(QUICKSTART, tiny_overrides(tiny_model, tiny_csv, tmp_path / "dict")).model_dump()
    result = lmtune.tune(raw, overrides={"training.max_steps": 3, "search.include_default": False,
                                         "search.space": {"learning_rate": [1e-3, 1e-2]}, "search.strategy": "grid"},
                         n_trials=2, progress=False)
    assert sorted(t.params["learning_rate"] for t in result.trials) == [1e-3, 1e-2]
    assert all(t.config["max_steps"] == 3 and t.planned_examples == 3 * 16 for t in result.trials)
    assert result.default is None


@pytest.mark.slow
def test_a_study_config_object_is_taken_as_is(tiny_model: Path, tiny_csv: Path, tmp_path: Path) -> None:
    cfg = load_config(QUICKSTART, [*tiny_overrides(tiny_model, tiny_csv, tmp_path / "cfg"), "search.strategy=random"])
    result = lmtune.tune(cfg, n_trials=1, progress=False)
    assert len(result.trials) == 1 and result.trials[0].is_default


def test_errors_are_the_cli_messages_raised_before_training(tiny_model: Path, tiny_csv: Path, tmp_path: Path) -> None:
    d = tmp_path / "bad"
    sets = [*tiny_overrides(tiny_model, tiny_csv, d), "study.metric=eval_mcc"]
    with pytest.raises(lmtune.ConfigError) as caught:
        lmtune.tune(QUICKSTART, overrides=sets, progress=False)
    assert "eval_mcc" in str(caught.value)
    assert not (d / "trials").exists()  # nothing trained
    cli = run_lmtune("tune", str(QUICKSTART), *set_args(sets))
    assert cli.returncode == 2 and cli.stderr.strip() == f"error: {caught.value}"
    with pytest.raises(lmtune.ConfigError, match="n_trials"):
        lmtune.tune(QUICKSTART, n_trials=0)
    with pytest.raises(lmtune.ConfigError, match="overrides"):
        lmtune.tune(QUICKSTART, overrides="training.learning_rate=1e-3")  # type: ignore[arg-type]
    with pytest.raises(lmtune.StudyError, match="not an lmtune study directory"):
        lmtune.load(tmp_path)


@pytest.mark.slow
def test_final_compares_default_and_best_over_seeds(tiny_model: Path, tiny_csv: Path, tmp_path: Path) -> None:
    d = tmp_path / "fin"
    lmtune.tune(QUICKSTART, overrides=[*tiny_overrides(tiny_model, tiny_csv, d), "search.strategy=random"],
                n_trials=2, progress=False)
    lines: list[str] = []
    summary = lmtune.final(d, seeds=2, log=lines.append)
    assert isinstance(summary, lmtune.FinalSummary)
    assert not summary.failed and len(summary.ran) == 4 and summary.results_path.is_file()
    assert lines  # the log hook heard the runs
    with pytest.raises(lmtune.ConfigError, match="seeds"):
        lmtune.final(d, seeds=0)


@pytest.mark.slow
def test_train_keeps_one_model_and_its_metrics(tiny_model: Path, tiny_csv: Path, tmp_path: Path) -> None:
    result = lmtune.train(QUICKSTART, overrides=[*tiny_overrides(tiny_model, tiny_csv, tmp_path / "study"),
                                                 "training.learning_rate=2e-3"], out=tmp_path / "one")
    assert isinstance(result, lmtune.TrainResult) and not result.failure
    assert result.model_dir == tmp_path / "one" / "model" and (result.model_dir / "config.json").is_file()
    assert set(result.test_metrics) >= {"test_accuracy", "test_loss"} and "eval_accuracy" in result.validation_metrics
    spec = json.loads((tmp_path / "one" / "trials" / "0000" / "trial.json").read_text())
    assert spec["hparams"]["learning_rate"] == 2e-3  # the override is what trained
    assert not (tmp_path / "study").exists()  # its own folder, not the config's study.dir
    with pytest.raises(lmtune.StudyError, match="already holds a trained model"):
        lmtune.train(QUICKSTART, overrides=tiny_overrides(tiny_model, tiny_csv, tmp_path / "study"),
                     out=tmp_path / "one")


def test_import_lmtune_loads_nothing_heavy() -> None:
    code = ("import sys, lmtune; heavy = ('torch', 'transformers', 'optuna', 'ray', 'peft', 'sqlalchemy'); "
            "print(','.join(m for m in heavy if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == ""
    assert set(lmtune.__all__) >= {"tune", "load", "final", "train", "StudyResult", "TrainResult", "TrialRecord",
                                   "StudyConfig"}
