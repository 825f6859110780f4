"""Every value is checked before any training: the space's values against their training fields, booleans
never read as numbers, the metric against what the task reports and the direction against the metric,
conditions that can never hold, PBT's mutable names, preset names (never paths)."""

from pathlib import Path

import pytest

from lmtune.config import load_config
from lmtune.errors import ConfigError

EXAMPLE = Path(__file__).parents[2] / "examples" / "quickstart.yaml"


@pytest.mark.parametrize("override, message", [
    ("search.space={optimizer: [adamw, lion]}", "'lion' is not a valid training.optimizer"),
    ("search.space={batch_size: [0, 8]}", "0 is not a valid training.batch_size"),
    ("search.space={dropout: {type: float, low: 0.1, high: 1.0}}", "1.0 is not a valid training.dropout"),
    ("search.space={learning_rate: {type: float, low: -1, high: 1}}", "is not a valid training.learning_rate"),
    ("search.space={warmup_ratio: [0.1, 2]}", "2 is not a valid training.warmup_ratio"),
    ("search.space={batch_size: [true, 8]}", "true is a boolean"),
    ("execution.workers=true", "workers: true is a boolean"),
    ("task.train_size=false", "train_size: false is a boolean"),
    ("study.direction=minimize", "'eval_accuracy' is better when higher; set study.direction: maximize"),
    ("study.metric=eval_loss", "'eval_loss' is better when lower; set study.direction: minimize"),
    ("study.metric=eval_bleu", "'eval_bleu' is not reported for task.type classification"),
    ("search.space={optimizer: [adamw, sgd], momentum: {type: float, low: 0.5, high: 0.9, "
     "when: {optimizer: [rmsprop]}}}", "can never hold"),
    ("search.preset=../../../../etc/x", "unknown preset '../../../../etc/x'"),
])
def test_a_value_the_run_cannot_use_is_refused_with_its_field(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("[", r"\[")):
        load_config(EXAMPLE, [override])


def test_pbt_may_only_change_what_it_searches() -> None:
    with pytest.raises(ConfigError, match="'foo' is not in the search space"):
        load_config(EXAMPLE, ["search.strategy=pbt", "search.pbt.mutable=[foo]"])


@pytest.mark.parametrize("override", [
    "search.pbt.mutable=[learning_rate, batch_size]",
    "search.space={layer_decay: {type: float, low: 0.7, high: 1.0, mutable: true}}",
])
def test_pbt_may_not_change_what_a_running_trial_fixes(override: str) -> None:
    with pytest.raises(ConfigError, match=r"PBT cannot change (batch_size|layer_decay) of a running trial"):
        load_config(EXAMPLE, ["search.strategy=pbt", override])
    load_config(EXAMPLE, ["search.strategy=pbt",  # searched, not mutable: each member keeps its own
                          "search.space={layer_decay: {type: float, low: 0.7, high: 1.0}}"])


@pytest.mark.parametrize("override", [
    "search.space={optimizer: [adamw, sgd], momentum: {type: float, low: 0.5, high: 0.9, when: {optimizer: [sgd]}}}",
    "search.space={max_steps: [null, 50]}",
    "search.space={lora_enabled: [true, false]}",
    "search.preset=classification",
    "study.metric=eval_f1",
])
def test_values_the_run_can_use_still_load(override: str) -> None:
    load_config(EXAMPLE, [override])


def test_duplicate_keys_and_binary_files_are_refused(tmp_path: Path) -> None:
    dup = tmp_path / "dup.yaml"
    dup.write_text("training:\n  learning_rate: 1e-4\n  learning_rate: 1e-3\n")
    with pytest.raises(ConfigError, match="the key 'learning_rate' is given twice"):
        load_config(dup)
    merged = tmp_path / "merged.yaml"  # a merge key's values may be overridden: that is what merging is for
    merged.write_text("base: &b {learning_rate: 1e-4, batch_size: 8}\ntraining:\n  <<: *b\n  batch_size: 16\n"
                      "study: {name: m}\n".replace("base: &b", "x-base: &b"))
    with pytest.raises(ConfigError, match="x-base"):  # an unknown top-level key, not a duplicate
        load_config(merged)
    binary = tmp_path / "model.bin"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00")
    with pytest.raises(ConfigError, match="not a text file"):
        load_config(binary)


def test_an_alias_bomb_is_refused_before_it_expands(tmp_path: Path) -> None:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match="alias bomb"):  # (expanded, it is 9**9 strings: minutes, gigabytes)
        load_config(bomb)
