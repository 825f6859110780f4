"""Tokenize once per study, cache as plain numpy arrays, reuse in every trial.

Layout of a cache folder (no pickles: ``np.load(..., allow_pickle=False)``)::

    meta.json                          num_labels, label_names, token counts, the spec hash
    <split>.ids.npy   int32, flat       all token ids of the split, back to back
    <split>.offsets.npy int64 [n+1]     row i is ids[offsets[i]:offsets[i+1]]
    <split>.labels.npy int64 [n]        class ids (classification)

The folder name is a hash of everything that changes the arrays, so two studies (or two trials) with
the same data and tokenizer share it, and a changed setting can never read a stale cache.
"""

from __future__ import annotations

import hashlib
import json
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

CACHE_VERSION = 1


@dataclass(frozen=True)
class TokenizedSplit:
    ids: np.ndarray
    offsets: np.ndarray
    labels: np.ndarray | None

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
    splits = load_splits(spec)
    label_names = _label_names(splits["train"], spec.label_column) if spec.label_column else []
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=root))
    counts: dict[str, dict[str, int]] = {}
    for name in SPLITS:
        rows = splits[name]
        ids, offsets = _encode(tokenizer, rows, spec, max_length)
        np.save(tmp / f"{name}.ids.npy", ids)
        np.save(tmp / f"{name}.offsets.npy", offsets)
        if spec.label_column:
            np.save(tmp / f"{name}.labels.npy", _label_ids(rows, spec.label_column, label_names, name))
        counts[name] = {"rows": len(rows), "tokens": len(ids)}
    meta = {"num_labels": len(label_names), "label_names": label_names, "splits": counts,
            "spec": asdict(spec), "tokenizer": tokenizer_id, "max_length": max_length}
    (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
    try:
        os.replace(tmp, folder)  # atomic: a concurrent builder may have won; either copy is identical
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def load_split(folder: Path, split: str) -> TokenizedSplit:
    labels_path = folder / f"{split}.labels.npy"
    return TokenizedSplit(
        ids=np.load(folder / f"{split}.ids.npy", allow_pickle=False),
        offsets=np.load(folder / f"{split}.offsets.npy", allow_pickle=False),
        labels=np.load(labels_path, allow_pickle=False) if labels_path.is_file() else None,
    )


def load_meta(folder: Path) -> dict[str, Any]:
    return dict(json.loads((folder / "meta.json").read_text()))


def _encode(tokenizer: Any, rows: Sequence[dict[str, Any]], spec: DataSpec,
            max_length: int) -> tuple[np.ndarray, np.ndarray]:
    texts = [_text(r, spec.text_column) for r in rows]
    pairs = [_text(r, spec.text_pair_column) for r in rows] if spec.text_pair_column else None
    enc = tokenizer(texts, pairs, truncation=True, max_length=max_length, add_special_tokens=True)
    seqs = enc["input_ids"]
    offsets = np.zeros(len(seqs) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(s) for s in seqs])
    ids = np.fromiter((t for s in seqs for t in s), dtype=np.int32, count=int(offsets[-1]))
    return ids, offsets


def _text(row: dict[str, Any], column: str | None) -> str:
    value = row.get(column) if column else None
    return "" if value is None else str(value)


def _label_names(rows: Sequence[dict[str, Any]], column: str) -> list[str]:
    values = {r[column] for r in rows if r.get(column) is not None}
    if len(values) < 2:
        raise DataError(f"task.label_column: column '{column}' has {len(values)} distinct value(s) in the "
                        "train split; classification needs at least 2")
    if all(isinstance(v, bool | int) or (isinstance(v, float) and v.is_integer()) for v in values):
        return [str(int(v)) for v in sorted(values)]
    return sorted(str(v) for v in values)


def _label_ids(rows: Sequence[dict[str, Any]], column: str, names: list[str], split: str) -> np.ndarray:
    index = {n: i for i, n in enumerate(names)}
    out = np.empty(len(rows), dtype=np.int64)
    for i, r in enumerate(rows):
        v = r.get(column)
        key = str(int(v)) if isinstance(v, bool | int | float) and float(v).is_integer() else str(v)
        if key not in index:
            raise DataError(f"task.label_column: the {split} split has label {v!r}, which the train split "
                            f"lacks (train labels: {names}); clean the data or resplit it")
        out[i] = index[key]
    return out
