"""Layer-wise LR decay groups on tiny BERT, Llama and GPT-2 models."""

from __future__ import annotations

import re

import pytest
import torch
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
)

from lmtune.training.llrd import LayerDecayError, build_param_groups, count_layers

LR, WD, DECAY = 1e-3, 0.01, 0.5


def tiny_bert() -> BertForSequenceClassification:
    cfg = BertConfig(vocab_size=100, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=128, max_position_embeddings=64, num_labels=2)
    return BertForSequenceClassification(cfg)


def tiny_llama(tie: bool = True) -> LlamaForCausalLM:
    cfg = LlamaConfig(vocab_size=100, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                      num_key_value_heads=2, intermediate_size=128, max_position_embeddings=64,
                      tie_word_embeddings=tie)
    return LlamaForCausalLM(cfg)


def tiny_gpt2() -> GPT2LMHeadModel:
    return GPT2LMHeadModel(GPT2Config(vocab_size=100, n_embd=64, n_layer=2, n_head=2, n_positions=64))


def lr_by_name(model: torch.nn.Module, groups: list[dict]) -> dict[str, tuple[float, float]]:
    """Map each parameter name to (lr, weight_decay) of the group holding it."""
    by_id = {id(p): (g["lr"], g["weight_decay"]) for g in groups for p in g["params"]}
    return {n: by_id[id(p)] for n, p in model.named_parameters() if id(p) in by_id}


def assert_each_param_once(model: torch.nn.Module, groups: list[dict]) -> None:
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids))
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert set(ids) == trainable


def expected_lr(name: str, kinds: dict[str, str], num_layers: int = 2) -> float:
    """The documented rate: head lr, block i lr*d**(L-1-i), embeddings lr*d**L."""
    kind = next(k for prefix, k in kinds.items() if name.startswith(prefix))
    if kind == "embed":
        return LR * DECAY ** num_layers
    if kind == "head":
        return LR
    block = int(re.search(r"\.(\d+)\.", name).group(1))  # type: ignore[union-attr]
    return LR * DECAY ** (num_layers - 1 - block)


def check_rates(model: torch.nn.Module, kinds: dict[str, str]) -> None:
    groups = build_param_groups(model, lr=LR, weight_decay=WD, layer_decay=DECAY)
    assert_each_param_once(model, groups)
    params = dict(model.named_parameters())
    for name, (lr, wd) in lr_by_name(model, groups).items():
        assert lr == pytest.approx(expected_lr(name, kinds)), name
        assert wd == (0.0 if params[name].ndim == 1 else WD), name


def test_bert_rates() -> None:
    model = tiny_bert()
    assert count_layers(model) == 2
    check_rates(model, {"bert.embeddings.": "embed", "bert.encoder.layer.": "block",
                        "bert.pooler.": "head", "classifier.": "head"})


def test_llama_rates_tied_and_untied() -> None:
    for tie in (True, False):
        model = tiny_llama(tie)
        check_rates(model, {"model.embed_tokens.": "embed", "model.layers.": "block",
                            "model.norm.": "head", "lm_head.": "head"})
    tied = tiny_llama(True)
    assert tied.lm_head.weight is tied.model.embed_tokens.weight
    groups = build_param_groups(tied, lr=LR, weight_decay=WD, layer_decay=DECAY)
    holders = [g["name"] for g in groups for p in g["params"] if p is tied.lm_head.weight]
    assert holders == ["embeddings.decay"]


def test_gpt2_rates() -> None:
    model = tiny_gpt2()
    assert count_layers(model) == 2
    check_rates(model, {"transformer.wte.": "embed", "transformer.wpe.": "embed",
                        "transformer.h.": "block", "transformer.ln_f.": "head"})


def test_group_names_and_ordering() -> None:
    groups = build_param_groups(tiny_bert(), lr=LR, weight_decay=WD, layer_decay=DECAY)
    names = [g["name"] for g in groups]
    assert set(names[:2]) == {"embeddings.decay", "embeddings.no_decay"}
    assert {"block.0.decay", "block.1.no_decay", "head.decay", "head.no_decay"} <= set(names)
    assert [g["lr"] for g in groups] == sorted(g["lr"] for g in groups)


def test_no_decay_for_biases_and_norms() -> None:
    model = tiny_llama()
    groups = build_param_groups(model, lr=LR, weight_decay=WD, layer_decay=DECAY)
    rates = lr_by_name(model, groups)
    assert rates["model.layers.0.input_layernorm.weight"][1] == 0.0
    assert rates["model.norm.weight"][1] == 0.0
    assert rates["model.layers.1.mlp.up_proj.weight"][1] == WD
    bert = tiny_bert()
    rates = lr_by_name(bert, build_param_groups(bert, lr=LR, weight_decay=WD, layer_decay=DECAY))
    assert rates["bert.encoder.layer.0.attention.self.query.bias"][1] == 0.0
    assert rates["bert.embeddings.LayerNorm.weight"] == (pytest.approx(LR * DECAY**2), 0.0)


def test_frozen_params_are_left_out() -> None:
    model = tiny_bert()
    for p in model.bert.embeddings.parameters():
        p.requires_grad_(False)
    groups = build_param_groups(model, lr=LR, weight_decay=WD, layer_decay=DECAY)
    assert_each_param_once(model, groups)
    assert not any(g["name"].startswith("embeddings") for g in groups)


def test_decay_one_is_a_plain_split_for_any_model() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4), torch.nn.Linear(4, 2))
    groups = build_param_groups(model, lr=LR, weight_decay=WD)
    assert [g["name"] for g in groups] == ["decay", "no_decay"]
    assert all(g["lr"] == LR for g in groups)
    assert_each_param_once(model, groups)
    torch.optim.AdamW(groups)  # the "name" key is accepted by torch optimizers


def test_unmappable_model_raises() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 2))
    with pytest.raises(LayerDecayError, match=r"Sequential.*layer_decay: 1\.0"):
        build_param_groups(model, lr=LR, weight_decay=WD, layer_decay=0.8)
    with pytest.raises(ValueError, match="layer_decay"):
        build_param_groups(tiny_bert(), lr=LR, weight_decay=WD, layer_decay=0.0)


def test_lora_wrapped_model_uses_prefixed_names() -> None:
    from lmtune.training.lora import apply_lora

    model = apply_lora(tiny_bert(), r=2, alpha=4, dropout=0.0, target_modules=None,
                       task_type="classification")
    assert count_layers(model) == 2
    groups = build_param_groups(model, lr=LR, weight_decay=WD, layer_decay=DECAY)
    assert_each_param_once(model, groups)
    rates = lr_by_name(model, groups)
    name = "base_model.model.bert.encoder.layer.0.attention.self.query.lora_A.default.weight"
    assert rates[name] == (pytest.approx(LR * DECAY), WD)
    assert rates["base_model.model.classifier.modules_to_save.default.bias"] == (LR, 0.0)
