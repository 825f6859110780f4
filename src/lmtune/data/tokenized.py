"""Tokenize once per study, cache as plain numpy arrays, reuse in every trial.

Layout of a cache folder (no pickles: ``np.load(..., allow_pickle=False)``)::

    meta.json                          num_labels, label_names, token counts, the spec hash
    <split>.ids.npy   int32, flat       all token ids of the split, back to back
    <split>.offsets.npy int64 [n+1]     row i is ids[offsets[i]:offsets[i+1]]
    <split>.labels.npy int64 [n]        class ids (classification)
    <split>.labels_flat.npy int32, flat  causal_lm: the label of every token, aligned with ids; -100 = no loss

The folder name is a hash of everything that changes the arrays, so two studies (or two trials) with
the same data and tokenizer share it, and a changed setting can never read a stale cache.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lmtune.data.sources import SPLITS, DataSpec, load_splits
from lmtune.errors import DataError

log = logging.getLogger("lmtune")

CACHE_VERSION = 2  # 2: pair tasks keep where each row's second segment starts (token_type_ids)


@dataclass(frozen=True)
class TokenizedSplit:
    ids: np.ndarray
    offsets: np.ndarray
    labels: np.ndarray | None
    token_labels: np.ndarray | None = None  # causal_lm: flat, aligned with ids
    # sentence-pair tasks of a model with segment embeddings (BERT's token_type_ids): the position in each row
    # where the second text starts (its length when there is none); None for single-text tasks
    segments: np.ndarray | None = None

    def token_types(self, index: np.ndarray, width: int) -> np.ndarray | None:
        """token_type_ids of rows ``index`` padded to ``width``: 0 up to each row's second text, 1 from it (and
        0 on padding); None for a single-text task."""
        if self.segments is None:
            return None
        starts = self.segments[index].astype(np.int64)[:, None]
        ends = self.lengths()[index][:, None]
        pos = np.arange(width)[None, :]
        return ((pos >= starts) & (pos < ends)).astype(np.int64)

    def row_labels(self, i: int) -> np.ndarray:
        assert self.token_labels is not None
        return self.token_labels[self.offsets[i]:self.offsets[i + 1]]

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def row(self, i: int) -> np.ndarray:
        return self.ids[self.offsets[i]:self.offsets[i + 1]]


def cache_key(spec: DataSpec, tokenizer_id: str, max_length: int) -> str:
    blob = json.dumps({"v": CACHE_VERSION, "spec": asdict(spec), "tok": tokenizer_id, "max": max_length},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def build_cache(spec: DataSpec, tokenizer: Any, tokenizer_id: str, max_length: int, root: Path) -> Path:
    """Tokenize the three splits into ``root/data-<hash>`` unless that folder exists; return it."""
    folder = root / f"data-{cache_key(spec, tokenizer_id, max_length)}"
    if (folder / "meta.json").is_file():
        return folder
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=root))
    label_names: list[str] = []
    try:
        if spec.task == "causal_lm":
            counts = _write_causal(tmp, spec, tokenizer, max_length)
        else:
            counts, label_names = _write_classification(tmp, spec, tokenizer, max_length)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    meta = {"num_labels": len(label_names), "label_names": label_names, "splits": counts, "task": spec.task,
            "spec": asdict(spec), "tokenizer": tokenizer_id, "max_length": max_length}
    (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
    try:
        os.replace(tmp, folder)  # atomic: a concurrent builder may have won; either copy is identical
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def _write_classification(tmp: Path, spec: DataSpec, tokenizer: Any,
                          max_length: int) -> tuple[dict[str, dict[str, int]], list[str]]:
    splits = load_splits(spec)
    label_names = _label_names(splits["train"], spec.label_column) if spec.label_column else []
    counts: dict[str, dict[str, int]] = {}
    for name in SPLITS:
        rows = splits[name]
        empty = _empty_texts(rows, spec, name)
        ids, offsets, segments = _encode(tokenizer, rows, spec, max_length)
        np.save(tmp / f"{name}.ids.npy", ids)
        np.save(tmp / f"{name}.offsets.npy", offsets)
        if segments is not None:
            np.save(tmp / f"{name}.segments.npy", segments)
        if spec.label_column:
            np.save(tmp / f"{name}.labels.npy", _label_ids(rows, spec.label_column, label_names, name))
        counts[name] = {"rows": len(rows), "tokens": len(ids), "empty_texts": empty}
    return counts, label_names


def _empty_texts(rows: Sequence[dict[str, Any]], spec: DataSpec, split: str) -> int:
    """Rows whose text (and pair text) is empty or blank: warned about with the count, refused when the
    whole split is (a model trained on nothing but special tokens)."""
    cols = [c for c in (spec.text_column, spec.text_pair_column) if c]
    n = sum(1 for r in rows if not any(_text(r, c).strip() for c in cols))
    if n and n == len(rows):
        raise DataError(f"task.text_column: every text in the {split} split is empty (column "
                        f"'{spec.text_column}'); check that it names the column holding the text")
    if n:
        log.warning("task.text_column: %d of %d rows of the %s split have an empty text (column '%s'); they "
                    "are kept as empty inputs; drop them from the data to leave them out", n, len(rows), split,
                    spec.text_column)
    return n


def _write_causal(tmp: Path, spec: DataSpec, tokenizer: Any, max_length: int) -> dict[str, dict[str, int]]:
    from lmtune.data.lm import causal_splits

    examples = causal_splits(spec, tokenizer, max_length)
    counts: dict[str, dict[str, int]] = {}
    for name in SPLITS:
        ids, offsets = _flatten(examples[name][0])
        labels, _ = _flatten(examples[name][1])
        np.save(tmp / f"{name}.ids.npy", ids)
        np.save(tmp / f"{name}.offsets.npy", offsets)
        np.save(tmp / f"{name}.labels_flat.npy", labels)
        counts[name] = {"rows": len(offsets) - 1, "tokens": len(ids), "label_tokens": int((labels != -100).sum())}
    return counts


def load_split(folder: Path, split: str) -> TokenizedSplit:
    def optional(name: str) -> np.ndarray | None:
        path = folder / f"{split}.{name}.npy"
        return np.load(path, allow_pickle=False) if path.is_file() else None

    return TokenizedSplit(
        ids=np.load(folder / f"{split}.ids.npy", allow_pickle=False),
        offsets=np.load(folder / f"{split}.offsets.npy", allow_pickle=False),
        labels=optional("labels"), token_labels=optional("labels_flat"), segments=optional("segments"),
    )


def load_meta(folder: Path) -> dict[str, Any]:
    return dict(json.loads((folder / "meta.json").read_text()))


def _encode(tokenizer: Any, rows: Sequence[dict[str, Any]], spec: DataSpec,
            max_length: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Ids and row offsets, and for a pair task whose tokenizer gives segment ids (BERT's token_type_ids) where
    each row's second text starts, as HF's collator would hand the model."""
    texts = [_text(r, spec.text_column) for r in rows]
    pairs = [_text(r, spec.text_pair_column) for r in rows] if spec.text_pair_column else None
    enc = tokenizer(texts, pairs, truncation=True, max_length=max_length, add_special_tokens=True)
    ids, offsets = _flatten(enc["input_ids"])
    types = enc.get("token_type_ids") if pairs is not None else None
    if not types or not any(1 in t for t in types):
        return ids, offsets, None
    starts = np.array([t.index(1) if 1 in t else len(t) for t in types], dtype=np.int32)
    return ids, offsets, starts


