"""Resolve and load models: built-ins from offline packages, local folders, hub ids."""

from __future__ import annotations

import json
import struct
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from lmtune.data import default_cache_root, minilm_folder, smollm2_folder
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


_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                 "pytorch_model.bin.index.json")


def check_model_folder(model: str, *, trust_remote_code: bool = False) -> None:
    """Before any trial: a local model folder has a config transformers reads and weights a trainer can
    load — a whole safetensors file (its header read and every tensor inside the file, so a truncated
    copy is caught), the shards an index names, or a ``pytorch_model.bin``. Reads headers only, never
    the weights; hub ids pass (the tokenizer's load checks those)."""
    folder = Path(model)
    if not folder.is_dir():
        return
    from transformers import AutoConfig

    try:
        AutoConfig.from_pretrained(folder, trust_remote_code=trust_remote_code)
    except Exception as exc:
        raise ModelLoadError(f"task.model: {folder / 'config.json'} cannot be read as a model config: "
                             f"{type(exc).__name__}: {str(exc)[:300]}") from None
    present = [name for name in _WEIGHT_FILES if (folder / name).is_file()]
    if not present:
        raise ModelLoadError(f"task.model: {folder} has no weights (none of {', '.join(_WEIGHT_FILES)}); "
                             "save the model with save_pretrained, or give a built-in (builtin:minilm-l6)")
    name = present[0]
    if name.endswith(".index.json"):
        try:
            shards = sorted(set(json.loads((folder / name).read_text())["weight_map"].values()))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ModelLoadError(f"task.model: {folder / name} is not a weights index ({exc}); "
                                 "save the model again with save_pretrained") from None
        files = [folder / shard for shard in shards]
    else:
        files = [folder / name]
    for file in files:
        if not file.is_file():
            raise ModelLoadError(f"task.model: {file} is missing (named in {folder / name}); copy the whole "
                                 "model folder again")
        if file.suffix == ".safetensors":
            _check_safetensors(file)
        elif file.stat().st_size == 0:
            raise ModelLoadError(f"task.model: {file} is empty; copy the model folder again")


def _check_safetensors(file: Path) -> None:
    """The safetensors layout: an 8-byte header length, a JSON header, then the tensors' bytes."""
    size = file.stat().st_size
    problem = None
    with file.open("rb") as fh:
        head = fh.read(8)
        n = struct.unpack("<Q", head)[0] if len(head) == 8 else -1
        if n < 2 or 8 + n > size:
            problem = "its header is cut off or missing"
        else:
            try:
                header = json.loads(fh.read(n))
                ends = [int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"]
            except (ValueError, KeyError, TypeError, IndexError, AttributeError):
                problem = "its header is not valid safetensors"
            else:
                if not ends:
                    problem = "it holds no tensors"
                elif max(ends) > size - 8 - n:
                    problem = f"it is truncated ({size:,} bytes, {8 + n + max(ends):,} expected)"
    if problem:
        raise ModelLoadError(f"task.model: {file} cannot be loaded: {problem}; copy the model folder again")


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


def quantization_kwargs(quantization: str, device: str | None) -> dict[str, Any]:
    """``from_pretrained`` keywords for ``training.lora_quantization``: "4bit" loads the linear layers as
    bitsandbytes NF4 with double quantization and bf16 compute (QLoRA, Dettmers et al. 2023), placed on
    ``device``; the output head (lm_head, a classifier's score/classifier) stays in float32."""
    if quantization == "none":
        return {}
    import torch
    from transformers import BitsAndBytesConfig

    config = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                bnb_4bit_compute_dtype=torch.bfloat16,
                                llm_int8_skip_modules=["lm_head", "score", "classifier"])
    return {"quantization_config": config, "device_map": {"": device}}


