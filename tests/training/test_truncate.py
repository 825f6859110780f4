"""Truncating tiny BERT, Llama, Qwen2 and GPT-2 models to their first k blocks."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    BertConfig,
    BertForSequenceClassification,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from lmtune.training.truncate import find_blocks, truncate_layers

IDS = torch.tensor([[3, 4, 5, 6, 7, 8, 9, 10], [11, 12, 13, 14, 15, 16, 17, 18]])
COMMON = {"vocab_size": 100, "hidden_size": 64, "num_hidden_layers": 3, "num_attention_heads": 2,
          "intermediate_size": 128, "max_position_embeddings": 64}


def tiny_bert() -> PreTrainedModel:
    return BertForSequenceClassification(BertConfig(**COMMON, num_labels=2))


def tiny_llama() -> PreTrainedModel:
    return LlamaForCausalLM(LlamaConfig(**COMMON, num_key_value_heads=2))


def tiny_qwen2() -> PreTrainedModel:  # a Llama-style config that carries layer_types
    return Qwen2ForCausalLM(Qwen2Config(**COMMON, num_key_value_heads=2))


def tiny_gpt2() -> PreTrainedModel:
    return GPT2LMHeadModel(GPT2Config(vocab_size=100, n_embd=64, n_layer=3, n_head=2, n_positions=64))


CAUSAL = [tiny_llama, tiny_qwen2, tiny_gpt2]


def loss_of(model: torch.nn.Module) -> torch.Tensor:
    if isinstance(model, BertForSequenceClassification):
        return model(input_ids=IDS, labels=torch.tensor([0, 1])).loss
    return model(input_ids=IDS, labels=IDS).loss


@pytest.mark.parametrize("build", [tiny_bert, *CAUSAL])
def test_truncated_model_has_k_blocks_and_trains(build: Callable[[], PreTrainedModel]) -> None:
    torch.manual_seed(0)
    model = truncate_layers(build(), 2)
    assert len(find_blocks(model)[2]) == 2
    assert model.config.num_hidden_layers == 2
    if getattr(model.config, "layer_types", None) is not None:
        assert len(model.config.layer_types) == 2
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    first = loss_of(model)
    for _ in range(5):
        opt.zero_grad()
        loss_of(model).backward()
        opt.step()
    with torch.no_grad():
        model.eval()
        assert loss_of(model).item() < first.item()


@pytest.mark.parametrize("build", [tiny_bert, *CAUSAL])
def test_save_load_round_trip(build: Callable[[], PreTrainedModel], tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = truncate_layers(build(), 1).eval()
    model.save_pretrained(tmp_path)
    auto = AutoModelForSequenceClassification if isinstance(model, BertForSequenceClassification) \
        else AutoModelForCausalLM
    loaded = auto.from_pretrained(tmp_path).eval()
    assert len(find_blocks(loaded)[2]) == 1
    with torch.no_grad():
        torch.testing.assert_close(loaded(input_ids=IDS).logits, model(input_ids=IDS).logits)


def test_generate_after_truncation_uses_a_consistent_cache() -> None:
    torch.manual_seed(0)
    model = truncate_layers(tiny_qwen2(), 2).eval()
    out = model.generate(IDS[:1], max_new_tokens=3, do_sample=False, pad_token_id=0)
    assert out.shape == (1, IDS.shape[1] + 3)


def test_truncating_to_full_depth_keeps_the_model() -> None:
    model = tiny_gpt2()
    assert truncate_layers(model, 3) is model and model.config.n_layer == 3


def test_errors_name_the_model_class() -> None:
    with pytest.raises(ValueError, match="between 1 and 3 for LlamaForCausalLM"):
        truncate_layers(tiny_llama(), 0)
    with pytest.raises(ValueError, match="between 1 and 3 for GPT2LMHeadModel"):
        truncate_layers(tiny_gpt2(), 4)
    with pytest.raises(ValueError, match="blocks of Sequential"):
        truncate_layers(torch.nn.Sequential(torch.nn.Linear(2, 2)), 1)


@pytest.mark.parametrize("build", [tiny_bert, tiny_qwen2, tiny_gpt2], ids=["bert", "qwen2", "gpt2"])
def test_loading_only_the_kept_blocks_gives_the_weights_of_load_then_truncate(
        build: Callable[[], PreTrainedModel], tmp_path: Path) -> None:
    """A proxy trial's loader builds the k-block model from the config and reads only those blocks: every
    weight it has equals the full model's after truncation, and it has no others."""
    from lmtune.training.models import load_causal_lm, load_classifier

    build().save_pretrained(tmp_path)
    if build is tiny_bert:
        def load(**kw: object) -> PreTrainedModel:
            return load_classifier(str(tmp_path), num_labels=2, dropout=None, attention_dropout=None, **kw)
    else:
        def load(**kw: object) -> PreTrainedModel:
            return load_causal_lm(str(tmp_path), dropout=None, attention_dropout=None, **kw)
    torch.manual_seed(0)
    cut = truncate_layers(load(), 2)
    torch.manual_seed(0)
    direct = load(num_layers=2)
    assert len(find_blocks(direct)[2]) == 2 and direct.config.num_hidden_layers == 2
    assert direct.lmtune_checkpoint_blocks == 3
    want, got = cut.state_dict(), direct.state_dict()
    assert want.keys() == got.keys()
    for name in want:
        assert torch.equal(want[name], got[name]), name
    out = direct(input_ids=IDS).logits
    assert torch.equal(out, cut(input_ids=IDS).logits)


def test_the_loader_leaves_a_depth_the_model_lacks_to_truncate_layers(tmp_path: Path) -> None:
    from lmtune.training.models import load_classifier

    tiny_bert().save_pretrained(tmp_path)
    net = load_classifier(str(tmp_path), num_labels=2, dropout=None, attention_dropout=None, num_layers=7)
    assert len(find_blocks(net)[2]) == 3  # untouched: truncate_layers then refuses 7 with the valid range
    with pytest.raises(ValueError, match="between 1 and 3"):
        truncate_layers(net, 7)
