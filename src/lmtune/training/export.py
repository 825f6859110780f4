"""Export the best trial's LoRA adapter, as trained, or merged into its base model.

LoRA trials save their adapter to ``<trial_dir>/adapter`` (``TrialSpec.save_adapter``) and the study
records that folder in the trial's ``adapter_dir`` attribute. The adapter folder is what peft writes
(``adapter_config.json`` + ``adapter_model.safetensors``) and loads with
``peft.PeftModel.from_pretrained(base, folder)``; the merged folder is a plain transformers folder
(weights with the adapter folded in, plus the tokenizer) that loads without peft.
"""

from __future__ import annotations

import json
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
                   out: Path, *, task: Mapping[str, Any] | None = None) -> Path:
    """Copy the best trial's adapter folder (``adapter_dir``, trained with ``config``) to ``out`` (created;
    files there are replaced); with the study's ``task`` section, complete it as a folder peft loads
    by itself: the base model named as the user gave it and the tokenizer beside the adapter."""
    source = _adapter_source(adapter_dir, config, trial, study_dir)
    out.mkdir(parents=True, exist_ok=True)
    for item in source.iterdir():
        if item.is_file():
            shutil.copy2(item, out / item.name)
    if task is not None:
        from lmtune.training.models import load_tokenizer, resolve_model

        resolved = resolve_model(str(task["model"]))
        remote = bool(task.get("trust_remote_code", False))
        name_base_model(out, base_model_name(str(task["model"]), resolved))
        load_tokenizer(resolved, trust_remote_code=remote).save_pretrained(str(out))
    return out


def base_model_name(given: str, resolved: str) -> str:
    """The base model as an adapter folder names it: what the user wrote (a hub id, a path), except a
    ``builtin:`` name, which only lmtune resolves: its installed folder then."""
    return resolved if given.startswith("builtin:") else given


def name_base_model(folder: Path, name: str) -> None:
    """Set ``base_model_name_or_path`` in a peft adapter folder (peft writes the path it loaded from: for a
    hub model, a local cache path); nothing for a folder that is not an adapter."""
    cfg_path = folder / "adapter_config.json"
    if not cfg_path.is_file():
        return
    adapter = json.loads(cfg_path.read_text())
    adapter["base_model_name_or_path"] = name
    cfg_path.write_text(json.dumps(adapter, indent=2, sort_keys=True) + "\n")


def export_merged(adapter_dir: str | None, config: Mapping[str, Any], trial: int, study_dir: Path,
                  meta: Mapping[str, Any], out: Path) -> Path:
    """Load the base model, attach the best adapter, merge it and save a plain folder (with tokenizer)."""
    from peft import PeftModel

    from lmtune.data import load_meta
    from lmtune.training.lora import merge_and_save
    from lmtune.training.models import load_causal_lm, load_classifier, load_tokenizer, resolve_model

    source = _adapter_source(adapter_dir, config, trial, study_dir)
    task = dict(meta["config"]["task"])
    base_path = resolve_model(task["model"])
    remote = bool(task.get("trust_remote_code", False))
    if task.get("type") == "causal_lm":
        base = load_causal_lm(base_path, dropout=None, attention_dropout=None, trust_remote_code=remote)
    else:
        data = load_meta(Path(meta["data_cache"]))
        base = load_classifier(base_path, num_labels=int(data["num_labels"]), dropout=None, attention_dropout=None,
                               trust_remote_code=remote, label_names=data.get("label_names"))
    merge_and_save(PeftModel.from_pretrained(base, str(source)), out)
    load_tokenizer(base_path, trust_remote_code=remote).save_pretrained(str(out))
    return out
