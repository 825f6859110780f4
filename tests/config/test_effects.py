"""A searched field that could not change what a trial does is refused when the config is validated."""

from __future__ import annotations

import pytest

from lmtune.config import load_config
from lmtune.errors import ConfigError


def space(text: str, *extra: str) -> list[str]:
    return [f"search.space={text}", *extra]


@pytest.mark.parametrize(("overrides", "expect"), [
    (space("{eval_every: [10, 20]}"), r"search\.space\.eval_every: cannot be searched.*training\.eval_every"),
    (space("{momentum: {type: float, low: 0.8, high: 0.99}}"),
     r"search\.space\.momentum: would change nothing: momentum is used by optimizer sgd only.*'adamw'"),
    (space("{beta1: [0.8, 0.9]}", "training.optimizer=sgd"), r"search\.space\.beta1: would change nothing"),
    (space("{nesterov: [true, false]}", "search.space.optimizer=[adamw, adam]"),
     r"search\.space\.nesterov.*optimizer is always 'adamw', 'adam'"),
    (space("{epochs: {type: int, low: 1, high: 3}}", "training.max_steps=10"),
     r"search\.space\.epochs: would change nothing: a fixed training\.max_steps wins over epochs"),
    (space("{early_stopping_min_delta: [0.0, 0.1]}"), r"early_stopping_patience is always None"),
    (space("{epochs: [1, 2]}", "search.strategy=pbt"), r"search\.space\.epochs: PBT members all train the same"),
])
def test_a_no_op_in_the_space_is_refused_with_the_fix(overrides: list[str], expect: str) -> None:
    with pytest.raises(ConfigError, match=expect):
        load_config(None, overrides)


@pytest.mark.parametrize("overrides", [
    space("{optimizer: [adamw, sgd], momentum: {type: float, low: 0.8, high: 0.99, when: {optimizer: sgd}}}"),
    space("{momentum: [0.8, 0.9]}", "training.optimizer=sgd"),
    space("{epochs: [1, 2], max_steps: [null, 50]}", "training.max_steps=10"),
    space("{early_stopping_min_delta: [0.0, 0.1]}", "training.early_stopping_patience=2"),
    space("{epochs: {type: int, low: 1, high: 3}}"),
])
def test_fields_that_take_effect_are_accepted(overrides: list[str]) -> None:
    load_config(None, overrides)
