"""LLM studies through the real command line on tiny models: a LoRA search on chat data reports
perplexity and exports its adapter; layer_decay and precision as searched hyperparameters."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from test_cli import QUICKSTART, ROOT, lmtune, sets, trials

from conftest import llm_overrides, tiny_overrides

LORA_SFT = str(ROOT / "examples" / "lora-sft.yaml")


@pytest.fixture(scope="module")
def lora_study(tiny_llama: Path, tiny_chat: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("lora") / "run"
    out = lmtune("tune", LORA_SFT, *sets(llm_overrides(tiny_llama, tiny_chat, d)), "--n-trials", "2")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "eval_loss" in out.stdout and "perplexity" in out.stdout  # metric defaults to eval_loss for LMs
    return d


@pytest.mark.slow
def test_lora_study_records_adapter_precision_and_perplexity(lora_study: Path) -> None:
    done = [t for t in trials(lora_study / "study.db") if t.state.name == "COMPLETE"]
    assert len(done) == 2 and done[0].user_attrs["is_default"]
    for t in done:
        assert t.params.keys() == {"learning_rate", "lora_r", "lora_alpha", "lora_dropout"}
        assert t.user_attrs["precision"] == "fp32" and t.user_attrs["micro_batch_size"] == 8
        assert Path(t.user_attrs["adapter_dir"], "adapter_model.safetensors").is_file()
        assert t.user_attrs["config"]["lora_enabled"] is True
    status = lmtune("status", str(lora_study))
    assert status.returncode == 0 and "perplexity" in status.stdout and "eval_loss" in status.stdout
    best = json.loads(lmtune("best", str(lora_study), "--json").stdout)
    assert best["direction"] == "minimize" and best["perplexity"] > 1


def test_export_adapter_and_merged_load(lora_study: Path, tiny_llama: Path, tmp_path: Path) -> None:
    import torch
    from peft import PeftConfig, PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = lmtune("export", str(lora_study), "--format", "adapter", "--out", str(tmp_path / "adapter"))
    assert out.returncode == 0, out.stderr
    adapter = PeftConfig.from_pretrained(str(tmp_path / "adapter"))
    assert adapter.peft_type.value == "LORA"
    # a folder that loads by itself: the base model as the config names it, and the tokenizer beside it
    assert adapter.base_model_name_or_path == str(tiny_llama)
    assert AutoTokenizer.from_pretrained(tmp_path / "adapter")("say good")["input_ids"]
    tuned = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(adapter.base_model_name_or_path),
                                      str(tmp_path / "adapter"))
    assert lmtune("export", str(lora_study), "--format", "merged", "--out", str(tmp_path / "merged")).returncode == 0
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged")
    assert not any("lora" in n for n, _ in merged.named_parameters())
    ids = AutoTokenizer.from_pretrained(tmp_path / "merged")("say good", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        torch.testing.assert_close(merged(ids).logits, tuned.eval()(ids).logits, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_layer_decay_and_precision_are_searchable_and_recorded(tiny_model: Path, tiny_csv: Path,
                                                               tmp_path: Path) -> None:
    d = tmp_path / "llrd"
    space = "search.space={layer_decay: {type: float, low: 0.5, high: 0.9}, precision: [fp16, auto]}"
    out = lmtune("tune", QUICKSTART, *sets([*tiny_overrides(tiny_model, tiny_csv, d), space,
                                             "search.strategy=random"]), "--n-trials", "2")
    assert out.returncode == 0, out.stdout + out.stderr
    done = [t for t in trials(d / "study.db") if t.state.name == "COMPLETE"]
    assert len(done) == 2 and all(0.5 <= t.params["layer_decay"] <= 0.9 for t in done)
    ran = {"fp16": "bf16", "auto": "fp32"}  # what actually runs on a CPU
    assert all(t.user_attrs["precision"] == ran[t.params["precision"]] for t in done)
    export = lmtune("export", str(d), "--format", "adapter")  # a full fine-tune has no adapter: say so
    assert export.returncode == 2 and "trained without LoRA" in export.stderr and "lmtune final" in export.stderr


@pytest.mark.slow
def test_layer_decay_on_an_unmappable_model_is_a_recorded_reason(tiny_csv: Path, tiny_model: Path,
                                                                 tmp_path: Path) -> None:
    from transformers import AutoTokenizer, DistilBertConfig, DistilBertForSequenceClassification

    folder = tmp_path / "distil"  # DistilBERT names its blocks transformer.layer.N: not a known layout
    config = DistilBertConfig(vocab_size=40, dim=64, n_layers=2, n_heads=2, hidden_dim=128,
                              max_position_embeddings=64, pad_token_id=0)
    DistilBertForSequenceClassification(config).save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(folder)
    d = tmp_path / "run"
    out = lmtune("tune", QUICKSTART, *sets([*tiny_overrides(folder, tiny_csv, d), "search.max_failures=1",
                                             "search.space={layer_decay: {type: float, low: 0.5, high: 0.9}}"]),
                 "--n-trials", "1")
    assert out.returncode == 1
    failed = trials(d / "study.db")
    reason = failed[0].user_attrs["fail_reason"]
    assert failed[0].state.name == "FAIL" and reason.startswith("input: LayerDecayError")
    assert "DistilBertForSequenceClassification" in reason and "Set `layer_decay: 1.0`" in reason
    assert "LayerDecayError" in lmtune("status", str(d)).stdout


@pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is not None, reason="bitsandbytes is installed here")
def test_qlora_without_bitsandbytes_exits_2_before_anything_trains(tiny_llama: Path, tiny_chat: Path,
                                                                   tmp_path: Path) -> None:
    d = tmp_path / "run"
    out = lmtune("tune", LORA_SFT, *sets([*llm_overrides(tiny_llama, tiny_chat, d), "training.lora_quantization=4bit"]))
    assert out.returncode == 2, out.stdout + out.stderr
    assert out.stderr.strip() == (
        "error: training.lora_quantization: 4bit (QLoRA) needs the bitsandbytes package, which is not installed; on "
        "a machine with a CUDA GPU run pip install 'lmtune[qlora]', or set training.lora_quantization: none")
    assert "Traceback" not in out.stdout + out.stderr
    assert not d.exists()  # no study folder: nothing tokenized, trained or recorded
