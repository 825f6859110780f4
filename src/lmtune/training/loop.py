"""The fine-tuning loop. Reads top to bottom: set up, train in steps, evaluate at data rungs, decide.

Fidelity is data: a trial evaluates each time another ``examples_per_unit`` training examples have
been seen, and trains for ``total_examples`` in all, whatever its batch size. So every trial is
judged at the same amounts of data, and pruners/PBT compare like with like.

After each evaluation the driver answers (when the spec is interactive) with a `lmtune.protocol`
decision: ``Continue``; ``Stop`` (pruned); ``Pause`` (PBT: exit now, resumed later from the checkpoint
just saved); or ``Exploit`` (PBT: load that member's exact checkpoint, switch to the new settings, go
on from its position).
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lmtune.config import TrainingSection
from lmtune.protocol import (
    PROGRESS_EVERY_S,
    Decision,
    Ending,
    Exploit,
    TrialSpec,
    checkpoint_folder,
    progress_event,
)
from lmtune.training import distributed
from lmtune.training.checkpoint import full_state, load_checkpoint, save_checkpoint
from lmtune.training.optim import retune
from lmtune.training.serving import latency_ms, parameters
from lmtune.training.session import Session, setup

Emit = Callable[[dict[str, Any]], None]
# Settings that shape the trainable weights (LoRA adapters) or their scaling: an exploit that changes one
# rebuilds the model instead of setting it in place.
_ADAPTER_SHAPE = ("lora_enabled", "lora_r", "lora_alpha", "lora_target_modules")
Decide = Callable[[], Decision]


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

    def position(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "curve"}


def train(spec: TrialSpec, emit: Emit, decide: Decide) -> dict[str, Any]:
    """Run one trial; returns the end event's payload. Raises on failure (the worker reports it)."""
    t0 = time.perf_counter()
    g = distributed.group()  # rank 0 of 1 unless the trial runs data-parallel (training.distributed)
    s = setup(spec)
    prog = Progress()
    if spec.resume_from:
        prog = _resume(s, Path(spec.resume_from), restore_rng=True)
        # the restored optimizer holds the saving run's settings; this trial's are in force from here (a
        # member resumed after an exploit trains the explored ones; an own pause changes nothing)
        retune(s.optimizer, s.scheduler, s.hp)
    print(f"precision: {s.precision} ({s.precision_reason}); forward: {s.forward}", file=sys.stderr, flush=True)
    emit({"event": "start", "precision": s.precision, "precision_reason": s.precision_reason, "forward": s.forward,
          "device": str(s.device), "total_steps": s.total_steps,
          "load_time_s": time.perf_counter() - t0, "resumed_at_units": prog.units,
          **({"sharded": _held(s.model)} if g.sharded else {})})
    lengths = s.train_split.lengths()
    loss_sum, loss_n = torch.zeros((), device=s.device), 0
    best_state: dict[str, torch.Tensor] | None = None
    times = {"train": 0.0, "eval": 0.0}
    tick = time.perf_counter()
    ending = Ending.COMPLETED
    shown = 0.0  # when the last progress event went out
    serve: dict[str, float] = {}  # serving cost (spec.measure_serving), once measured
    while not s.done(prog.examples):
        index = s.batch_at(prog.step)
        loss_sum += _step(s, index, emit)
        loss_n += 1
        prog.step += 1
        prog.examples += len(index)
        prog.tokens += int(lengths[index].sum())
        if time.perf_counter() - shown >= PROGRESS_EVERY_S:  # from the first step: the display's bars
            shown = time.perf_counter()
            emit(progress_event(examples=prog.examples, tokens=prog.tokens, total_examples=spec.total_examples))
        if prog.examples < (prog.units + 1) * spec.examples_per_unit and not s.done(prog.examples):
            continue
        if _skipped(spec, s, prog):  # no unit the scheduler needs lies in this interval: train on to the next
            continue
        times["train"] += time.perf_counter() - tick
        tick = time.perf_counter()
        metrics = _evaluate(s, prog, float(loss_sum) / max(loss_n, 1))
        if spec.measure_serving and (g.main or g.sharded):  # constant for the run; latency measured once, at
            serve = serve or _serving(s)  # the first evaluation (a multi-objective pruner's rungs compare it)
            metrics.update(serve)
        loss_sum.zero_()
        loss_n = 0
        times["eval"] += time.perf_counter() - tick
        improved = _record(prog, metrics, spec, s.hp)
        if improved and s.hp.early_stopping_patience:  # a sharded rank keeps its own shards
            best_state = {k: v.detach().clone() if g.sharded else v.detach().to("cpu", copy=True)
                          for k, v in s.model.state_dict().items()}
        point = prog.curve[-1]
        every = spec.checkpoint_every
        if every and (g.main or g.sharded) and (prog.units % every == 0 or s.done(prog.examples)):
            point = {**point, "checkpoint": str(save_checkpoint(
                checkpoint_folder(spec.output_dir, prog.units), s, prog.position()))}
        emit({"event": "eval", **point, "elapsed_s": time.perf_counter() - t0})
        patience = s.hp.early_stopping_patience
        if patience and prog.evals_since_best >= patience and not s.done(prog.examples):
            ending = Ending.EARLY_STOPPED
            break
        change = _scheduled(spec, prog.units)
        if change:  # a replayed PBT schedule: the settings in force from this unit on
            s.set_hyperparameters(s.hp.merged(change))
        if spec.interactive and not s.done(prog.examples):
            answer = g.broadcast(decide() if g.main else None)  # every rank takes rank 0's decision
            stop = Ending.after(answer)  # pause: the driver resumes this run later from its checkpoint
            if stop is not None:
                ending = stop
                break
            if isinstance(answer, Exploit):
                s, prog = _exploit(s, prog, answer, emit)
        tick = time.perf_counter()
    if best_state is not None and not ending.stopped:
        s.model.load_state_dict(best_state)  # report (and save) the best point, not the last
    return _finish(s, prog, ending, times, t0)


