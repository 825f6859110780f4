"""Everything a trial trains with, built once from the trial spec: data, model, optimizer, schedule.

Kept apart from the loop so task-specific set-up (classification, causal LM, LoRA) and the loop
(steps, evaluations, checkpoints, decisions) change independently.
"""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lmtune.config import SHARDED_4BIT, SHARDED_FP16, TrainingSection
from lmtune.data import TokenizedSplit, load_meta, load_split
from lmtune.errors import ConfigError
from lmtune.protocol import TrialSpec
from lmtune.training import distributed
from lmtune.training.batches import collate, loss_terms, train_batches
from lmtune.training.evaluate import evaluate, summed_loss
from lmtune.training.fastpath import FAST_CPU, Forward, LossFunction, eval_forward, prepare
from lmtune.training.metrics import MetricFunction, load_metric_function
from lmtune.training.models import load_causal_lm, load_classifier
from lmtune.training.optim import build_optimizer, build_scheduler, mark_groups, retune
from lmtune.training.packing import check_isolated, collate_packed
from lmtune.training.proxy import apply_proxy


def pick_device(requested: str) -> torch.device:
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("execution.device: cuda was requested but no CUDA GPU is visible")
    return torch.device(requested)


# On an H200, bf16/fp16 autocast trained MiniLM-L6 (22M parameters) 5x and LoRA on SmolLM2-135M 1.6x slower
# than fp32 (launch-bound: thousands of cast kernels per step; docs/benchmarks/gpu-check-h200.md). `auto`
# keeps fp32 on a GPU up to this size, the largest measured; larger models get autocast (not measured here).
AUTOCAST_SLOWER_UP_TO = 150_000_000


def cpu_has_amx() -> bool:
    """Whether this CPU has AMX tiles (Sapphire Rapids and later), where bf16 matmuls run natively."""
    probe = getattr(torch._C._cpu, "_is_amx_tile_supported", None)
    return bool(probe()) if probe is not None else False


def pick_precision(requested: str, device: torch.device, *, parameters: int | None = None) -> tuple[str, str]:
    """The precision that will actually run, and why (the trial records both). fp16 needs CUDA; ``auto``
    takes the faster option where lmtune measured one that keeps quality, else fp32."""
    if requested == "auto":
        if device.type == "cuda":
            if parameters is not None and parameters <= AUTOCAST_SLOWER_UP_TO:
                return "fp32", (f"auto: fp32 on the GPU for a model of {parameters / 1e6:.0f}M parameters: autocast "
                                "was measured slower than fp32 for models up to 135M (launch-bound on an H200)")
            if torch.cuda.is_bf16_supported():
                return "bf16", "auto: bf16 autocast on a GPU that supports bf16, for a model above 150M parameters"
            return "fp16", "auto: fp16 autocast with loss scaling (this GPU has no bf16)"
        if cpu_has_amx():
            return "fp32", ("auto: fp32 on a CPU with AMX: bf16 autocast is faster there, but lmtune has not measured "
                            "its accuracy cost yet; set training.precision: bf16 to use it")
        return "fp32", "auto: fp32 on a CPU without AMX (bf16 autocast is emulated there and slower than fp32)"
    if requested == "fp16" and device.type != "cuda":
        return "bf16", "fp16 asked on a CPU: bf16 runs instead (fp16 autocast on a CPU has no loss scaling and is slow)"
    return requested, f"{requested}: as set in training.precision"


def autocast_for(precision: str, device: torch.device) -> contextlib.AbstractContextManager[Any]:
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


