"""Layer-wise learning-rate decay (LLRD) as plain optimizer parameter groups.

LLRD gives lower learning rates to the layers close to the input, which hold general features, and
the full rate to the task head. It is a hyperparameter here (``layer_decay``), not a Trainer subclass.

Layer numbering. With ``L`` transformer blocks numbered
``0 .. L-1`` from the input, ``lr`` the base rate and ``d`` the ``layer_decay``:

==================================================  =====================
parameters                                          learning rate
==================================================  =====================
task head and everything after the blocks           ``lr``
(classifier, score, pooler, lm_head, final norm)
block ``i``                                         ``lr * d ** (L - 1 - i)``
embeddings (token, position, type, their norm)      ``lr * d ** L``
==================================================  =====================

So the top block and the head get the base rate ``lr``, each block below it ``× d``, and the
embeddings sit one step below block 0 (the lowest rate). A weight tied between the input embeddings
and ``lm_head`` is one parameter object; it is
placed once, under the name PyTorch reports first (the embeddings), at the embedding rate.

Weight decay applies to parameters with two or more dimensions; biases and normalisation weights
(LayerNorm, RMSNorm: every 1-D parameter) get ``weight_decay = 0``. Only parameters with
``requires_grad`` are included, so frozen bases under LoRA contribute nothing; parameter names may
carry peft's ``base_model.model.`` prefix.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = ["LayerDecayError", "build_param_groups", "count_layers"]

# A block index follows the block container: BERT ``encoder.layer.N``, Llama ``layers.N``, GPT-2 ``h.N``.
_BLOCK_RE = re.compile(r"(?:^|\.)(?:encoder\.layer|layers|h)\.(\d+)\.")
# Input embeddings: BERT ``embeddings.*`` (and its LayerNorm), Llama ``embed_tokens``, GPT-2 ``wte``/``wpe``.
_EMBED_RE = re.compile(r"(?:^|\.)(?:embeddings|embed_tokens|wte|wpe)(?:\.|$)")


class LayerDecayError(ValueError):
    """Raised when ``layer_decay < 1`` but the model's transformer blocks cannot be located."""


@dataclass
class _Group:
    name: str
    lr: float
    weight_decay: float
    params: list[torch.nn.Parameter] = field(default_factory=list)


def _block_index(name: str) -> int | None:
    match = _BLOCK_RE.search(name)
    return int(match.group(1)) if match else None


def count_layers(model: torch.nn.Module) -> int:
    """Number of transformer blocks in ``model`` (BERT-, Llama- or GPT-2-style naming).

    Counts over all parameters, trainable or not, so a LoRA-wrapped model reports its base depth.
    Returns 0 when no block is recognised.
    """
    indices = [i for name, _ in model.named_parameters() if (i := _block_index(name)) is not None]
    return max(indices) + 1 if indices else 0


def _layer_id(name: str, num_layers: int) -> int:
    """0 for embeddings, ``i + 1`` for block ``i``, ``num_layers + 1`` for the head and the rest."""
    block = _block_index(name)
    if block is not None:
        return block + 1
    if _EMBED_RE.search(name):
        return 0
    return num_layers + 1


def _layer_label(layer_id: int, num_layers: int) -> str:
    if layer_id == 0:
        return "embeddings"
    if layer_id == num_layers + 1:
        return "head"
    return f"block.{layer_id - 1}"


def _no_decay(param: torch.nn.Parameter) -> bool:
    # Biases and LayerNorm/RMSNorm scales are all 1-D (or scalar).
    return param.ndim <= 1


def _trainable(model: torch.nn.Module) -> list[tuple[str, torch.nn.Parameter]]:
    """Trainable parameters, each parameter object once (tied weights keep their first name)."""
    seen: set[int] = set()
    out: list[tuple[str, torch.nn.Parameter]] = []
    for name, param in model.named_parameters(remove_duplicate=False):
        if param.requires_grad and id(param) not in seen:
            seen.add(id(param))
            out.append((name, param))
    return out


def _as_dicts(groups: dict[str, _Group]) -> list[dict[str, Any]]:
    return [
        {"params": g.params, "lr": g.lr, "weight_decay": g.weight_decay, "name": g.name}
        for g in groups.values()
        if g.params
    ]


def build_param_groups(
    model: torch.nn.Module, *, lr: float, weight_decay: float, layer_decay: float = 1.0
) -> list[dict[str, Any]]:
    """Optimizer parameter groups with layer-wise LR decay and a decay / no-decay split.

    Each returned dict has ``params``, ``lr``, ``weight_decay`` and ``name`` (e.g. ``"block.3.decay"``,
    ``"embeddings.no_decay"``, ``"head.decay"``); empty groups are omitted, and every trainable
    parameter object appears in exactly one group. The rates follow the module docstring.

    With ``layer_decay == 1.0`` any model works and there are at most two groups, ``"decay"`` and
    ``"no_decay"``. With ``0 < layer_decay < 1`` the blocks must be recognisable, else
    :class:`LayerDecayError`. ``layer_decay`` outside ``(0, 1]`` is a ``ValueError``.
    """
    if not 0.0 < layer_decay <= 1.0:
        raise ValueError(f"layer_decay must be in (0, 1], got {layer_decay}")
    params = _trainable(model)
    if layer_decay == 1.0:
        return _flat_groups(params, lr=lr, weight_decay=weight_decay)
    num_layers = count_layers(model)
    if num_layers == 0:
        raise LayerDecayError(
            f"layer_decay={layer_decay} needs the transformer blocks of the model, but none were found in "
            f"{type(model).__name__} (expected parameter names like 'encoder.layer.N.', 'layers.N.' or "
            "'h.N.'). Set `layer_decay: 1.0` or use a BERT-, Llama- or GPT-2-style model."
        )
    groups: dict[str, _Group] = {}
    for name, param in params:
        layer_id = _layer_id(name, num_layers)
        no_decay = _no_decay(param)
        key = f"{_layer_label(layer_id, num_layers)}.{'no_decay' if no_decay else 'decay'}"
        if key not in groups:
            scale = layer_decay ** max(0, num_layers - layer_id)
            groups[key] = _Group(key, lr * scale, 0.0 if no_decay else weight_decay)
        groups[key].params.append(param)
    return sorted(_as_dicts(groups), key=lambda g: g["lr"])


def _flat_groups(
    params: list[tuple[str, torch.nn.Parameter]], *, lr: float, weight_decay: float
) -> list[dict[str, Any]]:
    groups = {"decay": _Group("decay", lr, weight_decay), "no_decay": _Group("no_decay", lr, 0.0)}
    for _, param in params:
        groups["no_decay" if _no_decay(param) else "decay"].params.append(param)
    return _as_dicts(groups)
