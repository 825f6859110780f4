"""search.practice_prior: auto searches the learning rate where fine-tuning practice puts it, within the range
written; turned off (or for another strategy, unless turned on) the range is searched as written."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from conftest import run_lmtune, set_args, tiny_overrides
from lmtune.space import CategoricalParam, FloatParam, Space
from lmtune.strategies import practice_space

QUICKSTART = str(Path(__file__).parents[2] / "examples" / "quickstart.yaml")


def lr_space(low: float, high: float, *, log: bool = True) -> Space:
    return Space((FloatParam("learning_rate", low=low, high=high, log=log),
                  CategoricalParam("batch_size", choices=(8, 16))))


def test_the_users_range_is_cut_to_full_fine_tuning_practice() -> None:
    space, narrowed = practice_space(lr_space(1e-6, 1e-3), {"learning_rate": 5e-5}, lora=False)
    lr = space.get("learning_rate")
    assert isinstance(lr, FloatParam) and (lr.low, lr.high, lr.log) == (1e-5, 5e-4, True)
    assert space.get("batch_size") == CategoricalParam("batch_size", choices=(8, 16))  # the rest as written
    assert narrowed is not None and narrowed.written == (1e-6, 1e-3) and narrowed.searched == (1e-5, 5e-4)
    assert "[1e-05, 0.0005] of the [1e-06, 0.001] written" in narrowed.describe()


def test_lora_practice_is_about_ten_times_higher() -> None:
    space, narrowed = practice_space(lr_space(1e-6, 1e-2), {"learning_rate": 2e-4}, lora=True)
    lr = space.get("learning_rate")
    assert isinstance(lr, FloatParam) and (lr.low, lr.high) == (5e-5, 5e-3)
    assert narrowed is not None and "LoRA" in narrowed.reason


def test_the_default_learning_rate_stays_searchable() -> None:
    space, _ = practice_space(lr_space(1e-6, 1e-2), {"learning_rate": 2e-3}, lora=False)
    lr = space.get("learning_rate")
    assert isinstance(lr, FloatParam) and (lr.low, lr.high) == (1e-5, 2e-3)


@pytest.mark.parametrize(("low", "high"), [(2e-5, 1e-4), (1e-2, 1e-1)])
def test_a_range_within_practice_or_apart_from_it_is_searched_as_written(low: float, high: float) -> None:
    written = lr_space(low, high)
    space, narrowed = practice_space(written, {"learning_rate": 5e-5}, lora=False)
    assert space is written and narrowed is None


def test_a_space_without_a_float_learning_rate_is_left_alone() -> None:
    written = Space((CategoricalParam("learning_rate", choices=(1e-5, 1e-3)),))
    assert practice_space(written, {}, lora=False) == (written, None)


def sampled_learning_rates(tiny_model: Path, tiny_csv: Path, folder: Path, *more: str) -> list[float]:
    from lmtune.config import load_config
    from lmtune.execution.simulated import SimulatedExecutor
    from lmtune.study.record import read
    from lmtune.tuner.search import Tuner

    over = [*tiny_overrides(tiny_model, tiny_csv, folder), "search.include_default=false", *more]
    summary = Tuner(load_config(QUICKSTART, over), n_trials=24, backend=SimulatedExecutor(workers=1)).run()
    return [float(read(t).config["learning_rate"]) for t in summary.study.trials]


def test_auto_draws_learning_rates_only_where_practice_puts_them_unless_turned_off(
        tiny_model: Path, tiny_csv: Path, tmp_path: Path) -> None:
    """The tiny space writes 1e-6..1e-3 (the default 1e-3): auto draws within 1e-5..1e-3, the same study with
    the prior off draws below 1e-5 too (a third of the log range), and random draws within it once turned on."""
    auto = sampled_learning_rates(tiny_model, tiny_csv, tmp_path / "auto", "search.strategy=auto")
    off = sampled_learning_rates(tiny_model, tiny_csv, tmp_path / "off", "search.strategy=auto",
                                 "search.practice_prior=false")
    rnd = sampled_learning_rates(tiny_model, tiny_csv, tmp_path / "rnd", "search.strategy=random",
                                 "search.practice_prior=true")
    assert len(auto) >= 8 and all(1e-5 <= x <= 1e-3 for x in auto)
    assert all(1e-5 <= x <= 1e-3 for x in rnd) and len({round(math.log10(x), 3) for x in rnd}) == len(rnd)
    assert any(x < 1e-5 for x in off)


@pytest.mark.slow
def test_auto_says_what_it_narrowed_and_records_it(tiny_model: Path, tiny_csv: Path, tmp_path: Path) -> None:
    out = run_lmtune("tune", QUICKSTART, *set_args([*tiny_overrides(tiny_model, tiny_csv, tmp_path),
                                                    "search.strategy=auto"]), "--n-trials", "1")
    assert out.returncode == 0, out.stderr
    assert "search.practice_prior: learning_rate searched in [1e-05, 0.001] of the [1e-06, 0.001] written" \
        in out.stdout + out.stderr
    from lmtune.study import load_study

    study, _ = load_study(tmp_path)
    assert study.user_attrs["lmtune.practice_prior"] == {"name": "learning_rate", "written": [1e-6, 1e-3],
                                                         "searched": [1e-5, 1e-3]}


def test_grid_and_pbt_refuse_the_prior_before_anything_runs(tmp_path: Path) -> None:
    out = run_lmtune("tune", QUICKSTART, *set_args([f"study.dir={tmp_path}", "search.strategy=grid",
                                                    "search.practice_prior=true"]))
    assert out.returncode == 2 and "search.practice_prior" in out.stderr and "Traceback" not in out.stderr


def test_a_study_started_without_the_prior_resumes_with_it(tiny_model: Path, tiny_csv: Path, tmp_path: Path) -> None:
    """A study begun with the learning rate searched as written (lmtune before the prior, or the prior off)
    goes on under auto's narrowed range: its earlier trials stay, and the new ones draw inside the range."""
    from lmtune.config import load_config
    from lmtune.execution.simulated import SimulatedExecutor
    from lmtune.study.record import read
    from lmtune.tuner.search import Tuner

    over = [*tiny_overrides(tiny_model, tiny_csv, tmp_path), "search.strategy=auto", "search.include_default=false"]
    Tuner(load_config(QUICKSTART, [*over, "search.practice_prior=false"]), n_trials=6,
          backend=SimulatedExecutor(workers=1)).run()
    summary = Tuner(load_config(QUICKSTART, over), n_trials=12, backend=SimulatedExecutor(workers=1)).run()
    trials = summary.study.trials
    assert len(trials) >= 12 and all(t.state.name in ("COMPLETE", "PRUNED") for t in trials)
    assert all(1e-5 <= float(read(t).config["learning_rate"]) <= 1e-3 for t in trials[6:])


@pytest.mark.parametrize("name", ["classification", "full-finetune", "lora-sft"])
def test_no_built_in_preset_is_narrowed(name: str) -> None:
    """The presets' learning-rate ranges (each citing its sources) lie within practice's, so a preset searched
    by auto is searched as the preset says."""
    from lmtune.space.build import build_space, preset

    raw = preset(name)
    space = build_space(raw)
    lora = "lora_r" in raw
    assert practice_space(space, {}, lora=lora) == (space, None)
