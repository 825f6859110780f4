"""LoRA adapters through peft, with r / alpha / dropout / target modules as plain hyperparameters.

Contracts:

* :func:`apply_lora` freezes the base model; afterwards only the LoRA matrices (and, for
  ``task_type="classification"``, a trainable copy of the ``classifier`` / ``score`` head that peft
  keeps through ``modules_to_save``) require grad.
* Every name in ``target_modules`` must match at least one linear layer (``torch.nn.Linear`` or
  transformers' GPT-2 ``Conv1D``) by module-name suffix, the way peft matches them; otherwise a
  ``ValueError`` lists the names that matched nothing and the linear-layer names the model has.
  (peft itself only complains when *all* names miss, so a typo in one name would silently train less.)
* :func:`save_adapter` writes only ``adapter_config.json`` + ``adapter_model.safetensors``;
  :func:`load_adapter` puts them back on a freshly built base with the same architecture.
* :func:`merge_and_save` folds the adapters into the base weights (this mutates the wrapped model)
  and writes a normal transformers folder that loads without peft.
"""

from __future__ import annotations

from pathlib import Path

import torch
from peft import LoraConfig, PeftModel, TaskType, get_peft_model, prepare_model_for_kbit_training
from transformers.pytorch_utils import Conv1D

__all__ = [
    "apply_lora",
    "default_target_modules",
    "load_adapter",
    "merge_and_save",
    "save_adapter",
    "trainable_parameter_count",
]

_TASK_TYPES = {"classification": TaskType.SEQ_CLS, "causal_lm": TaskType.CAUSAL_LM}
_LINEAR = (torch.nn.Linear, Conv1D)

# Ordered: the first family whose "signature" layer exists in the model wins.
_FAMILIES: tuple[tuple[str, list[str]], ...] = (
    ("q_proj", ["q_proj", "k_proj", "v_proj", "o_proj"]),  # Llama, Mistral, Qwen, ...
    ("c_attn", ["c_attn", "c_proj"]),  # GPT-2 (Conv1D)
    ("query", ["query", "key", "value", "dense"]),  # BERT: attention + its output/FFN dense layers
)


def _linear_modules(model: torch.nn.Module) -> dict[str, torch.nn.Module]:
    return {name: m for name, m in model.named_modules() if isinstance(m, _LINEAR)}


def _leaf_names(model: torch.nn.Module) -> list[str]:
    return sorted({name.rsplit(".", 1)[-1] for name in _linear_modules(model)})


def _matches(module_name: str, target: str) -> bool:
    # peft's rule for a list of names: exact name or a dotted suffix.
    return module_name == target or module_name.endswith("." + target)


def default_target_modules(model: torch.nn.Module) -> list[str]:
    """LoRA targets for a known architecture, recognised by its linear-layer names.

    Llama-style (``q_proj`` present): ``q_proj, k_proj, v_proj, o_proj``; GPT-2-style (``c_attn``):
    ``c_attn, c_proj``; BERT-style (``query``): ``query, key, value, dense`` (``dense`` also covers
    the FFN and pooler dense layers). Raises ``ValueError`` listing the linear-layer names otherwise.
    """
    names = set(_leaf_names(model))
    for signature, targets in _FAMILIES:
        if signature in names:
            return [t for t in targets if t in names]
    raise ValueError(
        f"No default LoRA target modules for {type(model).__name__}; pass target_modules explicitly. "
        f"Linear layers in this model: {sorted(names)}"
    )


def _check_targets(model: torch.nn.Module, targets: list[str]) -> bool:
    """Validate ``targets``; return True when the matched layers are Conv1D (``fan_in_fan_out``)."""
    linear = _linear_modules(model)
    missing = [t for t in targets if not any(_matches(name, t) for name in linear)]
    if missing:
        raise ValueError(
            f"LoRA target_modules {missing} match no linear layer of {type(model).__name__}. "
            f"Available linear-layer names: {_leaf_names(model)}"
        )
    hit = [m for name, m in linear.items() if any(_matches(name, t) for t in targets)]
    return any(isinstance(m, Conv1D) for m in hit)


def apply_lora(
    model: torch.nn.Module,
    *,
    r: int,
    alpha: float,
    dropout: float,
    target_modules: list[str] | None,
    task_type: str,
    quantized: bool = False,
) -> PeftModel:
    """Wrap ``model`` with LoRA adapters; see the module docstring for what stays trainable.

    ``task_type`` is ``"classification"`` (peft ``SEQ_CLS``) or ``"causal_lm"`` (``CAUSAL_LM``);
    ``target_modules=None`` uses :func:`default_target_modules`. The scaling applied is ``alpha / r``.
    ``quantized``: the base was loaded in 4-bit (QLoRA); peft's ``prepare_model_for_kbit_training`` freezes
    it and keeps its other weights in float32 first (gradient checkpointing stays the trainer's setting).
    """
    if task_type not in _TASK_TYPES:
        raise ValueError(f"task_type must be one of {sorted(_TASK_TYPES)}, got {task_type!r}")
    if r < 1:
        raise ValueError(f"LoRA r must be >= 1, got {r}")
    targets = list(target_modules) if target_modules is not None else default_target_modules(model)
    fan_in_fan_out = _check_targets(model, targets)
    if quantized:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    config = LoraConfig(
        r=r,
        lora_alpha=alpha,  # type: ignore[arg-type]  # peft annotates int; alpha / r is all it uses
        lora_dropout=dropout,
        target_modules=targets,
        task_type=_TASK_TYPES[task_type],
        fan_in_fan_out=fan_in_fan_out,
    )
    peft_model = get_peft_model(model, config)
    if task_type == "classification" and not any(
        p.requires_grad for n, p in peft_model.named_parameters() if ".modules_to_save." in n
    ):
        raise ValueError(
            f"{type(model).__name__} has no 'classifier' or 'score' head for peft to keep trainable"
        )
    return peft_model


def trainable_parameter_count(model: torch.nn.Module) -> tuple[int, int]:
    """``(trainable, total)`` parameter counts, each parameter object (tied weights) counted once."""
    trainable = total = 0
    for param in model.parameters():  # parameters() already yields each tensor once
        total += param.numel()
        if param.requires_grad:
            trainable += param.numel()
    return trainable, total


def save_adapter(model: PeftModel, folder: str | Path, *, state_dict: dict[str, torch.Tensor] | None = None) -> Path:
    """Write ``adapter_config.json`` and ``adapter_model.safetensors`` (adapters + saved head) to a folder;
    ``state_dict``: the model's full state when its own tensors are shards (a sharded trial)."""
    folder = Path(folder)
    model.save_pretrained(str(folder), safe_serialization=True, state_dict=state_dict)
    return folder


def load_adapter(base_model: torch.nn.Module, folder: str | Path, *, is_trainable: bool = False) -> PeftModel:
    """Attach the adapter saved in ``folder`` to ``base_model`` (same architecture and head size).

    The returned model is frozen unless ``is_trainable=True`` (to continue training, e.g. after a
    PBT exploit step). The peft model class follows the saved ``task_type``.
    """
    return PeftModel.from_pretrained(base_model, str(folder), is_trainable=is_trainable)


def merge_and_save(model: PeftModel, folder: str | Path) -> Path:
    """Merge the adapters into the base weights and ``save_pretrained`` a plain transformers folder.

    ``model`` is merged in place (its LoRA layers are replaced); load the result with the usual
    ``AutoModelFor*.from_pretrained(folder)``, no peft needed.
    """
    folder = Path(folder)
    merged = model.merge_and_unload()
    merged.save_pretrained(str(folder))
    return folder