@dataclass
class Session:
    spec: TrialSpec
    hp: TrainingSection  # the trial's settings, typed (`TrainingSection.of` its trial file's hparams)
    device: torch.device
    precision: str
    precision_reason: str
    meta: dict[str, Any]
    folder: Path
    train_split: TokenizedSplit
    eval_split: TokenizedSplit
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler | None
    pad_id: int
    batch_size: int
    total_steps: int
    micro_batch_size: int = 1  # examples per forward/backward; halved on out-of-memory
    train_terms: np.ndarray | None = None  # loss terms (examples or label tokens) per train row
    metric_fn: MetricFunction | None = None  # task.compute_metrics, loaded once per trial
    fast_loss: LossFunction | None = None  # the training loss through `lmtune.training.fastpath` (None: stock)
    forward: str = "the model's own forward"  # which forward the training steps run, and why (recorded)
    eval_logits: Forward | None = None  # evaluation's forward (`lmtune.training.fastpath.eval_forward`; None: stock)

    def loss_terms(self, index: np.ndarray) -> int:
        """Loss terms of a whole batch: each micro-batch's summed loss is divided by this."""
        return int(self.train_terms[index].sum()) if self.train_terms is not None else len(index)

    @property
    def max_units(self) -> int:
        return max(1, math.ceil(self.spec.total_examples / self.spec.examples_per_unit))

    def done(self, examples: int) -> bool:
        """Training ends once ``total_examples`` examples were seen (fidelity is data, not steps)."""
        return examples >= self.spec.total_examples

    @property
    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        return autocast_for(self.precision, self.device)

    def batch_at(self, step: int) -> np.ndarray:
        """The example indices of optimizer step ``step``: a pure function of (seed, step), so a run
        resumed at any step sees exactly the batches the uninterrupted run saw."""
        lengths = self.train_split.lengths()
        per_epoch = math.ceil(len(lengths) / self.batch_size)
        epoch, pos = divmod(step, per_epoch)
        if getattr(self, "_epoch", None) != epoch:
            self._batches = train_batches(lengths, self.batch_size, seed=self.hp.seed, epoch=epoch,
                                          by_length=self.hp.group_by_length)
            self._epoch = epoch
        return self._batches[pos]

    def train_loss(self, batch: dict[str, torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        """The summed training loss of a collated micro-batch (`summed_loss`), through the fast forward
        `lmtune.training.fastpath.prepare` chose for this trial where there is one."""
        if self.fast_loss is not None:
            return self.fast_loss(batch, labels)
        return summed_loss(self.model(**batch).logits, labels, self.spec.task_type)

    def collate(self, index: np.ndarray) -> dict[str, Any]:
        """The model's keyword arguments (and ``labels``) for the examples ``index``: padded to the longest,
        or packed end to end (``training.packing``; `lmtune.training.packing`), read per call so that a
        replayed or exploited setting takes effect at once."""
        if self.hp.packing:
            return collate_packed(self.train_split, index, self.pad_id, self.device, int(self.meta["max_length"]))
        return collate(self.train_split, index, self.pad_id, self.device)

    def evaluate(self, split: str = "validation") -> dict[str, float]:
        data = self.eval_split if split == "validation" else load_split(self.folder, split)
        return evaluate(self.model, data, task_type=self.spec.task_type, num_labels=self.meta["num_labels"],
                        batch_size=self.hp.eval_batch_size, pad_id=self.pad_id,
                        device=self.device, autocast=self.autocast,
                        prefix="eval" if split == "validation" else split, metric_fn=self.metric_fn,
                        forward=self.eval_logits)

    def set_hyperparameters(self, hp: TrainingSection) -> None:
        """Apply changed settings mid-run (a PBT exploit, a replayed schedule): those in
        `lmtune.protocol.CHANGED_IN_PLACE` — the optimizer's (`lmtune.training.optim.retune`), gradient
        clipping and LoRA dropout. Other settings (model dropout, whose attention part lives inside the
        attention kernels) are applied by building the model again: the driver restarts the trainer from
        the checkpoint for those."""
        self.hp = hp
        retune(self.optimizer, self.scheduler, hp)
        for name, module in self.model.named_modules():
            if isinstance(module, torch.nn.Dropout) and ".lora_dropout." in name:
                module.p = hp.lora_dropout


def load_model(spec: TrialSpec, hp: TrainingSection, num_labels: int, label_names: list[str] | None = None,
               device: torch.device | None = None) -> Any:
    """The task's model with the trial's dropout, wrapped with LoRA adapters when ``lora_enabled`` (on a
    4-bit base, placed on ``device``, with ``lora_quantization: 4bit``)."""
    quantized = hp.lora_enabled and hp.lora_quantization == "4bit"
    if quantized:
        require_4bit(device)
    common: dict[str, Any] = {"dropout": hp.dropout, "attention_dropout": hp.attention_dropout,
                              "trust_remote_code": spec.trust_remote_code,
                              # a proxy trial reads only the blocks it keeps from the checkpoint
                              "num_layers": int(spec.extra["truncate_layers"]) if spec.extra.get("truncate_layers")
                              else None}
    if quantized:
        common.update(quantization="4bit", device=str(device))
    if spec.task_type == "causal_lm":
        model = load_causal_lm(spec.model, **common)
    else:
        model = load_classifier(spec.model, num_labels=num_labels, label_names=label_names, **common)
    apply_proxy(model, spec.extra)  # a proxy trial (lmtune.tuner.proxy) keeps only the first k blocks
    if hp.gradient_checkpointing:
        enable_checkpointing(model)
    if not hp.lora_enabled:
        return model
    from lmtune.training.lora import apply_lora

    targets = hp.lora_target_modules
    if isinstance(targets, str):  # "q_proj,v_proj": one searchable categorical value
        targets = [t.strip() for t in targets.split(",") if t.strip()]
    try:
        return apply_lora(model, r=hp.lora_r, alpha=hp.lora_alpha, dropout=hp.lora_dropout,
                          target_modules=targets or None,
                          task_type=spec.task_type, quantized=quantized)
    except ValueError as exc:
        raise ConfigError(f"training.lora_target_modules: {exc}") from None


def require_4bit(device: torch.device | None) -> None:
    """QLoRA's 4-bit base needs bitsandbytes and a CUDA device (the config is checked before the study
    starts; this is the trainer's own check, e.g. for a Ray worker without either)."""
    import importlib.util

    missing = [what for what, ok in (("the bitsandbytes package", importlib.util.find_spec("bitsandbytes")),
                                     ("a CUDA device", device is not None and device.type == "cuda")) if not ok]
    if missing:
        raise ConfigError(f"training.lora_quantization: 4bit (QLoRA) needs {' and '.join(missing)}, which this "
                          f"trainer lacks (device {device}); pip install 'lmtune[qlora]' on a CUDA machine, or "
                          "set training.lora_quantization: none")


def enable_checkpointing(model: Any) -> None:
    """Gradient checkpointing: the blocks' activations are recomputed in the backward pass instead of
    kept (less memory, about a third more compute). Non-reentrant, so LoRA (frozen inputs) works and the
    dropout masks are replayed exactly: the run trains the same weights as without it."""
    if not getattr(model, "supports_gradient_checkpointing", False):
        raise ConfigError(f"training.gradient_checkpointing: {type(model).__name__} does not support gradient "
                          "checkpointing; set it to false")
    model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})


