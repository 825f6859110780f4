"""Sentence-pair tasks keep their segment ids: lmtune's batches hand a BERT-family model the same
token_type_ids its tokenizer (and so HF's Trainer) gives, so the second text is embedded as the second
segment (it was all segment 0 before the cache kept them)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from lmtune.data import DataSpec, build_cache, load_split
from lmtune.training.batches import collate
from lmtune.training.models import load_tokenizer, resolve_model

ROWS = [{"a": "the film was good", "b": "a fine movie", "label": 1},
        {"a": "terrible", "b": "it was a waste of an evening at the cinema", "label": 0},
        {"a": "an actor reads a long line of text", "b": "", "label": 1},
        {"a": "ok", "b": "fine", "label": 0}] * 4


def test_a_pair_tasks_batches_carry_the_tokenizers_token_type_ids(tmp_path: Path) -> None:
    import json

    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    model = resolve_model("builtin:minilm-l6")
    tok = load_tokenizer(model)
    spec = DataSpec(dataset=str(data), dataset_config=None, text_column="a", text_pair_column="b",
                    label_column="label",
                    sizes={"train": 8, "validation": 4, "test": 4}, seed=0, task="classification")
    folder = build_cache(spec, tok, model, 32, tmp_path / "cache")
    split = load_split(folder, "train")
    assert split.segments is not None
    index = np.arange(len(split))
    batch = collate(split, index, int(tok.pad_token_id), torch.device("cpu"))
    rows = [split.row(int(i)) for i in index]
    for j, ids in enumerate(rows):
        # the tokenizer's own segment ids for this row: re-derived from the [SEP] that ends the first text
        sep = int(np.where(ids == tok.sep_token_id)[0][0])
        want = np.zeros(batch["input_ids"].shape[1], dtype=np.int64)
        want[sep + 1:len(ids)] = 1
        assert batch["token_type_ids"][j].tolist() == want.tolist()


def test_a_single_text_task_has_no_segments(tmp_path: Path) -> None:
    import json

    data = tmp_path / "single.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    model = resolve_model("builtin:minilm-l6")
    tok = load_tokenizer(model)
    spec = DataSpec(dataset=str(data), dataset_config=None, text_column="a", text_pair_column=None,
                    label_column="label",
                    sizes={"train": 8, "validation": 4, "test": 4}, seed=0, task="classification")
    split = load_split(build_cache(spec, tok, model, 32, tmp_path / "cache"), "train")
    assert split.segments is None
    assert "token_type_ids" not in collate(split, np.arange(4), int(tok.pad_token_id), torch.device("cpu"))