def _serving(s: Session) -> dict[str, float]:
    """The trained model's serving cost (`lmtune.training.serving`): its parameters and its latency per
    example on this device and precision."""
    return {**parameters(s.model), "serve_latency_ms": latency_ms(s.model, s.eval_split, pad_id=s.pad_id,
                                                                   device=s.device, autocast=s.autocast)}


def _held(model: torch.nn.Module) -> dict[str, int]:
    """A sharded rank's share of the weights: the elements it holds and the model's whole count."""
    params = list(model.parameters())
    local = sum(p.to_local().numel() if hasattr(p, "to_local") else p.numel() for p in params)
    return {"parameters_on_rank": int(local), "parameters": int(sum(p.numel() for p in params))}


def _skipped(spec: TrialSpec, s: Session, prog: Progress) -> bool:
    """Whether the evaluation at this unit boundary is skipped (``spec.eval_units``: the scheduler needs none
    of the units it passes; never the end, nor under early stopping, whose patience counts evaluations). A
    skipped boundary still counts its unit, as `_evaluate` would."""
    if not spec.eval_units or s.done(prog.examples) or s.hp.early_stopping_patience:
        return False
    reached = _unit_reached(prog, s)
    if any(prog.units < u <= reached for u in spec.eval_units):
        return False
    prog.units = reached
    return True


