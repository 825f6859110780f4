"""LoRA through peft on tiny random models."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from peft import PeftModel
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    BertConfig,
    BertForSequenceClassification,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
)

from lmtune.training.lora import (
    apply_lora,
    default_target_modules,
    load_adapter,
    merge_and_save,
    save_adapter,
    trainable_parameter_count,
)


def tiny_bert(seed: int = 0) -> BertForSequenceClassification:
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=100, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=128, max_position_embeddings=64, num_labels=3)
    return BertForSequenceClassification(cfg).eval()


def tiny_llama(seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=100, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                      num_key_value_heads=2, intermediate_size=128, max_position_embeddings=64)
    return LlamaForCausalLM(cfg).eval()


def tiny_gpt2(seed: int = 0) -> GPT2LMHeadModel:
    torch.manual_seed(seed)
    return GPT2LMHeadModel(GPT2Config(vocab_size=100, n_embd=64, n_layer=2, n_head=2, n_positions=64)).eval()


BATCH = {"input_ids": torch.tensor([[5, 6, 7, 8, 9, 10], [11, 12, 13, 14, 15, 16]]),
         "attention_mask": torch.ones(2, 6, dtype=torch.long)}


def train_step(model: torch.nn.Module, **labels: torch.Tensor) -> None:
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.0)
    model(**BATCH, **labels).loss.backward()
    opt.step()
    model.eval()


def trainable_names(model: torch.nn.Module) -> list[str]:
    return [n for n, p in model.named_parameters() if p.requires_grad]


def test_default_targets_per_architecture() -> None:
    assert default_target_modules(tiny_bert()) == ["query", "key", "value", "dense"]
    assert default_target_modules(tiny_llama()) == ["q_proj", "k_proj", "v_proj", "o_proj"]
    assert default_target_modules(tiny_gpt2()) == ["c_attn", "c_proj"]
    with pytest.raises(ValueError, match="Linear layers"):
        default_target_modules(torch.nn.Sequential(torch.nn.Linear(2, 2)))


def test_classification_trains_only_adapters_and_head() -> None:
    model = apply_lora(tiny_bert(), r=4, alpha=8, dropout=0.0, target_modules=None,
                       task_type="classification")
    names = trainable_names(model)
    assert names and all("lora_" in n or ".modules_to_save." in n for n in names)
    assert any("classifier.modules_to_save" in n for n in names)
    trainable, total = trainable_parameter_count(model)
    assert 0 < trainable < total // 5
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    train_step(model, labels=torch.tensor([0, 2]))
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed and changed <= set(names)
    assert any("lora_B" in n for n in changed) and any("classifier" in n for n in changed)


def test_causal_lm_trains_only_adapters() -> None:
    for build in (tiny_llama, tiny_gpt2):
        model = apply_lora(build(), r=2, alpha=4.0, dropout=0.1, target_modules=None, task_type="causal_lm")
        names = trainable_names(model)
        assert names and all("lora_" in n for n in names)
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        train_step(model, labels=BATCH["input_ids"])
        changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
        assert changed and changed <= set(names)


def test_save_load_reproduces_logits(tmp_path: Path) -> None:
    model = apply_lora(tiny_bert(), r=4, alpha=8, dropout=0.0, target_modules=["query", "value"],
                       task_type="classification")
    train_step(model, labels=torch.tensor([1, 2]))
    with torch.no_grad():
        expected = model(**BATCH).logits
    folder = save_adapter(model, tmp_path / "adapter")
    assert {p.name for p in folder.iterdir()} >= {"adapter_config.json", "adapter_model.safetensors"}
    loaded = load_adapter(tiny_bert(), folder)
    assert isinstance(loaded, PeftModel) and not trainable_names(loaded)
    with torch.no_grad():
        assert torch.equal(loaded(**BATCH).logits, expected)
    base_logits = tiny_bert()(**BATCH).logits
    assert not torch.allclose(base_logits, expected)
    assert trainable_names(load_adapter(tiny_bert(), folder, is_trainable=True))


def test_merge_and_save_loads_without_peft(tmp_path: Path) -> None:
    model = apply_lora(tiny_llama(), r=4, alpha=8, dropout=0.0, target_modules=None, task_type="causal_lm")
    train_step(model, labels=BATCH["input_ids"])
    with torch.no_grad():
        expected = model(**BATCH).logits
    merge_and_save(model, tmp_path / "merged")
    plain = AutoModelForCausalLM.from_pretrained(tmp_path / "merged").eval()
    assert not any("lora" in n for n, _ in plain.named_parameters())
    with torch.no_grad():
        torch.testing.assert_close(plain(**BATCH).logits, expected, rtol=1e-4, atol=1e-5)


def test_merge_and_save_classification(tmp_path: Path) -> None:
    model = apply_lora(tiny_bert(), r=4, alpha=8, dropout=0.0, target_modules=None,
                       task_type="classification")
    train_step(model, labels=torch.tensor([0, 1]))
    with torch.no_grad():
        expected = model(**BATCH).logits
    merge_and_save(model, tmp_path / "merged")
    plain = AutoModelForSequenceClassification.from_pretrained(tmp_path / "merged").eval()
    with torch.no_grad():
        torch.testing.assert_close(plain(**BATCH).logits, expected, rtol=1e-4, atol=1e-5)


def test_bad_targets_name_missing_and_available() -> None:
    with pytest.raises(ValueError, match=r"\['q_proj'\] match no linear layer.*'query'"):
        apply_lora(tiny_bert(), r=4, alpha=8, dropout=0.0, target_modules=["query", "q_proj"],
                   task_type="classification")
    with pytest.raises(ValueError, match="task_type"):
        apply_lora(tiny_bert(), r=4, alpha=8, dropout=0.0, target_modules=None, task_type="seq2seq")
