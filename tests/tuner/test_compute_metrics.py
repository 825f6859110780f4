"""task.compute_metrics through the real driver: the study ranks by the user's metric, computed on the
validation split (and on test in final runs); a wrong metric or a broken function exits 2 before training."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from conftest import run_lmtune, set_args, tiny_overrides

ROOT = Path(__file__).parents[2]
QUICKSTART = str(ROOT / "examples" / "quickstart.yaml")
MCC = """
import numpy as np

def mcc(eval_pred):
    logits, labels = eval_pred
    pred = np.argmax(logits, -1)
    tp = float(((pred == 1) & (labels == 1)).sum()); tn = float(((pred == 0) & (labels == 0)).sum())
    fp = float(((pred == 1) & (labels == 0)).sum()); fn = float(((pred == 0) & (labels == 1)).sum())
    den = ((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn)) ** 0.5
    return {"mcc": (tp * tn - fp * fn) / den if den else 0.0, "rows": len(labels)}
"""


@pytest.mark.slow
def test_a_study_ranks_trials_by_the_users_metric(tiny_model: Path, tiny_csv: Path, tmp_path: Path) -> None:
    (tmp_path / "metrics.py").write_text(MCC)
    d = tmp_path / "mcc"
    over = [*tiny_overrides(tiny_model, tiny_csv, d), "search.strategy=random",
            f"task.compute_metrics={tmp_path / 'metrics.py'}:mcc", "study.metric=eval_mcc"]
    out = run_lmtune("tune", QUICKSTART, *set_args(over), "--n-trials", "2")
    assert out.returncode == 0, out.stderr
    study = optuna.load_study(study_name=None, storage=f"sqlite:///{d / 'study.db'}")
    for t in study.trials:
        last = t.user_attrs["curve"][-1]["metrics"]
        assert last["eval_rows"] == 48  # computed on the validation split (task.validation_size)
        assert t.value == last["eval_mcc"] and -1.0 <= t.value <= 1.0
        assert {"eval_accuracy", "eval_f1", "eval_loss"} <= set(last)  # the built-ins are still there
    out = run_lmtune("final", str(d), "--seeds", "1")
    assert out.returncode == 0, out.stderr
    assert "test_mcc" in out.stdout


@pytest.mark.slow
def test_wrong_metric_or_broken_function_exits_2_before_training(tiny_model: Path, tiny_csv: Path,
                                                                  tmp_path: Path) -> None:
    (tmp_path / "metrics.py").write_text(MCC + "\ndef broken(p):\n    raise RuntimeError('no labels here')\n")
    ref = f"{tmp_path / 'metrics.py'}"
    cases = [([f"task.compute_metrics={ref}:mcc", "study.metric=eval_kappa"],
              "study.metric: 'eval_kappa' is not reported: task.compute_metrics"),
             ([f"task.compute_metrics={ref}:broken", "study.metric=eval_accuracy"],
              "task.compute_metrics raised RuntimeError: no labels here"),
             ([f"task.compute_metrics={ref}:mcc", "task.type=causal_lm"],
              "task.compute_metrics is for task.type classification")]
    for i, (extra, message) in enumerate(cases):
        d = tmp_path / f"bad{i}"
        out = run_lmtune("tune", QUICKSTART, *set_args([*tiny_overrides(tiny_model, tiny_csv, d), *extra]))
        assert out.returncode == 2, (extra, out.stdout, out.stderr)
        assert message in out.stdout + out.stderr and "Traceback" not in out.stderr
        assert not list(d.glob("trials/*"))  # nothing trained
