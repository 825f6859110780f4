"""`search.prior_studies`: an earlier study's best configurations run first in a new study."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from conftest import run_lmtune, set_args, tiny_overrides
from lmtune.config import load_config
from lmtune.execution.simulated import SimulatedExecutor
from lmtune.tuner.search import Tuner

ROOT = Path(__file__).parents[2]
QUICKSTART = str(ROOT / "examples" / "quickstart.yaml")
SPACE = "search.space={learning_rate: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}}"


def _tune(overrides: list[str], n: int) -> None:
    Tuner(load_config(QUICKSTART, overrides), n_trials=n, backend=SimulatedExecutor(workers=1)).run()


def _study(d: Path) -> optuna.Study:
    return optuna.load_study(study_name=None, storage=f"sqlite:///{d / 'study.db'}")


def test_prior_studies_best_configurations_run_first_once(tiny_model: Path, tiny_csv: Path, tmp_path: Path) -> None:
    """Each run a new Tuner, as a re-run of ``lmtune tune`` is; trials on the simulated backend."""
    a, b = tmp_path / "a", tmp_path / "b"
    _tune([*tiny_overrides(tiny_model, tiny_csv, a), SPACE, "search.strategy=random"], 4)
    earlier = [t for t in _study(a).trials if t.state.name == "COMPLETE" and not t.user_attrs.get("is_default")]
    top2 = sorted(earlier, key=lambda t: (-(t.value or 0.0), t.number))[:2]
    sets = [*tiny_overrides(tiny_model, tiny_csv, b), SPACE, "search.strategy=random",
            f"search.prior_studies=[{a}]", "search.prior_top_k=2"]
    _tune(sets, 3)
    trials = _study(b).trials
    assert trials[0].user_attrs.get("is_default")  # the baseline stays trial 0
    assert [t.params for t in trials[1:3]] == [t.params for t in top2]
    assert [t.user_attrs["prior_trial"] for t in trials[1:3]] == [t.number for t in top2]
    assert trials[1].user_attrs["prior_study"] == str(a.resolve())
    _tune(sets, 4)  # resumed: not enqueued again
    trials = _study(b).trials
    assert len(trials) == 4 and "prior_trial" not in trials[3].user_attrs


@pytest.mark.slow
def test_a_prior_that_ranks_by_another_metric_or_is_missing_is_refused(tiny_model: Path, tiny_csv: Path,
                                                                       tmp_path: Path) -> None:
    a = tmp_path / "a"
    _tune([*tiny_overrides(tiny_model, tiny_csv, a), SPACE], 1)
    base = [*tiny_overrides(tiny_model, tiny_csv, tmp_path / "b"), SPACE]
    other = run_lmtune("tune", QUICKSTART, *set_args([*base, f"search.prior_studies=[{a}]", "study.metric=eval_loss",
                                                      "study.direction=minimize"]), "--n-trials", "1")
    assert other.returncode == 2 and "ranks trials by eval_accuracy" in other.stderr and "Traceback" not in other.stderr
    missing = run_lmtune("tune", QUICKSTART, *set_args([*base, f"search.prior_studies=[{tmp_path / 'nope'}]"]),
                         "--n-trials", "1")
    assert missing.returncode == 2 and "search.prior_studies" in missing.stderr
    assert "not an lmtune study" in missing.stderr
    assert not (tmp_path / "b" / "trials").exists()  # refused before any training
