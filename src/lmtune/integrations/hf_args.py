"""A trial's training settings as ``transformers.TrainingArguments`` keywords, in the trial's own units.

One mapping for the two places that need it: `LmtuneCallback.arguments()` (a script trial trains with
it) and ``lmtune export --format hf`` (the best configuration, for a user's own Trainer). No
transformers import: the CLI uses it too.

What HF has no field for (dropout lives in the model config; Adam with L2 rather than decoupled decay;
layer-wise LR decay; LoRA, which is a ``peft.LoraConfig``; its 4-bit base, a ``BitsAndBytesConfig`` at load;
packing, TRL's ``SFTConfig(packing=True)``) is returned apart, by `lmtune_only`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

SCHEDULERS = {"linear": "linear", "cosine": "cosine", "constant": "constant"}
HF_OPTIM = {"adamw": "adamw_torch", "sgd": "sgd", "adafactor": "adafactor"}


class ArgumentsError(ValueError):
    """The settings cannot be laid out on this many processes."""


def trainer_arguments(hp: Mapping[str, Any], *, total_examples: int, examples_per_unit: int,
                      world: int = 1) -> dict[str, Any]:
    """Batch (per device × accumulation × ``world`` = the trial's batch), length as ``max_steps`` of the
    trial's own batch, evaluation every ``examples_per_unit`` examples, warm-up in steps (the pinned
    transformers has no ``warmup_ratio``), schedule, decay, clipping, seed, batch order, checkpointing."""
    batch = int(hp["batch_size"])
    micro = int(hp["micro_batch_size"] or batch)
    if batch % world:
        raise ArgumentsError(f"training.batch_size {batch} does not split over {world} processes; use a multiple "
                             f"of {world}")
    per_device = min(micro, batch // world)
    while (batch // world) % per_device:
        per_device -= 1
    steps = max(1, math.ceil(total_examples / batch))
    every = max(1, round(examples_per_unit / batch))
    ratio = float(hp["warmup_ratio"])
    warmup = max(1, round(ratio * steps)) if ratio > 0 else 0
    schedule = SCHEDULERS[str(hp["lr_scheduler"])]
    if schedule == "constant" and warmup:
        schedule = "constant_with_warmup"  # lmtune's constant schedule warms up too
    args: dict[str, Any] = {
        "learning_rate": float(hp["learning_rate"]), "per_device_train_batch_size": per_device,
        "gradient_accumulation_steps": batch // (per_device * world), "max_steps": steps,
        "per_device_eval_batch_size": int(hp["eval_batch_size"]), "eval_strategy": "steps", "eval_steps": every,
        "logging_steps": every, "weight_decay": float(hp["weight_decay"]),
        "max_grad_norm": float(hp["max_grad_norm"] or 0.0), "lr_scheduler_type": schedule,
        "warmup_steps": warmup, "seed": int(hp["seed"]),
        "train_sampling_strategy": "group_by_length" if hp.get("group_by_length") else "random",
    }
    if hp["gradient_checkpointing"]:  # non-reentrant, as lmtune's trainer: LoRA's frozen inputs work
        args.update(activation_checkpointing=True, activation_checkpointing_kwargs={"use_reentrant": False})
    return args


def optimizer_arguments(hp: Mapping[str, Any]) -> dict[str, Any] | None:
    """``optim`` (and its settings) when HF's own optimizer is lmtune's; None when it is not (Adam with L2
    weight decay, layer-wise LR decay): then lmtune's optimizer must be built (``LmtuneCallback.optimizers``)."""
    name = str(hp["optimizer"])
    if name == "adam" and float(hp["weight_decay"]) == 0:
        name = "adamw"  # Adam and AdamW are the same optimizer without weight decay
    if name not in HF_OPTIM or float(hp["layer_decay"]) != 1.0:
        return None
    out: dict[str, Any] = {"optim": HF_OPTIM[name]}
    if name == "sgd":
        out["optim_args"] = f"momentum={float(hp['momentum'])},nesterov={bool(hp['nesterov'])}"
    else:
        out.update(adam_beta1=float(hp["beta1"]), adam_beta2=float(hp["beta2"]), adam_epsilon=float(hp["eps"]))
    return out


def lmtune_only(hp: Mapping[str, Any]) -> dict[str, Any]:
    """The settings of ``hp`` that TrainingArguments cannot carry, for the user to apply (documented in
    docs/bring-your-own-trainer.md): dropout (the model config), the optimizer when HF's is not it,
    LoRA (a peft LoraConfig)."""
    out: dict[str, Any] = {k: hp[k] for k in ("dropout", "attention_dropout") if hp.get(k) is not None}
    if optimizer_arguments(hp) is None:
        out.update({k: hp[k] for k in ("optimizer", "weight_decay", "layer_decay", "beta1", "beta2", "eps")})
    if hp.get("lora_enabled"):
        out.update({k: hp[k] for k in ("lora_r", "lora_alpha", "lora_dropout", "lora_target_modules")})
        if hp.get("lora_quantization", "none") != "none":  # BitsAndBytesConfig(load_in_4bit=True) at load
            out["lora_quantization"] = hp["lora_quantization"]
    if hp.get("packing"):  # TRL's SFTConfig(packing=True); TrainingArguments has no such field
        out["packing"] = True
    return out
