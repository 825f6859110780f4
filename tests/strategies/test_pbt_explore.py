"""PBT's explore step: every configuration it makes is inside the space; immutable parameters never move."""

from __future__ import annotations

import random
from typing import Any

import pytest

from lmtune.space import CategoricalParam, FloatParam, IntParam, Space
from lmtune.strategies.explore import complete_config, effective_mutable, explore, perturb

SPACE = Space((
    CategoricalParam(name="optimizer", choices=("adamw", "sgd", "adafactor"), mutable=True),
    FloatParam(name="momentum", low=0.8, high=0.99, when={"optimizer": ("sgd",)}),  # mutable by default
    FloatParam(name="beta2", low=0.9, high=0.999, when={"optimizer": ("adamw",)}, mutable=True),
    FloatParam(name="learning_rate", low=1e-6, high=1e-2, log=True),
    FloatParam(name="weight_decay", low=0.0, high=0.3, step=0.01),
    IntParam(name="warmup_steps", low=0, high=13, step=5, mutable=True),  # 13 is off the step grid
    IntParam(name="grad_accum", low=1, high=8, mutable=True),
    IntParam(name="eval_batch", low=8, high=256, log=True, mutable=True),
    CategoricalParam(name="precision", choices=("fp32", "bf16")),  # immutable, parent of a mutable child
    FloatParam(name="loss_scale", low=1.0, high=1024.0, log=True, when={"precision": ("fp32",)},
               mutable=True),
    IntParam(name="lora_r", low=2, high=64, log=True),  # immutable by default
))
IMMUTABLE = {"precision", "lora_r"}


def assert_in_space(space: Space, config: dict[str, Any]) -> None:
    """Independent oracle: exactly the active parameters, each with a value of the right type on its grid."""
    active: dict[str, Any] = {}
    for p in space:
        if p.active(active):
            assert p.name in config, f"active parameter {p.name} missing from {config}"
            active[p.name] = config[p.name]
            assert p.contains(config[p.name]), f"{p.name}={config[p.name]!r} outside {p}"
            if isinstance(p, IntParam):
                assert (config[p.name] - p.low) % p.step == 0, f"{p.name}={config[p.name]} off the step grid"
    assert set(config) == set(active), f"inactive parameters present: {set(config) - set(active)}"


def test_default_mutable_set_follows_param_flags() -> None:
    assert effective_mutable(SPACE, None) == frozenset(SPACE.names) - IMMUTABLE


def test_parent_of_an_immutable_parameter_is_immutable() -> None:
    space = Space((
        CategoricalParam(name="use_lora", choices=(True, False), mutable=True),
        IntParam(name="lora_r", low=2, high=64, when={"use_lora": (True,)}, mutable=False),
        FloatParam(name="learning_rate", low=1e-5, high=1e-3, log=True),
    ))
    assert effective_mutable(space, None) == {"learning_rate"}
    assert effective_mutable(space, frozenset({"use_lora", "learning_rate"})) == {"learning_rate"}
    with pytest.raises(ValueError, match="not in the search space"):
        effective_mutable(space, frozenset({"batch_size"}))


@pytest.mark.parametrize("probability", [0.0, 0.25, 1.0])
@pytest.mark.parametrize("factors", [(0.8, 1.2), (0.01, 100.0)])
def test_explore_stays_in_space_and_keeps_immutables(probability: float,
                                                     factors: tuple[float, float]) -> None:
    mutable = effective_mutable(SPACE, None)
    for seed in range(150):
        rng = random.Random(seed)
        config = complete_config(SPACE, None, rng)
        assert_in_space(SPACE, config)
        for _ in range(10):
            new = explore(SPACE, config, mutable=mutable, rng=rng, resample_probability=probability,
                          perturb_factors=factors)
            assert_in_space(SPACE, new)
            assert {k: new.get(k) for k in IMMUTABLE} == {k: config.get(k) for k in IMMUTABLE}
            config = new


def test_conditional_children_appear_and_disappear_with_their_parent() -> None:
    mutable, seen = effective_mutable(SPACE, None), set()
    for seed in range(300):
        rng = random.Random(seed)
        old = complete_config(SPACE, None, rng)
        new = explore(SPACE, old, mutable=mutable, rng=rng, resample_probability=0.5,
                      perturb_factors=(0.8, 1.2))
        if old["optimizer"] != new["optimizer"]:
            seen.add((old["optimizer"], new["optimizer"]))
            assert ("momentum" in new) == (new["optimizer"] == "sgd")
            assert ("beta2" in new) == (new["optimizer"] == "adamw")
    assert {("sgd", "adamw"), ("adamw", "sgd"), ("sgd", "adafactor")} <= seen


def test_nothing_moves_without_mutable_parameters() -> None:
    rng = random.Random(0)
    config = complete_config(SPACE, None, rng)
    assert explore(SPACE, config, mutable=frozenset(), rng=rng, resample_probability=1.0,
                   perturb_factors=(0.5, 2.0)) == config


def test_perturb_moves_numbers_by_a_factor_and_clamps() -> None:
    lr = FloatParam(name="learning_rate", low=1e-5, high=1e-3, log=True)
    values = {perturb(lr, 1e-4, rng=random.Random(s), factors=(0.8, 1.2)) for s in range(50)}
    assert sorted(values) == pytest.approx([0.8e-4, 1.2e-4])
    assert perturb(lr, 1e-3, rng=random.Random(1), factors=(1.5, 1.5)) == 1e-3
    small = IntParam(name="grad_accum", low=1, high=8)
    assert perturb(small, 3, rng=random.Random(0), factors=(1.2, 1.2)) == 4  # 3 * 1.2 rounds back to 3
    assert perturb(small, 3, rng=random.Random(0), factors=(0.8, 0.8)) == 2
    assert perturb(small, 8, rng=random.Random(0), factors=(1.2, 1.2)) == 8


def test_categorical_perturb_moves_to_a_neighbour_or_stays() -> None:
    p = CategoricalParam(name="scheduler", choices=("constant", "linear", "cosine", "polynomial"))
    moves = {perturb(p, "linear", rng=random.Random(s), factors=(0.8, 1.2)) for s in range(100)}
    assert moves == {"constant", "linear", "cosine"}
    assert {perturb(p, "constant", rng=random.Random(s), factors=(0.8, 1.2)) for s in range(100)} == {
        "constant", "linear"}


def test_complete_config_takes_fixed_values_that_fit_and_fills_the_rest() -> None:
    fixed = {"optimizer": "sgd", "momentum": 0.9, "beta2": 0.95, "learning_rate": 1.0, "lora_r": 8}
    config = complete_config(SPACE, fixed, random.Random(0))
    assert_in_space(SPACE, config)
    assert config["optimizer"] == "sgd" and config["momentum"] == 0.9 and config["lora_r"] == 8
    assert "beta2" not in config  # inactive under sgd
    assert config["learning_rate"] != 1.0  # outside the space: drawn instead
