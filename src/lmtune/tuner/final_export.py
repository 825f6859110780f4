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
from collections.abc import Mapping, Sequence
from itertools import pairwise
from pathlib import Path
from typing import Any

import yaml

from lmtune.training.models import load_tokenizer

CONFIG_FILE = "lmtune-config.yaml"


def config_yaml(study_config: Mapping[str, Any], hparams: Mapping[str, Any], *, header: Sequence[str] = (),
                schedule: Sequence[Mapping[str, Any]] | None = None) -> str:
    """An lmtune config that trains ``hparams``: the study's config, its training section set to them,
    and no search. Settings the training section has no field for and a PBT
    schedule are kept as comments, so the file still loads with ``lmtune.config.load_config``."""
    order = ("study", "task", "training", "search", "execution", "budget")
    full = {k: study_config[k] for k in order if k in study_config}
    full.update({k: v for k, v in study_config.items() if k not in order})
    # A study of its own: tuning this file must never add trials to the study it came from.
    name = str((full.get("study") or {}).get("name", "lmtune"))
    full["study"] = {**(full.get("study") or {}), "name": f"{name}-best", "dir": f"runs/{name}-best",
                     "storage": None}
    fields = full.get("training") or {}
    full["training"] = {k: v for k, v in hparams.items() if k in fields}
    full["search"] = {**(full.get("search") or {}), "space": {}, "preset": None, "n_trials": 1}
    lines = [f"# {h}" for h in header]
    others = {k: v for k, v in hparams.items() if k not in fields}
    if others:
        lines.append("# also set (no training field): " + ", ".join(f"{k}={v}" for k, v in others.items()))
    if schedule:
        lines.append("# PBT schedule replayed: units 0 trains with the training section below; then")
        for prev, step in pairwise(schedule):
            changed = {k: v for k, v in step["hparams"].items() if prev["hparams"].get(k) != v}
            lines.append(f"#   from unit {step['units']}: " + (", ".join(f"{k}={v}" for k, v in changed.items())
                                                                or "no change"))
    return "\n".join(lines) + ("\n" if lines else "") + yaml.safe_dump(full, sort_keys=False)


def export_model(saved: Path, dest: Path, *, tokenizer_from: str, config_text: str,
                 trust_remote_code: bool = False) -> Path:
    """Move the trainer's saved model folder to ``dest`` with the tokenizer and the config file.

    Built in a sibling temporary folder and renamed into place, replacing an older export, so
    ``dest`` is never half-written.
    """
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.move(str(saved), str(tmp))
    load_tokenizer(tokenizer_from, trust_remote_code=trust_remote_code).save_pretrained(str(tmp))
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
