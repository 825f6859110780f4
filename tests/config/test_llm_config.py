"""Config rules for LLM studies: the LM metric default, LoRA fields, presets."""

from pathlib import Path

import pytest

from lmtune.config import load_config, resolved_space
from lmtune.errors import ConfigError
from lmtune.space import FloatParam


def test_causal_lm_study_is_judged_by_eval_loss_unless_told() -> None:
    cfg = load_config(None, ["task.type=causal_lm", "task.dataset=builtin:chatterbot"])
    assert (cfg.study.metric, cfg.study.direction) == ("eval_loss", "minimize")
    cfg = load_config(None, ["task.type=causal_lm", "study.metric=eval_perplexity", "study.direction=minimize"])
    assert cfg.study.metric == "eval_perplexity"
    with pytest.raises(ConfigError, match=r"study.metric: 'eval_accuracy' is not reported for task.type causal_lm"):
        load_config(None, ["task.type=causal_lm", "study.metric=eval_accuracy"])
    with pytest.raises(ConfigError, match=r"set study.direction: minimize"):
        load_config(None, ["task.type=causal_lm", "study.direction=maximize"])
    assert load_config(None).study.metric == "eval_accuracy"  # classification keeps its default


def test_lora_fields_are_real_searchable_training_fields() -> None:
    cfg = load_config(None, ["training.lora_enabled=true", "training.lora_target_modules=q_proj,v_proj",
                             "search.space={lora_r: [4, 8], lora_target_modules: ['q_proj,v_proj', q_proj]}"])
    assert cfg.training.lora_target_modules == "q_proj,v_proj"
    assert {p.name for p in resolved_space(cfg).params} == {"lora_r", "lora_target_modules"}
    with pytest.raises(ConfigError, match=r"training.lora_r"):
        load_config(None, ["training.lora_r=0"])
    with pytest.raises(ConfigError, match=r"search.space.lora_rank: not a training hyperparameter"):
        load_config(None, ["training.lora_enabled=true", "search.space={lora_rank: [4, 8]}"])
    with pytest.raises(ConfigError, match=r"set training.lora_enabled: true"):
        load_config(None, ["search.space={lora_r: [4, 8]}"])
    assert load_config(None, ["search.space={lora_enabled: [true, false], lora_r: [4, 8]}"])


@pytest.mark.parametrize("name", ["lora-sft", "full-finetune"])
def test_llm_presets_load(name: str) -> None:
    cfg = load_config(None, ["training.lora_enabled=true", f"search.preset={name}", "search.space={}"])
    space = {p.name: p for p in resolved_space(cfg).params}
    lr = space["learning_rate"]
    assert isinstance(lr, FloatParam) and lr.log
    if name == "lora-sft":
        assert {"lora_r", "lora_alpha", "lora_dropout"} <= set(space)
        assert 1e-4 >= lr.low >= 3e-5 and lr.high >= 3e-4
    else:
        assert lr.low == 1e-5 and lr.high == 5e-5 and "layer_decay" in space


def test_llm_micro_batch_size_and_chat_options() -> None:
    cfg = load_config(Path(__file__).parents[2] / "examples" / "lora-sft.yaml")
    assert cfg.task.type == "causal_lm" and cfg.task.assistant_only and cfg.training.micro_batch_size is None
    assert cfg.training.lora_enabled and cfg.study.metric == "eval_loss"
    with pytest.raises(ConfigError, match=r"training.micro_batch_size"):
        load_config(None, ["training.micro_batch_size=0"])
