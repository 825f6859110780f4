"""A resumed study draws new configurations: re-runs do not repeat what earlier runs sampled."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest

from conftest import run_lmtune, set_args, tiny_overrides
from lmtune.config import load_config
from lmtune.errors import ConfigError
from lmtune.execution.simulated import SimulatedExecutor
from lmtune.study import META_FILE
from lmtune.tuner.search import Tuner

ROOT = Path(__file__).parents[2]
QUICKSTART = str(ROOT / "examples" / "quickstart.yaml")


@pytest.mark.parametrize("strategy", ["random", "bayes"])
def test_each_rerun_of_a_study_samples_new_configurations(strategy: str, tiny_model: Path, tiny_csv: Path,
                                                          tmp_path: Path) -> None:
    """Four runs of one study (1, 2, 3, 4 trials), each a new Tuner on the same study folder as a re-run of
    ``lmtune tune`` is; the trials run on the simulated backend (the sampler's seeding is the driver's)."""
    d = tmp_path / "resume"
    cfg = load_config(QUICKSTART, [*tiny_overrides(tiny_model, tiny_csv, d), f"search.strategy={strategy}",
                                   "search.include_default=false", "training.max_steps=3",
                                   "search.space={learning_rate: {type: float, low: 1.0e-5, high: 1.0e-2}}"])
    for n in (1, 2, 3, 4):
        Tuner(cfg, n_trials=n, backend=SimulatedExecutor(workers=1)).run()
    study = optuna.load_study(study_name=None, storage=f"sqlite:///{d / 'study.db'}")
    lrs = [t.params["learning_rate"] for t in study.trials]
    assert len(lrs) == 4 and len(set(lrs)) == 4, lrs  # bayes: TPE models from the 3rd trial (2 start-up)


@pytest.mark.slow
def test_changing_the_metric_of_an_existing_study_is_refused(tiny_model: Path, tiny_csv: Path, tmp_path: Path) -> None:
    d = tmp_path / "metric"
    base = [*tiny_overrides(tiny_model, tiny_csv, d), "training.max_steps=3"]
    assert run_lmtune("tune", QUICKSTART, *set_args(base), "--n-trials", "1").returncode == 0
    out = run_lmtune("tune", QUICKSTART, *set_args([*base, "study.metric=eval_loss", "study.direction=minimize"]),
                     "--n-trials", "2")
    assert out.returncode == 2 and "ranks trials by eval_accuracy (maximize)" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr
    study = optuna.load_study(study_name=None, storage=f"sqlite:///{d / 'study.db'}")
    assert len(study.trials) == 1 and study.user_attrs["lmtune.metric"] == "eval_accuracy"


def test_going_on_with_a_study_on_another_evaluation_grid_is_refused(tiny_model: Path, tiny_csv: Path,
                                                                     tmp_path: Path) -> None:
    """A study evaluated every 3 steps of 16 cannot go on every 2 (its rungs and curves would mix two units): the
    error names the eval_every that goes on with it, before anything trains; with it the study goes on."""
    d = tmp_path / "grid"
    base = [*tiny_overrides(tiny_model, tiny_csv, d), "training.max_steps=6", "search.strategy=random"]
    Tuner(load_config(QUICKSTART, base), n_trials=1, backend=SimulatedExecutor(workers=1)).run()
    with pytest.raises(ConfigError, match=r"every 48 training examples, this config every 32.*training.eval_every=3"):
        Tuner(load_config(QUICKSTART, [*base, "training.eval_every=2"]), n_trials=2,
              backend=SimulatedExecutor(workers=1)).run()
    study = optuna.load_study(study_name=None, storage=f"sqlite:///{d / 'study.db'}")
    assert len(study.trials) == 1 and study.user_attrs["lmtune.examples_per_unit"] == 48
    Tuner(load_config(QUICKSTART, [*base, "training.eval_every=3"]), n_trials=2,
          backend=SimulatedExecutor(workers=1)).run()
    assert len(optuna.load_study(study_name=None, storage=f"sqlite:///{d / 'study.db'}").trials) == 2


def test_a_study_recorded_before_the_unit_was_kept_reads_it_from_study_json(tiny_model: Path, tiny_csv: Path,
                                                                           tmp_path: Path) -> None:
    """Older studies kept the unit only in study.json: it is read from there (and a damaged study.json, which the
    run rewrites, names no grid rather than stopping the study)."""
    d = tmp_path / "old"
    base = [*tiny_overrides(tiny_model, tiny_csv, d), "training.max_steps=6", "search.strategy=random"]
    Tuner(load_config(QUICKSTART, base), n_trials=1, backend=SimulatedExecutor(workers=1)).run()
    url = f"sqlite:///{d / 'study.db'}"
    optuna.load_study(study_name=None, storage=url).set_user_attr("lmtune.examples_per_unit", None)  # as before
    assert json.loads((d / META_FILE).read_text())["examples_per_unit"] == 48
    with pytest.raises(ConfigError, match=r"every 48 training examples, this config every 32"):
        Tuner(load_config(QUICKSTART, [*base, "training.eval_every=2"]), n_trials=2,
              backend=SimulatedExecutor(workers=1)).run()
    (d / META_FILE).write_text("{not json")
    Tuner(load_config(QUICKSTART, [*base, "training.eval_every=2"]), n_trials=2,
          backend=SimulatedExecutor(workers=1)).run()
    study = optuna.load_study(study_name=None, storage=url)
    assert len(study.trials) == 2 and study.user_attrs["lmtune.examples_per_unit"] == 32
    assert json.loads((d / META_FILE).read_text())["examples_per_unit"] == 32  # rewritten