def _flatten(seqs: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Rows back to back (int32) and the row offsets."""
    offsets = np.zeros(len(seqs) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(s) for s in seqs])
    ids = np.fromiter((t for s in seqs for t in s), dtype=np.int32, count=int(offsets[-1]))
    return ids, offsets


def _text(row: dict[str, Any], column: str | None) -> str:
    value = row.get(column) if column else None
    return "" if value is None else str(value)


def _whole(v: Any) -> bool:
    return isinstance(v, bool | int) or (isinstance(v, float) and v.is_integer())


def _label_key(v: Any) -> str:
    """A label as a class name: whole numbers as integers (4.0 and 4 are class "4"), others as text."""
    return str(int(v)) if _whole(v) else str(v)


def _label_names(rows: Sequence[dict[str, Any]], column: str) -> list[str]:
    values = {r[column] for r in rows if r.get(column) is not None}
    fractional = sorted(v for v in values if isinstance(v, float) and not v.is_integer())
    if fractional:
        raise DataError(f"task.label_column: column '{column}' holds fractional numbers (e.g. {fractional[0]!r}, "
                        f"{len(fractional)} distinct): regression is not supported; task.type classification needs "
                        "classes (integers or strings). Bin the values into classes, or train a regression model "
                        "with task.type: script")
    if len(values) < 2:
        raise DataError(f"task.label_column: column '{column}' has {len(values)} distinct value(s) in the "
                        "train split; classification needs at least 2")
    if all(_whole(v) for v in values):
        return [str(n) for n in sorted({int(v) for v in values})]
    return sorted({_label_key(v) for v in values})


def _label_ids(rows: Sequence[dict[str, Any]], column: str, names: list[str], split: str) -> np.ndarray:
    index = {n: i for i, n in enumerate(names)}
    out = np.empty(len(rows), dtype=np.int64)
    for i, r in enumerate(rows):
        v = r.get(column)
        key = _label_key(v)
        if key not in index:
            raise DataError(f"task.label_column: the {split} split has label {v!r}, which the train split "
                            f"lacks (train labels: {names}); clean the data or resplit it")
        out[i] = index[key]
    return out