def _keep_blocks(config: Any, num_layers: int | None) -> int | None:
    """A proxy's depth (``num_layers`` blocks of the checkpoint's) set on the config before the weights load,
    so only the kept blocks are read and built; a depth the model does not have is left to
    `lmtune.training.truncate.truncate_layers`, which names the valid range. Returns the checkpoint's
    block count when it cut the config, else None."""
    from lmtune.training.truncate import shrink_config

    total = getattr(config, "num_hidden_layers", None)
    if num_layers and isinstance(total, int) and 1 <= num_layers < total:
        shrink_config(config, num_layers)
        return total
    return None


def load_classifier(model: str, *, num_labels: int, dropout: float | None,
                    attention_dropout: float | None, trust_remote_code: bool = False,
                    label_names: Sequence[str] | None = None, quantization: str = "none",
                    device: str | None = None, num_layers: int | None = None) -> Any:
    """A sequence-classification model in float32 with the requested dropout and a fresh head of num_labels;
    ``label_names`` (the data's classes, in label-id order) become ``id2label``/``label2id``, so a saved
    model's ``pipeline()`` answers ``pos`` rather than ``LABEL_1``."""
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification

    names = list(label_names or [])
    labels: dict[str, Any] = {"id2label": dict(enumerate(names)), "label2id": {n: i for i, n in enumerate(names)}} \
        if len(names) == num_labels else {}
    try:
        config = AutoConfig.from_pretrained(model, num_labels=num_labels, trust_remote_code=trust_remote_code,
                                            **labels)
        for key, value in dropout_overrides(config, dropout, attention_dropout).items():
            setattr(config, key, value)
        checkpoint_blocks = _keep_blocks(config, num_layers)
        # fp32 master weights whatever the checkpoint stores (transformers 5 defaults to dtype="auto",
        # which would train a bf16 checkpoint in bf16 under `precision: fp32`); autocast does the rest.
        net = AutoModelForSequenceClassification.from_pretrained(
            model, config=config, dtype=torch.float32, trust_remote_code=trust_remote_code,
            **quantization_kwargs(quantization, device))
    except Exception as exc:
        raise ModelLoadError(f"task.model: cannot load '{model}' for sequence classification: "
                             f"{type(exc).__name__}: {str(exc)[:300]}") from None
    if getattr(net.config, "pad_token_id", None) is None:
        net.config.pad_token_id = getattr(net.config, "eos_token_id", 0) or 0
    if checkpoint_blocks:  # the proxy's log line says how many blocks it kept of how many
        setattr(net, "lmtune_checkpoint_blocks", checkpoint_blocks)  # noqa: B010 (a plain attribute, not a submodule)
    return net


def load_causal_lm(model: str, *, dropout: float | None, attention_dropout: float | None,
                   trust_remote_code: bool = False, quantization: str = "none", device: str | None = None,
                   num_layers: int | None = None) -> Any:
    """A causal LM in float32 (the optimizer's master weights; bf16/fp16 run as autocast), its linear
    layers in 4-bit on ``device`` with ``quantization="4bit"`` (`quantization_kwargs`)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    try:
        config = AutoConfig.from_pretrained(model, trust_remote_code=trust_remote_code)
        for key, value in dropout_overrides(config, dropout, attention_dropout).items():
            setattr(config, key, value)
        checkpoint_blocks = _keep_blocks(config, num_layers)
        net = AutoModelForCausalLM.from_pretrained(model, config=config, dtype=torch.float32,
                                                   trust_remote_code=trust_remote_code,
                                                   **quantization_kwargs(quantization, device))
    except Exception as exc:
        raise ModelLoadError(f"task.model: cannot load '{model}' as a causal language model: "
                             f"{type(exc).__name__}: {str(exc)[:300]}") from None
    if getattr(net.config, "pad_token_id", None) is None:
        eos = getattr(net.config, "eos_token_id", 0)
        net.config.pad_token_id = (eos[0] if isinstance(eos, list) else eos) or 0
    if checkpoint_blocks:  # the proxy's log line says how many blocks it kept of how many
        setattr(net, "lmtune_checkpoint_blocks", checkpoint_blocks)  # noqa: B010 (a plain attribute, not a submodule)
    return net
