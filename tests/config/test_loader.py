from pathlib import Path

import pytest

from lmtune.config import apply_overrides, load_config, parse_value
from lmtune.errors import ConfigError

EXAMPLE = Path(__file__).parents[2] / "examples" / "quickstart.yaml"


def test_quickstart_example_is_valid() -> None:
    cfg = load_config(EXAMPLE)
    assert cfg.study.metric == "eval_accuracy"
    assert cfg.search.space["learning_rate"] == {"type": "float", "low": 5e-5, "high": 5e-4, "log": True}
    from pydantic import ValidationError

    with pytest.raises(ValidationError):  # frozen
        cfg.study.seed = 3  # type: ignore[misc]


def test_set_overrides_parse_numbers_lists_and_nested_keys() -> None:
    cfg = load_config(EXAMPLE, ["training.learning_rate=1e-5", "training.batch_size=8",
                                "search.space.batch_size=[8, 16]", "study.dir=/tmp/x"])
    assert cfg.training.learning_rate == 1e-5 and cfg.training.batch_size == 8
    assert cfg.search.space["batch_size"] == [8, 16]
    assert parse_value("true") is True and parse_value("3") == 3 and parse_value("abc") == "abc"
    assert apply_overrides({}, ["a.b.c=1"]) == {"a": {"b": {"c": 1}}}


def test_unknown_key_names_field_line_and_valid_keys(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("study:\n  name: x\ntask:\n  modle: foo\n")
    with pytest.raises(ConfigError) as exc:
        load_config(bad)
    msg = str(exc.value)
    assert "task.modle" in msg and "line 4" in msg and "model" in msg


def test_wrong_type_names_field() -> None:
    with pytest.raises(ConfigError, match=r"training\.batch_size.*'many'"):
        load_config(EXAMPLE, ["training.batch_size=many"])


def test_missing_config_file() -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config("/nope/study.yaml")


def test_bad_set_syntax() -> None:
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        load_config(EXAMPLE, ["training.batch_size"])


def test_grid_refuses_continuous_dimension_without_values() -> None:
    with pytest.raises(ConfigError, match=r"search\.space\.learning_rate.*grid"):
        load_config(EXAMPLE, ["search.strategy=grid"])
    cfg = load_config(EXAMPLE, ["search.strategy=grid", "search.space.learning_rate.grid=[1e-5, 1e-4]",
                                "search.space.weight_decay.step=0.05",
                                "search.space.warmup_ratio.grid=[0.0, 0.1]"])
    assert cfg.search.strategy == "grid"


def test_space_name_must_be_a_training_field() -> None:
    with pytest.raises(ConfigError, match=r"search\.space\.learnin_rate.*not a training hyperparameter"):
        load_config(EXAMPLE, ["search.space.learnin_rate={type: float, low: 0.1, high: 1}"])


def test_loss_metric_needs_minimize() -> None:
    with pytest.raises(ConfigError, match="minimize"):
        load_config(EXAMPLE, ["study.metric=eval_loss"])
    assert load_config(EXAMPLE, ["study.metric=eval_loss", "study.direction=minimize"])


def test_prune_metric_must_be_reported_by_the_task() -> None:
    assert load_config(EXAMPLE, ["search.prune_metric=eval_loss"]).search.prune_metric == "eval_loss"
    with pytest.raises(ConfigError, match=r"search\.prune_metric: 'eval_perplexity' is not reported.*eval_loss"):
        load_config(EXAMPLE, ["search.prune_metric=eval_perplexity"])


def test_invalid_yaml(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("study: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