def steps_for(total_examples: int, rows: int, batch_size: int) -> int:
    """Optimizer steps to see ``total_examples`` examples when each epoch of ``rows`` rows ends with a
    partial batch (what `train_batches` yields); used to lay out the learning-rate schedule."""
    per_epoch = math.ceil(rows / batch_size)
    epochs, rest = divmod(total_examples, rows)
    return max(1, epochs * per_epoch + math.ceil(rest / batch_size))


def setup(spec: TrialSpec) -> Session:
    hp = TrainingSection.of(spec.hparams)
    torch.manual_seed(hp.seed)
    device = pick_device(distributed.group().device(spec.device))
    folder = Path(spec.data_cache)
    meta = load_meta(folder)
    if hp.packing and spec.task_type != "causal_lm":
        raise ConfigError(f"training.packing: packs causal-LM examples; task.type {spec.task_type} has none to "
                          "pack; set training.packing: false")
    model = load_model(spec, hp, meta["num_labels"], meta.get("label_names"), device=device)
    precision, precision_reason = pick_precision(hp.precision, device,
                                                 parameters=sum(p.numel() for p in model.parameters()))
    if not getattr(model, "is_loaded_in_4bit", False):  # a 4-bit base was placed on the device as it loaded
        model = model.to(device)
    if distributed.group().sharded:
        if precision == "fp16":
            raise ConfigError(SHARDED_FP16)
        if getattr(model, "is_loaded_in_4bit", False):
            raise ConfigError(SHARDED_4BIT)
        distributed.shard(model, device)  # before the optimizer: it holds the shards, not full tensors
    fast_loss, forward, eval_logits = None, f"the model's own forward ({FAST_CPU}=0)", None
    if os.environ.get(FAST_CPU, "1") != "0":  # the same function in less work (lmtune.training.fastpath)
        fast_loss, forward = prepare(model, task_type=spec.task_type, device=device,
                                     sharded=distributed.group().sharded,
                                     checkpointing=hp.gradient_checkpointing)
        eval_logits = eval_forward(model, task_type=spec.task_type, device=device,
                                   sharded=distributed.group().sharded)
    model.train()
    batch_size = hp.batch_size
    train_split = load_split(folder, "train")
    if hp.packing:
        check_isolated(model, train_split, device)
    total_steps = steps_for(spec.total_examples, int(meta["splits"]["train"]["rows"]), batch_size)
    optimizer = build_optimizer(model, hp, device)
    mark_groups(optimizer, hp.learning_rate)
    return Session(spec=spec, hp=hp, device=device, precision=precision, precision_reason=precision_reason,
                   meta=meta, folder=folder,
                   train_split=train_split, eval_split=load_split(folder, "validation"),
                   model=model, optimizer=optimizer, scheduler=build_scheduler(optimizer, hp, total_steps),
                   scaler=torch.amp.GradScaler("cuda") if precision == "fp16" else None,
                   pad_id=int(model.config.pad_token_id or 0), batch_size=batch_size, total_steps=total_steps,
                   micro_batch_size=min(hp.micro_batch_size or batch_size, batch_size),
                   train_terms=loss_terms(train_split), fast_loss=fast_loss, forward=forward, eval_logits=eval_logits,
                   metric_fn=load_metric_function(spec.compute_metrics, search_path=spec.compute_metrics_path)
                   if spec.compute_metrics else None)
