"""Resolve and load models: built-ins from offline packages, local folders, hub ids."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from lmtune.data.smollm2 import default_cache_root, minilm_folder, smollm2_folder
from lmtune.errors import ModelLoadError

# Built-in offline models (DESIGN.md, "Offline assets"): name → folder, given a cache root for conversions.
BUILTIN_MODELS: dict[str, Callable[[Path], Path]] = {
    "builtin:minilm-l6": lambda root: minilm_folder(),
    "builtin:smollm2-135m": smollm2_folder,
}

# Config attributes that hold dropout probabilities, by role, across BERT/RoBERTa, GPT-2 and Llama.
_HIDDEN_DROPOUT = ("hidden_dropout_prob", "resid_pdrop", "embd_pdrop", "hidden_dropout", "dropout")
_ATTENTION_DROPOUT = ("attention_probs_dropout_prob", "attn_pdrop", "attention_dropout")


def resolve_model(name: str, *, fallback_cache: Path | None = None) -> str:
    """A folder path (built-ins and local folders) or the hub id unchanged.

    Built-ins that need a one-time conversion (SmolLM2 from GGUF) are cached under ``$LMTUNE_CACHE`` or
    ``~/.cache/lmtune``, shared by all studies; where that is not writable, under ``fallback_cache``.
    """
    if name.startswith("builtin:"):
        if name not in BUILTIN_MODELS:
            raise ModelLoadError(f"task.model: unknown built-in '{name}'; available: "
                                 f"{', '.join(sorted(BUILTIN_MODELS))}")
        try:
            try:
                return str(BUILTIN_MODELS[name](default_cache_root()))
            except PermissionError:
                if fallback_cache is None:
                    raise
                return str(BUILTIN_MODELS[name](fallback_cache))
        except (FileNotFoundError, PermissionError) as exc:
            raise ModelLoadError(f"task.model: {name} is not available: {exc}") from None
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelLoadError(f"task.model: {path} has no config.json; give a folder written by "
                                 "save_pretrained, a built-in (builtin:minilm-l6) or a hub id")
        return str(path.resolve())
    if name.startswith((".", "/", "~")):
        raise ModelLoadError(f"task.model: folder not found: {name}")
    return name


def load_tokenizer(model: str, *, trust_remote_code: bool = False) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(model, trust_remote_code=trust_remote_code)
    except Exception as exc:
        raise ModelLoadError(f"task.model: cannot load a tokenizer from '{model}': "
                             f"{type(exc).__name__}: {str(exc)[:300]}") from None


def dropout_overrides(config: Any, dropout: float | None, attention_dropout: float | None) -> dict[str, float]:
    """The config attributes to set for the requested dropout (None keeps the model's value)."""
    out: dict[str, float] = {}
    attention = dropout if attention_dropout is None else attention_dropout
    for keys, value in ((_HIDDEN_DROPOUT, dropout), (_ATTENTION_DROPOUT, attention)):
        if value is None:
            continue
        for key in keys:
            if isinstance(getattr(config, key, None), float | int) and not isinstance(
                    getattr(config, key), bool):
                out[key] = float(value)
    return out


def load_classifier(model: str, *, num_labels: int, dropout: float | None,
                    attention_dropout: float | None, trust_remote_code: bool = False) -> Any:
    """A sequence-classification model in float32 with the requested dropout and a fresh head of num_labels."""
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification

    try:
        config = AutoConfig.from_pretrained(model, num_labels=num_labels, trust_remote_code=trust_remote_code)
        for key, value in dropout_overrides(config, dropout, attention_dropout).items():
            setattr(config, key, value)
        # fp32 master weights whatever the checkpoint stores (transformers 5 defaults to dtype="auto",
        # which would train a bf16 checkpoint in bf16 under `precision: fp32`); autocast does the rest.
        net = AutoModelForSequenceClassification.from_pretrained(
            model, config=config, dtype=torch.float32, trust_remote_code=trust_remote_code)
    except Exception as exc:
        raise ModelLoadError(f"task.model: cannot load '{model}' for sequence classification: "
                             f"{type(exc).__name__}: {str(exc)[:300]}") from None
    if getattr(net.config, "pad_token_id", None) is None:
        net.config.pad_token_id = getattr(net.config, "eos_token_id", 0) or 0
    return net


def load_causal_lm(model: str, *, dropout: float | None, attention_dropout: float | None,
                   trust_remote_code: bool = False) -> Any:
    """A causal LM in float32 (the optimizer's master weights; bf16/fp16 run as autocast)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    try:
        config = AutoConfig.from_pretrained(model, trust_remote_code=trust_remote_code)
        for key, value in dropout_overrides(config, dropout, attention_dropout).items():
            setattr(config, key, value)
        net = AutoModelForCausalLM.from_pretrained(model, config=config, dtype=torch.float32,
                                                   trust_remote_code=trust_remote_code)
    except Exception as exc:
        raise ModelLoadError(f"task.model: cannot load '{model}' as a causal language model: "
                             f"{type(exc).__name__}: {str(exc)[:300]}") from None
    if getattr(net.config, "pad_token_id", None) is None:
        eos = getattr(net.config, "eos_token_id", 0)
        net.config.pad_token_id = (eos[0] if isinstance(eos, list) else eos) or 0
    return net
