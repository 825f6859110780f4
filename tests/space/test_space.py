import random

import optuna
import pytest

from lmtune.space import SpaceError, build_space, preset

RAW = {
    "learning_rate": {"type": "float", "low": 1e-5, "high": 1e-3, "log": True},
    "optimizer": ["adamw", "sgd"],
    "momentum": {"type": "float", "low": 0.8, "high": 0.99, "when": {"optimizer": "sgd"}, "grid": [0.9, 0.95]},
    "epochs": {"type": "int", "low": 1, "high": 3},
}


def test_conditional_parameter_only_suggested_when_active() -> None:
    space = build_space(RAW)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = {"adamw": 0, "sgd": 0}
    for _ in range(30):
        trial = study.ask()
        params = space.suggest(trial)
        seen[params["optimizer"]] += 1
        assert ("momentum" in params) == (params["optimizer"] == "sgd")
        assert ("momentum" in trial.params) == (params["optimizer"] == "sgd")
        study.tell(trial, 0.0)
    assert seen["adamw"] and seen["sgd"]


def test_sample_stays_in_bounds() -> None:
    space = build_space(RAW)
    rng = random.Random(1)
    for _ in range(200):
        s = space.sample(rng)
        assert 1e-5 <= s["learning_rate"] <= 1e-3 and s["epochs"] in (1, 2, 3)
        assert ("momentum" in s) == (s["optimizer"] == "sgd")


def test_grid_expands_conditionals_without_duplicates() -> None:
    space = build_space({k: v for k, v in RAW.items() if k != "learning_rate"})
    grid = space.grid()
    # adamw × 3 epochs + sgd × 2 momenta × 3 epochs
    assert len(grid) == 3 + 6
    assert len({tuple(sorted(g.items())) for g in grid}) == len(grid)
    assert all("momentum" not in g for g in grid if g["optimizer"] == "adamw")


def test_grid_refuses_continuous() -> None:
    with pytest.raises(SpaceError, match="learning_rate"):
        build_space(RAW).grid()


def test_float_step_gives_grid_values() -> None:
    space = build_space({"weight_decay": {"type": "float", "low": 0.0, "high": 0.1, "step": 0.05}})
    assert space.grid() == [{"weight_decay": 0.0}, {"weight_decay": 0.05}, {"weight_decay": 0.1}]


@pytest.mark.parametrize("spec, match", [
    ({"type": "float", "low": 1, "high": 0}, "greater than high"),
    ({"type": "float", "low": 0, "high": 1, "log": True}, "log scale needs low > 0"),
    ({"type": "categorical", "choices": []}, "non-empty"),
    ({"type": "normal"}, "expected one of"),
    ({"type": "float", "low": 0, "high": 1, "lo": 3}, "unknown key"),
])
def test_impossible_spaces_are_refused(spec: dict, match: str) -> None:
    with pytest.raises(SpaceError, match=match):
        build_space({"x": spec})


def test_condition_must_refer_to_an_earlier_parameter() -> None:
    with pytest.raises(SpaceError, match="listed before"):
        build_space({"momentum": {"type": "float", "low": 0, "high": 1, "when": {"optimizer": "sgd"}},
                     "optimizer": ["sgd"]})


def test_restrict_and_outside() -> None:
    space = build_space(RAW)
    defaults = {"learning_rate": 5e-5, "optimizer": "adamw", "momentum": 0.9, "epochs": 2}
    assert space.restrict(defaults) == {"learning_rate": 5e-5, "optimizer": "adamw", "epochs": 2}
    assert space.outside(defaults) == []
    assert space.outside({**defaults, "learning_rate": 1.0}) == ["learning_rate"]


def test_classification_preset_builds() -> None:
    space = build_space(preset("classification"))
    assert {"learning_rate", "batch_size", "momentum"} <= set(space.names)
    with pytest.raises(SpaceError, match="available"):
        preset("nope")


def test_clamp_and_sample_stay_on_the_step_grid_inside_bounds() -> None:
    from lmtune.space import FloatParam, IntParam

    p = IntParam(name="x", low=0, high=13, step=5)
    assert p.clamp(14) == 10 and p.clamp(-3) == 0 and p.clamp(7) == 5
    assert {p.sample(random.Random(s)) for s in range(50)} == {0, 5, 10}
    f = FloatParam(name="y", low=0.0, high=0.25, step=0.1)
    assert f.clamp(0.3) == pytest.approx(0.2) and f.clamp(0.04) == 0.0


def test_an_integral_float_default_lies_in_an_int_range_so_the_baseline_runs() -> None:
    """``training.epochs`` is a float field; ``epochs: int 1..4`` must still hold the default 1.0, or
    the default-settings trial (the study's baseline) would be skipped."""
    space = build_space({"epochs": {"type": "int", "low": 1, "high": 4}, "learning_rate": [1e-4, 1e-3]})
    assert space.outside({"epochs": 1.0, "learning_rate": 1e-4}) == []
    assert space.restrict({"epochs": 1.0, "learning_rate": 1e-4}) == {"epochs": 1, "learning_rate": 1e-4}
    assert space.outside({"epochs": 1.5, "learning_rate": 1e-4}) == ["epochs"]
    assert space.outside({"epochs": float("inf"), "learning_rate": 1e-4}) == ["epochs"]
