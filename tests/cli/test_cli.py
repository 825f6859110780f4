"""End-to-end through the real command line, on the tiny model and data (seconds per trial)."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import sqlalchemy

from conftest import run_lmtune, set_args, tiny_overrides
from lmtune.config import load_config

ROOT = Path(__file__).parents[2]
QUICKSTART = str(ROOT / "examples" / "quickstart.yaml")


lmtune, sets = run_lmtune, set_args


def trials(db: Path) -> list[optuna.trial.FrozenTrial]:
    try:
        return optuna.load_study(study_name=None, storage=f"sqlite:///{db}").trials
    except (ValueError, sqlalchemy.exc.SQLAlchemyError):  # storage or study still being created by the driver
        return []


def complete(db: Path) -> list[optuna.trial.FrozenTrial]:
    return [t for t in trials(db) if t.state.name == "COMPLETE"]


@pytest.fixture(scope="module")
def study_dir(tiny_model: Path, tiny_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("study") / "run"
    out = lmtune("tune", QUICKSTART, *sets(tiny_overrides(tiny_model, tiny_csv, d)), "--n-trials", "3")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "best trial" in out.stdout and "default settings" in out.stdout
    for step in (f"lmtune final {d}", f"lmtune report {d}", f"lmtune export {d} --format yaml"):  # what to do next
        assert step in out.stdout, out.stdout
    return d


def test_tune_records_trials_readable_by_plain_optuna(study_dir: Path) -> None:
    done = complete(study_dir / "study.db")
    assert len(done) == 3 and all(t.params and t.value is not None for t in done)
    default = [t for t in done if t.user_attrs["is_default"]]
    assert len(default) == 1 and default[0].number == 0
    for t in done:
        assert t.user_attrs["train_tokens"] > 0 and t.user_attrs["curve"]
        assert t.user_attrs["wall_time_s"] > 0 and "overhead_s" in t.user_attrs


@pytest.mark.slow
def test_best_json_status_and_exports(study_dir: Path, tmp_path: Path) -> None:
    best = json.loads(lmtune("best", str(study_dir), "--json").stdout)
    values = [t.value for t in complete(study_dir / "study.db")]
    assert best["value"] == max(values) and best["params"] and best["default"]["trial"] == 0
    status = lmtune("status", str(study_dir))
    assert status.returncode == 0 and "COMPLETE" in status.stdout and "train tokens" in status.stdout
    exported = tmp_path / "best.yaml"
    assert lmtune("export", str(study_dir), "--format", "yaml", "--out", str(exported)).returncode == 0
    cfg = load_config(exported)
    assert cfg.training.learning_rate == best["config"]["learning_rate"] and cfg.search.space == {}
    assert cfg.study.name.endswith("-best")  # tuning the exported file never adds trials to this study
    assert "lmtune train" in exported.read_text()
    hf = json.loads(lmtune("export", str(study_dir), "--format", "hf").stdout)
    assert hf["learning_rate"] == best["config"]["learning_rate"]
    assert hf["per_device_train_batch_size"] == best["config"]["batch_size"]
    # the file as a user loads it: TrainingArguments(**json) with the pinned transformers, in the trial's own
    # steps (training.max_steps 6 is 6 x 16 examples at the default batch), its other settings beside it
    from transformers import TrainingArguments

    out_file = tmp_path / "hf" / "best.json"
    assert lmtune("export", str(study_dir), "--format", "hf", "--out", str(out_file)).returncode == 0
    ta = TrainingArguments(**{**json.loads(out_file.read_text()), "output_dir": str(tmp_path / "hf"), "use_cpu": True})
    assert ta.max_steps * ta.per_device_train_batch_size * ta.gradient_accumulation_steps >= 6 * 16
    assert ta.max_steps == -(-6 * 16 // best["config"]["batch_size"]) and ta.eval_strategy == "steps"
    assert json.loads((tmp_path / "hf" / "best.lmtune-extra.json").read_text())["dropout"] == \
        best["config"]["dropout"]


@pytest.mark.slow
def test_train_runs_the_exported_best_once_and_keeps_its_model(study_dir: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    best = json.loads(lmtune("best", str(study_dir), "--json").stdout)
    exported = tmp_path / "best.yaml"
    assert lmtune("export", str(study_dir), "--format", "yaml", "--out", str(exported)).returncode == 0
    before = len(complete(study_dir / "study.db"))
    out = lmtune("train", str(exported), "--out", str(tmp_path / "trained"))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "validation: eval_accuracy=" in out.stdout and "test: test_accuracy=" in out.stdout
    result = json.loads((tmp_path / "trained" / "result.json").read_text())
    assert result["config"]["learning_rate"] == best["config"]["learning_rate"]  # the best trial's settings
    assert result["test_metrics"]["test_accuracy"] > 0 and result["train_tokens"] > 0
    spec = json.loads((tmp_path / "trained" / "trials" / "0000" / "trial.json").read_text())
    assert spec["total_examples"] == 6 * 16 and not spec["interactive"]  # training.max_steps at its batch
    model = tmp_path / "trained" / "model"
    AutoModelForSequenceClassification.from_pretrained(model)
    assert AutoTokenizer.from_pretrained(model)("a film")["input_ids"] and (model / "lmtune-config.yaml").is_file()
    assert len(complete(study_dir / "study.db")) == before  # the study it came from is untouched
    again = lmtune("train", str(exported), "--out", str(tmp_path / "trained"))
    assert again.returncode == 2 and "already holds a trained model" in again.stderr


@pytest.mark.slow
def test_resume_keeps_completed_trials(study_dir: Path, tiny_model: Path, tiny_csv: Path) -> None:
    before = {t.number: t.value for t in complete(study_dir / "study.db")}
    out = lmtune("tune", QUICKSTART, *sets(tiny_overrides(tiny_model, tiny_csv, study_dir)), "--n-trials", "4")
    assert out.returncode == 0, out.stderr
    after = {t.number: t.value for t in complete(study_dir / "study.db")}
    assert len(after) == 4 and all(after[n] == v for n, v in before.items())


@pytest.mark.parametrize("override, expect", [
    ("task.no_such_key=1", "task.no_such_key"),
    ("training.batch_size=lots", "training.batch_size"),
    ("task.dataset=/nowhere/data.csv", "file not found: /nowhere/data.csv"),
    ("task.label_column=sentiment", "column 'sentiment'"),
    ("task.model=/nowhere/model", "folder not found"),
])
def test_bad_input_exits_2_with_one_message(override: str, expect: str, tiny_model: Path, tiny_csv: Path,
                                            tmp_path: Path) -> None:
    args = sets([*tiny_overrides(tiny_model, tiny_csv, tmp_path / "run"), override])
    out = lmtune("tune", QUICKSTART, *args, "--n-trials", "1")
    assert out.returncode == 2, out.stdout + out.stderr
    assert "Traceback" not in out.stderr + out.stdout
    assert expect in out.stderr


def test_missing_study_dir_exits_2(tmp_path: Path) -> None:
    out = lmtune("best", str(tmp_path / "none"))
    assert out.returncode == 2 and "lmtune tune" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.slow
def test_failing_trial_is_recorded_and_study_goes_on(tiny_model: Path, tiny_csv: Path, tmp_path: Path) -> None:
    d = tmp_path / "run"
    args = sets([*tiny_overrides(tiny_model, tiny_csv, d), "search.strategy=grid", "search.space={}",
                 "search.space.learning_rate={type: float, low: 1e-4, high: 1e13, grid: [1e12, 1e-3]}",
                 "training.optimizer=sgd", "training.max_grad_norm=null", "search.include_default=false"])
    out = lmtune("tune", QUICKSTART, *args)
    assert out.returncode == 0, out.stdout + out.stderr
    study = optuna.load_study(study_name=None, storage=f"sqlite:///{d / 'study.db'}")
    states = {t.params["learning_rate"]: t for t in study.trials}
    assert states[1e12].state.name == "FAIL" and "nan" in states[1e12].user_attrs["fail_reason"]
    assert states[1e-3].state.name == "COMPLETE"


@pytest.mark.slow
def test_sigkill_then_rerun_completes_and_keeps_work(tiny_model: Path, tiny_csv: Path, tmp_path: Path) -> None:
    d = tmp_path / "run"
    cmd = [sys.executable, "-m", "lmtune", "tune", QUICKSTART,
           *sets([*tiny_overrides(tiny_model, tiny_csv, d), "training.max_steps=30"]), "--n-trials", "3"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 600
    db = d / "study.db"
    try:
        while time.time() < deadline:
            states = _states(db)
            # RUNNING shows at ask(), a moment before its parameters are written one by one; kill once all
            # of them are (a kill between two left a trial with part of its configuration, re-run as another)
            if "COMPLETE" in states and _running_with_params(db):
                break
            time.sleep(0.3)
        else:
            pytest.fail("no trial completed in time")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    survivors = {t.number: t.value for t in complete(db)}
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout + out.stderr
    study = optuna.load_study(study_name=None, storage=f"sqlite:///{db}")
    done = {t.number: t.value for t in study.trials if t.state.name == "COMPLETE"}
    assert len(done) == 3
    assert all(done[n] == v for n, v in survivors.items())
    interrupted = [t for t in study.trials if t.state.name == "FAIL"]
    assert interrupted and all("interrupted" in t.user_attrs["fail_reason"] for t in interrupted)
    rerun = [t for t in study.trials if t.state.name == "COMPLETE" and t.params == interrupted[0].params]
    assert rerun, "the interrupted configuration was not re-run"


def _states(db: Path) -> list[str]:
    """Trial states read through a read-only SQLite connection: polling with optuna.load_study while the
    driver is still creating the study could run Optuna's schema set-up a second time and crash it."""
    import sqlite3

    if not db.exists():
        return []
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)) as con:
            return [row[0] for row in con.execute("SELECT state FROM trials")]
    except sqlite3.Error:  # tables not created yet, or locked for a moment
        return []


def _running_with_params(db: Path) -> bool:
    import sqlite3

    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)) as con:
            def params(state: str) -> list[int]:
                return [row[0] for row in con.execute(
                    "SELECT COUNT(p.param_id) FROM trials t LEFT JOIN trial_params p ON p.trial_id = t.trial_id "
                    "WHERE t.state = ? GROUP BY t.trial_id", (state,))]

            full, running = max(params("COMPLETE"), default=0), params("RUNNING")
            return full > 0 and any(n >= full for n in running)
    except sqlite3.Error:
        return False


@pytest.mark.parametrize("args", [["tune", "examples/quickstart.yaml", "--n-trials", "abc"], ["--bogus"],
                                  ["tune"], []])
def test_usage_errors_are_one_message_and_exit_2(args: list[str]) -> None:
    out = run_lmtune(*args)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "Traceback" not in out.stderr and "Usage:" in out.stdout + out.stderr


def test_error_text_is_not_read_as_markup(tmp_path: Path) -> None:
    odd = tmp_path / "x[/y]" / "[bold]z[/bold]"
    out = run_lmtune("status", str(odd))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert str(odd) in out.stderr.replace("\n", "")
