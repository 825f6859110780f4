"""Causal-LM examples: (token ids, per-token labels) for the three splits, from chat or plain text.

Two kinds of data, told apart by their columns:

* **chat** (rows have ``task.messages_column``, a list of ``{role, content}``): each dialog is one
  example, rendered with the tokenizer's chat template; with ``assistant_only`` the labels are -100
  everywhere but on the assistant replies. Split sizes count dialogs.
* **plain text** (rows have ``task.text_column``; a ``.txt`` file is one row): the documents are
  tokenized, joined with EOS and cut into blocks of ``max_length`` tokens; every token is a label.
  Split sizes count blocks; the validation/test blocks are carved from the blocks with the study seed.

Labels are not shifted here: position ``t`` holds the token the model must produce at ``t`` (the
model's logits at ``t - 1`` predict it), as transformers' causal-LM models expect.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lmtune.data.causal import IGNORE_INDEX, pack_texts, tokenize_chat
from lmtune.data.sources import DataSpec, load_raw, split_rows
from lmtune.errors import DataError

Examples = tuple[list[list[int]], list[list[int]]]  # (input ids per example, labels per example)

__all__ = ["Examples", "causal_splits"]


def causal_splits(spec: DataSpec, tokenizer: Any, max_length: int) -> dict[str, Examples]:
    """Token ids and labels of the train / validation / test splits (see the module docstring)."""
    raw = load_raw(spec)
    first = next(iter(raw.get("train") or []), None)
    if first is None:
        raise DataError(f"dataset {spec.dataset}: the train split is empty")
    chat_column = spec.messages_column or "messages"
    if chat_column in first:
        splits = split_rows(raw, spec)
        return {name: _chat(rows, tokenizer, spec, chat_column, max_length, name) for name, rows in splits.items()}
    if spec.text_column not in first:
        raise DataError(f"task.dataset: {spec.dataset} has neither a '{chat_column}' column (chat data) nor a "
                        f"'{spec.text_column}' column (plain text); its columns are: {', '.join(sorted(first))}. "
                        "Set task.messages_column or task.text_column to one of them")
    eos = tokenizer.eos_token_id
    blocks = {name: [{"ids": b} for b in _blocks(rows, tokenizer, spec.text_column, max_length, eos)]
              for name, rows in raw.items()}
    return {name: ([r["ids"] for r in rows], [list(r["ids"]) for r in rows])
            for name, rows in split_rows(blocks, spec).items()}


def _blocks(rows: Sequence[dict[str, Any]], tokenizer: Any, column: str, size: int,
            eos: int | None) -> list[list[int]]:
    docs = ["" if r.get(column) is None else str(r[column]) for r in rows]
    # verbose=False: a long document is expected here (it is cut into blocks), not a truncation problem
    ids = tokenizer(docs, add_special_tokens=False, verbose=False)["input_ids"]
    return pack_texts([list(d) for d in ids], size, eos)


def _chat(rows: Sequence[dict[str, Any]], tokenizer: Any, spec: DataSpec, column: str, max_length: int,
          split: str) -> Examples:
    ids_out: list[list[int]] = []
    labels_out: list[list[int]] = []
    for n, row in enumerate(rows):
        messages = _messages(row.get(column), column, split, n)
        try:
            ids, labels = tokenize_chat(tokenizer, messages, max_length, assistant_only=spec.assistant_only)
        except Exception as exc:  # template errors come as ValueError or jinja2 exceptions
            raise DataError(_chat_fix(exc, tokenizer)) from None
        if all(label == IGNORE_INDEX for label in labels):
            continue  # no assistant token left within max_length: nothing to learn from this dialog
        ids_out.append(ids)
        labels_out.append(labels)
    if not ids_out:
        raise DataError(f"dataset {spec.dataset}: no {split} dialog has an assistant reply within task.max_length="
                        f"{max_length} tokens; raise task.max_length")
    return ids_out, labels_out


def _messages(value: Any, column: str, split: str, n: int) -> list[dict[str, str]]:
    ok = isinstance(value, list) and value and all(
        isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in value)
    if not ok:
        raise DataError(f"task.messages_column: row {n} of the {split} split has {str(value)[:80]!r} in column "
                        f"'{column}'; chat data needs a list of {{role, content}} messages per row, e.g. "
                        '[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]')
    return [{"role": m["role"], "content": m["content"]} for m in value]


def _chat_fix(exc: Exception, tokenizer: Any) -> str:
    if not getattr(tokenizer, "chat_template", None):
        return (f"task.model: the tokenizer ({type(tokenizer).__name__}) has no chat template, which chat data "
                "needs; use a chat/instruct model (e.g. builtin:smollm2-135m) or plain-text data")
    return f"task.dataset: cannot render a dialog with the chat template: {type(exc).__name__}: {exc}"
