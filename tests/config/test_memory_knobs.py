"""The memory knob ``training.packing`` is refused when the config is read wherever it could do nothing:
outside causal-LM chat data — fixed or searched."""

from __future__ import annotations

import pytest

from lmtune.config import load_config
from lmtune.errors import ConfigError

LM = ["task.type=causal_lm", "task.model=builtin:smollm2-135m", "task.dataset=builtin:chatterbot"]


def test_packing_is_accepted_for_chat_data_fixed_or_searched() -> None:
    assert load_config(None, [*LM, "training.packing=true"]).training.packing is True
    load_config(None, [*LM, "search.space={packing: [true, false]}"])


@pytest.mark.parametrize(("overrides", "expect"), [
    (["training.packing=true"], r"^training\.packing: packing lays causal-LM examples end to end; task\.type "
                                r"classification has none to pack .*; set training\.packing: false$"),
    (["search.space={packing: [true, false]}"], r"^search\.space\.packing: .*; remove search\.space\.packing$"),
    ([*LM, "task.dataset=builtin:hamlet", "training.packing=true"],
     r"^training\.packing: task\.dataset builtin:hamlet is plain text, which is cut into full blocks of "
     r"task\.max_length tokens: there is nothing to pack"),
])
def test_packing_that_could_do_nothing_is_refused(overrides: list[str], expect: str) -> None:
    with pytest.raises(ConfigError, match=expect):
        load_config(None, overrides)
