"""Exact checkpoints: weights, optimizer, scheduler, grad scaler, RNG states and the data position.

Weights go to safetensors; optimizer/scheduler state dicts are tensors and numbers saved with
``torch.save`` and read back with ``torch.load(weights_only=True)``, which refuses arbitrary
objects (no untrusted pickle). Only trainable weights are saved (the adapter under LoRA), so PBT
copies and resumes stay small. A checkpoint folder is written to a temporary name and renamed, so
a reader never sees half a checkpoint.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from lmtune.protocol import CHECKPOINT_MANIFEST
from lmtune.training.session import Session

WEIGHTS = "weights.safetensors"
STATE = "trainer_state.pt"
PROGRESS = CHECKPOINT_MANIFEST  # written last; names the files above (lmtune.protocol.checkpoint_complete)


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Trainable parameters and buffers: under LoRA just the adapter (and head); else everything."""
    params = dict(model.named_parameters(remove_duplicate=False))
    return {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()
            if k not in params or params[k].requires_grad}


def save_checkpoint(folder: Path, session: Session, progress: dict[str, Any]) -> Path:
    """Write the checkpoint atomically; ``progress`` is JSON (step, examples, tokens, units, ...)."""
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(_dedupe(trainable_state(session.model)), str(tmp / WEIGHTS))
    torch.save({
        "optimizer": session.optimizer.state_dict(),
        "scheduler": session.scheduler.state_dict(),
        "scaler": session.scaler.state_dict() if session.scaler is not None else None,
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy_rng": _numpy_state(),
    }, tmp / STATE)
    (tmp / PROGRESS).write_text(json.dumps({**progress, "python_rng": _python_state(),
                                            "hparams": session.hp, "files": [WEIGHTS, STATE]}, default=float))
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(tmp, folder)
    return folder


def load_checkpoint(folder: Path, session: Session, *, restore_rng: bool = True) -> dict[str, Any]:
    """Restore weights, optimizer, scheduler, scaler (and RNG) into ``session``; returns progress."""
    weights = load_file(str(folder / WEIGHTS), device=str(session.device))
    missing = session.model.load_state_dict(weights, strict=False)
    if missing.unexpected_keys:
        raise ValueError(f"checkpoint {folder} does not fit the model: unexpected {missing.unexpected_keys[:3]}")
    state = torch.load(folder / STATE, map_location=session.device, weights_only=True)
    session.optimizer.load_state_dict(state["optimizer"])
    session.scheduler.load_state_dict(state["scheduler"])
    if session.scaler is not None and state["scaler"] is not None:
        session.scaler.load_state_dict(state["scaler"])
    progress = dict(json.loads((folder / PROGRESS).read_text()))
    if restore_rng:
        torch.set_rng_state(state["torch_rng"].cpu())
        if state["cuda_rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda_rng"]])
        _set_numpy_state(state["numpy_rng"])
        random.setstate(_to_tuple(progress["python_rng"]))
    return progress


def _dedupe(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """safetensors refuses shared storage (tied embeddings): clone the second and later aliases."""
    seen: set[int] = set()
    out = {}
    for k, v in state.items():
        ptr = v.data_ptr()
        out[k] = v.clone() if ptr in seen else v
        seen.add(ptr)
    return out


def _numpy_state() -> dict[str, Any]:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {"name": name, "keys": torch.from_numpy(np.asarray(keys).astype(np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "cached": float(cached)}


def _set_numpy_state(s: dict[str, Any]) -> None:
    np.random.set_state((s["name"], s["keys"].cpu().numpy().astype(np.uint32), s["pos"], s["has_gauss"], s["cached"]))


def _python_state() -> list[Any]:
    version, internal, gauss = random.getstate()
    return [version, list(internal), gauss]


def _to_tuple(s: list[Any]) -> tuple[Any, ...]:
    return (s[0], tuple(s[1]), s[2])
