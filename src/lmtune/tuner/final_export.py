"""The final model folder and the machine description of ``lmtune final``.

``final/model/`` is a normal Hugging Face folder: what the trainer's ``save_pretrained`` wrote (full
weights, or a peft adapter), the tokenizer, and ``lmtune-config.yaml`` — an lmtune study config whose
``training`` section is the configuration that produced the model (so ``lmtune tune`` of it retrains
that one configuration), with where it came from in comments.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from pathlib import Path

from lmtune.config import config_yaml
from lmtune.training import load_tokenizer, name_base_model

CONFIG_FILE = "lmtune-config.yaml"
__all__ = ["CONFIG_FILE", "config_yaml", "describe_machine", "export_model"]


def export_model(saved: Path, dest: Path, *, tokenizer_from: str, config_text: str,
                 trust_remote_code: bool = False, base_model: str | None = None) -> Path:
    """Move the trainer's saved model folder to ``dest`` with the tokenizer and the config file; an
    adapter folder names its base model ``base_model`` (the name the user gave, see
    `lmtune.training.export.base_model_name`).

    Built in a sibling temporary folder and renamed into place, replacing an older export, so
    ``dest`` is never half-written.
    """
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.move(str(saved), str(tmp))
    load_tokenizer(tokenizer_from, trust_remote_code=trust_remote_code).save_pretrained(str(tmp))
    if base_model is not None:
        name_base_model(tmp, base_model)
    (tmp / CONFIG_FILE).write_text(config_text, encoding="utf-8")
    if dest.exists():
        shutil.rmtree(dest)
    tmp.rename(dest)
    return dest


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def _gpu_names() -> list[str]:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.strip() for line in out.stdout.splitlines() if line.strip()] if out.returncode == 0 else []


def describe_machine(*, gpu: bool, workers: int, threads: int) -> str:
    """One line: the GPU(s) the runs used, else the CPU model and cores, and how runs shared them."""
    share = f"{workers} run(s) at a time"
    gpus = _gpu_names() if gpu else []
    if gpus:
        names = ", ".join(sorted(set(gpus)))
        return f"GPU: {names} ({len(gpus)} visible, one per run; {share}); CPU: {_cpu_model()}"
    cores = os.cpu_count() or 1
    return f"CPU: {_cpu_model()}, {cores} cores ({share}, {threads} threads each); no GPU"
