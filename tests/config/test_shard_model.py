"""``execution.shard_model`` is refused when the config is read wherever it could not run: one process per
trial, a script trial (it shards itself), fp16 (no sharded loss scaling)."""

from __future__ import annotations

import pytest

from lmtune.config import load_config
from lmtune.errors import ConfigError

TWO = ["execution.processes_per_trial=2", "execution.shard_model=true"]


def test_two_processes_may_shard_the_model() -> None:
    cfg = load_config(None, TWO)
    assert cfg.execution.shard_model and cfg.execution.trial_processes == 2


@pytest.mark.parametrize(("overrides", "expect"), [
    (["execution.shard_model=true"], "sharding needs 2 or more processes per trial"),
    ([*TWO, "training.precision=fp16"], "fp16 with execution.shard_model"),
    (["execution.gpus_per_trial=2", "execution.shard_model=true", "task.type=script",
      "task.command=[python, t.py]", "task.train_size=8", "task.metrics=[eval_accuracy]"],
     "a script shards its model itself"),
])
def test_shard_model_is_refused_where_it_cannot_run(overrides: list[str], expect: str) -> None:
    with pytest.raises(ConfigError, match=expect):
        load_config(None, overrides)