def _unit_reached(prog: Progress, s: Session) -> int:
    """The unit an evaluation here is counted at (not the end: that is ``max_units``)."""
    return min(max(prog.units + 1, prog.examples // s.spec.examples_per_unit), s.max_units - 1)


def _scheduled(spec: TrialSpec, units: int) -> dict[str, Any]:
    """Settings that a replayed schedule (``extra["schedule"]``: [{"units": u, "hparams": {...}}]) changes
    once ``units`` evaluation units are done; the entry at units 0 is the trial's own hparams."""
    for entry in spec.extra.get("schedule", []):
        if int(entry["units"]) == units and units > 0:
            return dict(entry["hparams"])
    return {}


def _step(s: Session, index: np.ndarray, emit: Emit) -> torch.Tensor:
    """One optimizer step on the batch ``index``, accumulated over micro-batches. Out of memory halves
    the micro-batch and redoes the step from clean gradients (same data, same update), down to 1. In a
    data-parallel trial the ranks agree first (`distributed.Group.worst`): an out-of-memory error on any
    rank makes every rank halve and redo the step, or, at micro-batch 1, every rank fail."""
    g = distributed.group()
    while True:
        status, loss = 0, None
        try:
            loss = _accumulate(s, index)
        except RuntimeError as exc:  # torch.OutOfMemoryError is a RuntimeError
            if not is_oom(exc):
                raise
            status = 1 if s.micro_batch_size > 1 else 2
            if g.world == 1 and status == 2:
                raise
        status = g.worst(status)
        if status == 0 and loss is not None:
            break
        if status == 2:
            raise torch.OutOfMemoryError(f"out of memory at micro-batch {s.micro_batch_size} on a rank of this "
                                         f"{g.world}-process trial; even one example per step does not fit")
        # outside the except block, so the failed step's tensors (held by the traceback) are freed
        s.optimizer.zero_grad(set_to_none=True)
        if s.device.type == "cuda":
            torch.cuda.empty_cache()
        s.micro_batch_size = max(1, s.micro_batch_size // 2)
        emit({"event": "oom_retry", "micro_batch_size": s.micro_batch_size, "step": s.scheduler.last_epoch})
    assert loss is not None
    loss = g.sum_gradients([p for p in s.model.parameters() if p.requires_grad], loss)
    if s.scaler is not None:
        s.scaler.unscale_(s.optimizer)
    if s.hp.max_grad_norm:
        torch.nn.utils.clip_grad_norm_(s.model.parameters(), s.hp.max_grad_norm)
    if s.scaler is not None:
        s.scaler.step(s.optimizer)
        s.scaler.update()
    else:
        s.optimizer.step()
    s.scheduler.step()
    s.optimizer.zero_grad(set_to_none=True)
    return loss


def _accumulate(s: Session, index: np.ndarray) -> torch.Tensor:
    """Backward over the micro-batches of ``index``; returns the batch's mean loss (detached).

    Each micro-batch's loss is its summed loss over the loss terms of the *whole* batch (examples, or
    label tokens for causal LM), so the accumulated gradient is the gradient of the batch mean: a batch
    of 8 as 1×8 and as 4×2 gives the same update, however the label tokens are spread. A data-parallel
    rank trains its slice ``index[rank::world]`` the same way (the ranks' gradients are then summed)."""
    terms = max(s.loss_terms(index), 1)
    total = torch.zeros((), device=s.device)
    g = distributed.group()
    mine = index[g.rank::g.world]
    chunks = [mine[i:i + s.micro_batch_size] for i in range(0, len(mine), s.micro_batch_size)]
    if g.sharded:  # every rank joins every forward/backward (FSDP gathers each block's weights from all)
        widest = math.ceil(math.ceil(len(index) / g.world) / s.micro_batch_size)
        chunks += [mine[:0]] * (widest - len(chunks))
    for chunk in chunks:
        batch = s.collate(chunk if len(chunk) else index[:1])  # an empty slice runs one row at weight 0
        labels = batch.pop("labels")
        with s.autocast:
            loss = s.train_loss(batch, labels) / terms * (1.0 if len(chunk) else 0.0)
        (s.scaler.scale(loss) if s.scaler is not None else loss).backward()
        total += loss.detach()
    return total


def is_oom(exc: BaseException) -> bool:
    text = str(exc).lower()
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in text or "can't allocate memory" in text


def _evaluate(s: Session, prog: Progress, train_loss: float) -> dict[str, float]:
    if not math.isfinite(train_loss):
        raise TrainingDiverged(f"training loss became {train_loss} by step {prog.step} "
                               f"(learning_rate={s.hp.learning_rate:.3g}); lower the learning rate")
    g = distributed.group()
    # rank 0 evaluates (sharded: every rank runs the forwards with it); every rank sees rank 0's result
    metrics = g.broadcast(s.evaluate() if g.main or g.sharded else None)
    metrics["train_loss"] = train_loss
    # The last evaluation is always unit max_units, whatever the batch size, so every trial's final
    # point sits at the same rung; a batch that overshoots a rung counts at the rung it reached.
    if s.done(prog.examples):
        prog.units = s.max_units
    else:
        prog.units = _unit_reached(prog, s)
    return metrics


def _record(prog: Progress, metrics: dict[str, float], spec: TrialSpec, hp: TrainingSection) -> bool:
    prog.curve.append({"step": prog.step, "units": prog.units, "examples": prog.examples, "tokens": prog.tokens,
                       "metrics": metrics})
    prog.last = metrics
    if _improved(metrics, prog.best, spec, hp):
        prog.best, prog.evals_since_best = metrics, 0
        return True
    prog.evals_since_best += 1
    return False


def _resume(s: Session, folder: Path, *, restore_rng: bool) -> Progress:
    pos = load_checkpoint(folder, s, restore_rng=restore_rng)
    return Progress(step=pos["step"], examples=pos["examples"], tokens=pos["tokens"], units=pos["units"],
                    best=pos.get("best"), last=pos.get("last"), evals_since_best=pos.get("evals_since_best", 0))


def _exploit(s: Session, prog: Progress, order: Exploit, emit: Emit) -> tuple[Session, Progress]:
    """PBT exploit + explore: take another member's exact state and position, then the new settings.
    Train tokens already spent stay counted (the budget is what this process trained). When the donor's
    LoRA adapters have another shape or scaling, the model is rebuilt with the donor's settings first."""
    spent = prog.tokens
    hp = s.hp.merged(order.hparams)
    if any(getattr(hp, k) != getattr(s.hp, k) for k in _ADAPTER_SHAPE):
        s = setup(dataclasses.replace(s.spec, hparams={**s.spec.hparams, **order.hparams}))
    new = _resume(s, Path(order.checkpoint), restore_rng=False)
    s.set_hyperparameters(s.hp.merged(order.hparams))
    new.curve = prog.curve
    new.tokens = max(new.tokens, spent)
    emit({"event": "exploited", "from": order.checkpoint, "units": new.units, "hparams": order.hparams})
    return s, new


def _finish(s: Session, prog: Progress, ending: Ending, times: dict[str, float],
            t0: float) -> dict[str, Any]:
    early = bool(s.hp.early_stopping_patience and prog.best)
    result: dict[str, Any] = {
        "event": "end", "metrics": (prog.best if early else prog.last) or {}, "last_metrics": prog.last or {},
        "step": prog.step, "units": prog.units, "examples": prog.examples, "train_tokens": prog.tokens,
        "train_time_s": times["train"], "eval_time_s": times["eval"], "precision": s.precision,
        "precision_reason": s.precision_reason, "forward": s.forward, "stopped_by": ending.wire,
        "total_steps": s.total_steps, "micro_batch_size": s.micro_batch_size,
    }
    done = not ending.stopped
    g = distributed.group()
    if not g.main and not g.sharded:
        return result  # rank 0 scores, saves and reports for the trial (sharded: every rank takes part)
    if s.spec.measure_serving and done:  # measured again on the model as trained and saved
        serve = _serving(s)
        result["metrics"] = {**result["metrics"], **serve}
        result["last_metrics"] = {**result["last_metrics"], **serve}
    if s.spec.evaluate_test and done:
        result["test_metrics"] = s.evaluate("test")
    adapter = s.spec.save_adapter and done and s.hp.lora_enabled
    # sharded: the whole state gathered once from every rank's shards, for the model and the adapter
    whole = full_state(s.model) if g.sharded and (adapter or (s.spec.save_model and done)) else None
    if s.spec.save_model and done:
        out = Path(s.spec.output_dir) / "model"
        if g.main:
            s.model.save_pretrained(out, safe_serialization=True, state_dict=whole)  # type: ignore[operator]
        result["model_dir"] = str(out)
    if adapter:
        from lmtune.training.lora import save_adapter

        if g.main:
            save_adapter(s.model, Path(s.spec.output_dir) / "adapter", state_dict=whole)  # type: ignore[arg-type]
        result["adapter_dir"] = str(Path(s.spec.output_dir) / "adapter")
    if not g.main:
        return result
    if s.device.type == "cuda":
        result["peak_memory_mb"] = torch.cuda.max_memory_allocated(s.device) / 2**20
    result["wall_time_s"] = time.perf_counter() - t0
    return result


def _improved(metrics: dict[str, float], best: dict[str, float] | None, spec: TrialSpec,
              hp: TrainingSection) -> bool:
    if best is None:
        return True
    value, ref = metrics.get(spec.metric, float("nan")), best.get(spec.metric, float("nan"))
    delta = hp.early_stopping_min_delta
    if not math.isfinite(ref):
        return math.isfinite(value)
    return value > ref + delta if spec.direction == "maximize" else value < ref - delta
