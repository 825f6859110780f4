"""Exact checkpoints: weights, optimizer, scheduler, grad scaler, RNG states and the data position.

Weights go to safetensors; optimizer/scheduler state dicts are tensors and numbers saved with
``torch.save`` and read back with ``torch.load(weights_only=True)``, which refuses arbitrary
objects (no untrusted pickle). Only trainable weights are saved (the adapter under LoRA), so PBT
copies and resumes stay small. A checkpoint folder is written to a temporary name and renamed, so
a reader never sees half a checkpoint.

A sharded trial (``execution.shard_model``) gathers every rank's shards into full tensors for the same
files (every rank takes part, rank 0 writes); its optimizer state is keyed by parameter name instead of
position (``torch.distributed.checkpoint.state_dict``), so it resumes in a sharded trial only.
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
from lmtune.training import distributed
from lmtune.training.session import Session

WEIGHTS = "weights.safetensors"
STATE = "trainer_state.pt"
PROGRESS = CHECKPOINT_MANIFEST  # written last; names the files above (lmtune.protocol.checkpoint_complete)


def _full() -> Any:
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, cpu_offload=True)


def full_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A sharded model's whole state dict as full CPU tensors on rank 0 (empty on the others). Every rank
    must call it: each block's shards are gathered from all of them."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    state: dict[str, Any] = get_model_state_dict(model, options=_full())
    return state


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Trainable parameters and buffers: under LoRA just the adapter (and head); else everything."""
    params = dict(model.named_parameters(remove_duplicate=False))
    state = full_state(model) if distributed.group().sharded else model.state_dict()
    return {k: v.detach().contiguous().cpu() for k, v in state.items()
            if k not in params or params[k].requires_grad}


def save_checkpoint(folder: Path, session: Session, progress: dict[str, Any]) -> Path:
    """Write the checkpoint atomically; ``progress`` is JSON (step, examples, tokens, units, ...). In a
    sharded trial every rank calls it and rank 0 writes."""
    weights = trainable_state(session.model)
    if distributed.group().sharded:
        from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

        optimizer = get_optimizer_state_dict(session.model, session.optimizer, options=_full())
        if not distributed.group().main:
            return folder
    else:
        optimizer = session.optimizer.state_dict()
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(_dedupe(weights), str(tmp / WEIGHTS))
    torch.save({
        "optimizer": optimizer,
        "scheduler": session.scheduler.state_dict(),
        "scaler": session.scaler.state_dict() if session.scaler is not None else None,
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy_rng": _numpy_state(),
    }, tmp / STATE)
    (tmp / PROGRESS).write_text(json.dumps({**progress, "python_rng": _python_state(),
                                            "hparams": session.hp.model_dump(mode="json"), "files": [WEIGHTS, STATE]},
                                           default=float))
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(tmp, folder)
    return folder


def load_checkpoint(folder: Path, session: Session, *, restore_rng: bool = True) -> dict[str, Any]:
    """Restore weights, optimizer, scheduler, scaler (and RNG) into ``session``; returns progress."""
    sharded = distributed.group().sharded
    weights = load_file(str(folder / WEIGHTS), device="cpu" if sharded else str(session.device))
    if sharded:  # every rank read the full tensors; each keeps its own shards
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            set_model_state_dict,
            set_optimizer_state_dict,
        )

        unexpected = sorted(set(weights) - set(session.model.state_dict()))
        if unexpected:
            raise ValueError(f"checkpoint {folder} does not fit the model: unexpected {unexpected[:3]}")
        full: dict[str, Any] = dict(weights)
        set_model_state_dict(session.model, full, options=StateDictOptions(full_state_dict=True, strict=False))
    else:
        missing = session.model.load_state_dict(weights, strict=False)
        if missing.unexpected_keys:
            raise ValueError(f"checkpoint {folder} does not fit the model: unexpected {missing.unexpected_keys[:3]}")
    state = torch.load(folder / STATE, map_location="cpu" if sharded else session.device, weights_only=True)
    if sharded:
        set_optimizer_state_dict(session.model, session.optimizer, state["optimizer"],
                                 options=StateDictOptions(full_state_dict=True))
    else:
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
