"""A study read without lmtune (optuna.load_study, optuna-dashboard) names its objective and says what its
intermediate values are."""

from __future__ import annotations

from pathlib import Path

import optuna

from conftest import tiny_overrides
from lmtune.config import load_config
from lmtune.execution.simulated import SimulatedExecutor
from lmtune.tuner.search import Tuner

QUICKSTART = str(Path(__file__).parents[2] / "examples" / "quickstart.yaml")


def test_the_objective_is_named_and_intermediate_values_explained(tiny_model: Path, tiny_csv: Path,
                                                                   tmp_path: Path) -> None:
    d = tmp_path / "run"
    cfg = load_config(QUICKSTART, [*tiny_overrides(tiny_model, tiny_csv, d), "training.max_steps=12",
                                   "search.strategy=asha", "search.prune_metric=eval_loss"])
    Tuner(cfg, n_trials=2, backend=SimulatedExecutor(workers=1)).run()
    study = optuna.load_study(study_name=None, storage=f"sqlite:///{d / 'study.db'}")
    assert study.metric_names == ["eval_accuracy"]  # not "Objective 0" in optuna-dashboard
    meaning = study.user_attrs["lmtune.intermediate_values"]
    assert meaning.startswith("-eval_loss (negated") and "train examples" in meaning
    stepped = [t for t in study.trials if t.intermediate_values]
    assert stepped  # what the attr describes is there
