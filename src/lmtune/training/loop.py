"""The fine-tuning loop. Reads top to bottom: set up, train in steps, evaluate at data rungs, report.

Fidelity is data: a trial evaluates each time another ``examples_per_unit`` training examples have
been seen, and trains for ``total_examples`` in all, whatever its batch size. So every trial is
judged at the same amounts of data, and pruners/PBT compare like with like.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lmtune.data.tokenized import load_meta, load_split
from lmtune.training.batches import collate, train_batches
from lmtune.training.evaluate import evaluate
from lmtune.training.models import load_classifier
from lmtune.training.optim import build_optimizer, build_scheduler
from lmtune.training.spec import TrialSpec

Emit = Callable[[dict[str, Any]], None]
Decide = Callable[[], str]  # "continue" | "stop"


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


@dataclass
class Progress:
    step: int = 0
    examples: int = 0
    tokens: int = 0
    units: int = 0
    best: dict[str, float] | None = None
    last: dict[str, float] | None = None
    evals_since_best: int = 0
    curve: list[dict[str, Any]] = field(default_factory=list)


def pick_device(requested: str) -> torch.device:
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("execution.device: cuda was requested but no CUDA GPU is visible")
    return torch.device(requested)


def pick_precision(requested: str, device: torch.device) -> str:
    """The precision that will actually run: fp16 needs CUDA; 'auto' means bf16 where supported."""
    if requested == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "fp32"
    if requested == "fp16" and device.type != "cuda":
        return "bf16"  # fp16 autocast on CPU has no loss scaling and is slow; bf16 is the CPU half type
    return requested


def autocast_for(precision: str, device: torch.device) -> contextlib.AbstractContextManager[Any]:
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


def train(spec: TrialSpec, emit: Emit, decide: Decide) -> dict[str, Any]:
    """Run one trial; returns the end event's payload. Raises on failure (the worker reports it)."""
    t0 = time.perf_counter()
    hp = spec.hparams
    torch.manual_seed(int(hp.get("seed", 0)))
    device = pick_device(spec.device)
    precision = pick_precision(hp.get("precision", "fp32"), device)
    folder = Path(spec.data_cache)
    meta = load_meta(folder)
    train_split, eval_split = load_split(folder, "train"), load_split(folder, "validation")
    model = load_classifier(spec.model, num_labels=meta["num_labels"], dropout=hp.get("dropout"),
                            attention_dropout=hp.get("attention_dropout"),
                            trust_remote_code=spec.trust_remote_code).to(device)
    model.train()
    pad_id = int(model.config.pad_token_id or 0)
    batch_size = int(hp["batch_size"])
    total_steps = max(1, math.ceil(spec.total_examples / batch_size))
    optimizer = build_optimizer(model, hp, device)
    scheduler = build_scheduler(optimizer, hp, total_steps)
    scaler = torch.amp.GradScaler("cuda") if precision == "fp16" else None
    autocast = autocast_for(precision, device)
    emit({"event": "start", "precision": precision, "device": str(device), "total_steps": total_steps,
          "load_time_s": time.perf_counter() - t0})

    def run_eval(split: Any = eval_split, prefix: str = "eval") -> dict[str, float]:
        return evaluate(model, split, task_type=spec.task_type, num_labels=meta["num_labels"],
                        batch_size=int(hp.get("eval_batch_size", 128)), pad_id=pad_id, device=device,
                        autocast=autocast, prefix=prefix)

    lengths = train_split.lengths()
    prog = Progress()
    loss_sum = torch.zeros((), device=device)
    loss_n = 0
    epoch, batches, pos = 0, train_batches(lengths, batch_size, seed=int(hp.get("seed", 0)), epoch=0), 0
    best_state: dict[str, torch.Tensor] | None = None
    train_time = eval_time = 0.0
    tick = time.perf_counter()
    stopped_by: str | None = None
    while prog.step < total_steps:
        if pos >= len(batches):
            epoch, pos = epoch + 1, 0
            batches = train_batches(lengths, batch_size, seed=int(hp.get("seed", 0)), epoch=epoch)
        index = batches[pos]
        pos += 1
        loss = _step(model, collate(train_split, index, pad_id, device), optimizer, scheduler, scaler,
                     autocast, hp.get("max_grad_norm"))
        loss_sum += loss
        loss_n += 1
        prog.step += 1
        prog.examples += len(index)
        prog.tokens += int(lengths[index].sum())
        at_rung = prog.examples >= (prog.units + 1) * spec.examples_per_unit
        if not (at_rung or prog.step == total_steps):
            continue
        train_time += time.perf_counter() - tick
        tick = time.perf_counter()
        train_loss = float(loss_sum) / max(loss_n, 1)
        loss_sum.zero_()
        loss_n = 0
        if not math.isfinite(train_loss):
            raise TrainingDiverged(f"training loss became {train_loss} by step {prog.step} "
                                   f"(learning_rate={hp['learning_rate']:.3g}); lower the learning rate")
        metrics = run_eval()
        metrics["train_loss"] = train_loss
        eval_time += time.perf_counter() - tick
        prog.units = max(prog.units + 1, prog.examples // spec.examples_per_unit)
        point = {"step": prog.step, "units": prog.units, "examples": prog.examples, "tokens": prog.tokens,
                 "metrics": metrics}
        prog.curve.append(point)
        prog.last = metrics
        improved = _improved(metrics, prog.best, spec, hp)
        if improved:
            prog.best, prog.evals_since_best = metrics, 0
            if hp.get("early_stopping_patience"):
                best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        else:
            prog.evals_since_best += 1
        emit({"event": "eval", **point, "elapsed_s": time.perf_counter() - t0})
        patience = hp.get("early_stopping_patience")
        if patience and prog.evals_since_best >= patience and prog.step < total_steps:
            stopped_by = "early_stopping"
            break
        if spec.interactive and prog.step < total_steps and decide() == "stop":
            stopped_by = "pruned"
            break
        tick = time.perf_counter()
    if best_state is not None and stopped_by != "pruned":
        model.load_state_dict(best_state)  # report (and save) the best point, not the last
    final = prog.best if (hp.get("early_stopping_patience") and prog.best) else prog.last
    result: dict[str, Any] = {
        "event": "end", "metrics": final or {}, "last_metrics": prog.last or {}, "step": prog.step,
        "units": prog.units, "examples": prog.examples, "train_tokens": prog.tokens,
        "train_time_s": train_time, "eval_time_s": eval_time, "precision": precision,
        "stopped_by": stopped_by, "total_steps": total_steps,
    }
    if spec.evaluate_test and stopped_by != "pruned":
        result["test_metrics"] = run_eval(load_split(folder, "test"), prefix="test")
    if spec.save_model and stopped_by != "pruned":
        out = Path(spec.output_dir) / "model"
        model.save_pretrained(out, safe_serialization=True)
        result["model_dir"] = str(out)
    result["wall_time_s"] = time.perf_counter() - t0
    return result


def _step(model: torch.nn.Module, batch: dict[str, torch.Tensor], optimizer: torch.optim.Optimizer,
          scheduler: Any, scaler: Any, autocast: contextlib.AbstractContextManager[Any],
          max_grad_norm: float | None) -> torch.Tensor:
    with autocast:
        loss = model(**batch).loss
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
    else:
        loss.backward()
    if max_grad_norm:
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.detach().float()


def _improved(metrics: dict[str, float], best: dict[str, float] | None, spec: TrialSpec,
              hp: dict[str, Any]) -> bool:
    if best is None:
        return True
    value, ref = metrics.get(spec.metric, float("nan")), best.get(spec.metric, float("nan"))
    delta = float(hp.get("early_stopping_min_delta", 0.0))
    if not np.isfinite(ref):
        return bool(np.isfinite(value))
    return value > ref + delta if spec.direction == "maximize" else value < ref - delta

