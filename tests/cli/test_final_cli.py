"""`lmtune final` and `lmtune report` through the real command line, on the tiny model (seconds per run)."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import optuna
import pytest
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from conftest import run_lmtune, set_args, tiny_overrides
from lmtune.config import load_config
from lmtune.tuner.final import FinalRunner

pytestmark = pytest.mark.slow  # end-to-end studies of real trainer processes: the slow tier

ROOT = Path(__file__).parents[2]
QUICKSTART = str(ROOT / "examples" / "quickstart.yaml")


lmtune, sets = functools.partial(run_lmtune, timeout=300), set_args


@pytest.fixture(scope="module")
def finished(tiny_model: Path, tiny_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A 2-trial study and `lmtune final --seeds 2` on it (two runs at a time); returns (study_dir, stdout)."""
    d = tmp_path_factory.mktemp("final") / "run"
    args = sets([*tiny_overrides(tiny_model, tiny_csv, d), "execution.workers=2"])
    tune = lmtune("tune", QUICKSTART, *args, "--n-trials", "2")
    assert tune.returncode == 0, tune.stdout + tune.stderr
    out = lmtune("final", str(d), "--seeds", "2", "--workers", "2")
    assert out.returncode == 0, out.stdout + out.stderr
    return d, out.stdout


def test_final_writes_four_runs_with_test_metrics(finished: tuple[Path, str]) -> None:
    d, _ = finished
    results = json.loads((d / "final" / "results.json").read_text())
    runs = results["runs"]
    assert sorted((r["which"], r["seed"]) for r in runs) == [("best", 0), ("best", 1), ("default", 0), ("default", 1)]
    for r in runs:
        assert set(r["metrics"]) == {"test_accuracy", "test_f1", "test_loss"}
        assert r["config"]["seed"] == r["seed"] and r["train_tokens"] > 0 and r["wall_time_s"] > 0
    assert results["metric_names"][0] == "test_accuracy" and results["seeds"] == [0, 1]
    assert results["machine"].startswith(("CPU: ", "GPU: ")) and results["model_dir"] == "final/model"


def test_final_prints_comparison_and_costs(finished: tuple[Path, str]) -> None:
    _, stdout = finished
    assert "| test_accuracy ↑ |" in stdout and "±" in stdout and "(n=2)" in stdout
    assert "search: 2 trials" in stdout and "final:  4 runs (default 2, best 2)" in stdout
    assert "final model" in stdout and str(Path("final") / "model") in stdout


def test_final_shows_the_selected_trials_validation_vs_test_gap(finished: tuple[Path, str]) -> None:
    d, stdout = finished
    results = json.loads((d / "final" / "results.json").read_text())
    study = optuna.load_study(study_name=None, storage=f"sqlite:///{d / 'study.db'}")
    chosen = study.trials[results["best_trial"]].value
    test = [r["metrics"]["test_accuracy"] for r in results["runs"] if r["which"] == "best"]
    line = next(ln for ln in stdout.splitlines() if ln.startswith("Selected trial:"))
    assert f"eval_accuracy {chosen:.4f} in the search" in line and "maximum of 2 finished trials" in line
    assert "retrained: validation" in line and f"{chosen - sum(test) / len(test):+.4f}" in line


def test_final_model_is_a_normal_hf_folder(finished: tuple[Path, str]) -> None:
    model = finished[0] / "final" / "model"
    net = AutoModelForSequenceClassification.from_pretrained(model)
    tok = AutoTokenizer.from_pretrained(model)
    assert net.config.num_labels == 2 and tok("good film")["input_ids"]
    cfg = load_config(model / "lmtune-config.yaml")
    best = next(r for r in json.loads((finished[0] / "final" / "results.json").read_text())["runs"]
            if r["which"] == "best" and r["seed"] == 0)
    assert cfg.training.learning_rate == best["config"]["learning_rate"] and cfg.search.space == {}
    assert not (finished[0] / "final" / "runs" / "best-seed0" / "model").exists()  # moved, not copied


def test_rerun_does_nothing_new(finished: tuple[Path, str]) -> None:
    d, _ = finished
    before = (d / "final" / "results.json").read_text()
    summary = FinalRunner(d, seeds=2, log=lambda _: None).run()
    assert summary.ran == [] and len(summary.reused) == 4 and summary.failed == []
    assert json.loads(before)["runs"] == summary.results["runs"]


def test_report_writes_both_files_with_the_comparison(finished: tuple[Path, str]) -> None:
    d, _ = finished
    out = lmtune("report", str(d))
    assert out.returncode == 0, out.stdout + out.stderr
    html, md = d / "report" / "report.html", d / "report" / "report.md"
    assert f"wrote {html}" in out.stdout and f"wrote {md}" in out.stdout
    assert "±" in md.read_text() and "https://cdn" not in html.read_text()


@pytest.mark.parametrize("command", ["report", "final", "dashboard"])
def test_no_study_exits_2_with_one_message(command: str, tmp_path: Path) -> None:
    out = lmtune(command, str(tmp_path / "none"))
    assert out.returncode == 2, out.stdout + out.stderr
    assert "lmtune tune" in out.stderr and "Traceback" not in out.stderr + out.stdout
