"""Export the best trial's LoRA adapter, as trained, or merged into its base model.

LoRA trials save their adapter to ``<trial_dir>/adapter`` (``TrialSpec.save_adapter``) and the study
records that folder in the trial's ``adapter_dir`` attribute. The adapter folder is what peft writes
(``adapter_config.json`` + ``adapter_model.safetensors``) and loads with
``peft.PeftModel.from_pretrained(base, folder)``; the merged folder is a plain transformers folder
(weights with the adapter folded in, plus the tokenizer) that loads without peft.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lmtune.errors import StudyError

__all__ = ["export_adapter", "export_merged"]

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


def _adapter_source(adapter_dir: str | None, config: Mapping[str, Any], trial: int, study_dir: Path) -> Path:
    folder = adapter_dir
    if not folder:
        why = ("it trained without LoRA (lora_enabled: false), so there is no adapter; run "
               f"'lmtune final {study_dir}' to retrain it and keep the full model") \
            if config and not config.get("lora_enabled") else \
            ("no adapter was saved for it (studies run before lmtune saved adapters); run the study again "
             "with training.lora_enabled: true")
        raise StudyError(f"best trial {trial}: {why}")
    path = Path(folder)
    missing = [f for f in ADAPTER_FILES if not (path / f).is_file()]
    if missing:
        raise StudyError(f"best trial {trial}: its adapter folder {path} lacks {', '.join(missing)} (deleted?); "
                         "run the study again to recreate it")
    return path


def export_adapter(adapter_dir: str | None, config: Mapping[str, Any], trial: int, study_dir: Path,
                   out: Path) -> Path:
    """Copy the best trial's adapter folder (``adapter_dir``, trained with ``config``) to ``out`` (created;
    files there are replaced)."""
    source = _adapter_source(adapter_dir, config, trial, study_dir)
    out.mkdir(parents=True, exist_ok=True)
    for item in source.iterdir():
        if item.is_file():
            shutil.copy2(item, out / item.name)
    return out


def export_merged(adapter_dir: str | None, config: Mapping[str, Any], trial: int, study_dir: Path,
                  meta: Mapping[str, Any], out: Path) -> Path:
    """Load the base model, attach the best adapter, merge it and save a plain folder (with tokenizer)."""
    from peft import PeftModel

    from lmtune.data.tokenized import load_meta
    from lmtune.training.lora import merge_and_save
    from lmtune.training.models import load_causal_lm, load_classifier, load_tokenizer, resolve_model

    source = _adapter_source(adapter_dir, config, trial, study_dir)
    task = dict(meta["config"]["task"])
    base_path = resolve_model(task["model"])
    remote = bool(task.get("trust_remote_code", False))
    if task.get("type") == "causal_lm":
        base = load_causal_lm(base_path, dropout=None, attention_dropout=None, trust_remote_code=remote)
    else:
        labels = int(load_meta(Path(meta["data_cache"]))["num_labels"])
        base = load_classifier(base_path, num_labels=labels, dropout=None, attention_dropout=None,
                               trust_remote_code=remote)
    merge_and_save(PeftModel.from_pretrained(base, str(source)), out)
    load_tokenizer(base_path, trust_remote_code=remote).save_pretrained(str(out))
    return out
