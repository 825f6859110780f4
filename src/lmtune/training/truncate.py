"""Proxy models: keep only the first ``k`` transformer blocks of a pretrained model.

A shallow copy of a model trains several times faster, so a search can rank configurations on the
proxy before spending full-size trials (whether the ranking transfers is for the caller to measure).
The first blocks are the ones kept because the embeddings and the lower blocks stay consistent
with each other; the head (classifier, final norm, lm_head) is kept as is.
"""

from __future__ import annotations

import contextlib
from typing import TypeVar

import torch

__all__ = ["find_blocks", "shrink_config", "truncate_layers"]

M = TypeVar("M", bound=torch.nn.Module)

# Name endings of the ModuleList that holds the blocks: BERT ``encoder.layer``, Llama ``layers``, GPT-2 ``h``.
_BLOCK_CONTAINERS = ("encoder.layer", "layers", "h")


def _is_container(name: str) -> bool:
    return any(name == c or name.endswith("." + c) for c in _BLOCK_CONTAINERS)


def find_blocks(model: torch.nn.Module) -> tuple[torch.nn.Module, str, torch.nn.ModuleList]:
    """``(parent, attribute, blocks)`` for the model's transformer-block ``ModuleList``.

    Picks the shallowest ``ModuleList`` named ``encoder.layer`` / ``layers`` / ``h``, so a block's
    own inner lists are never mistaken for the stack. Raises ``ValueError`` naming the model class
    when there is none.
    """
    found = [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.ModuleList) and _is_container(name)
    ]
    if not found:
        raise ValueError(
            f"Cannot find the transformer blocks of {type(model).__name__}: expected a ModuleList named "
            f"{' / '.join(_BLOCK_CONTAINERS)} (BERT-, Llama- or GPT-2-style models)."
        )
    name, blocks = min(found, key=lambda item: item[0].count("."))
    parent_name, _, attribute = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    assert isinstance(blocks, torch.nn.ModuleList)
    return parent, attribute, blocks


def shrink_config(config: object, k: int) -> None:
    """Shrink the layer count (``num_hidden_layers``; GPT-2 maps it to ``n_layer``) and ``layer_types``.
    Given to ``from_pretrained`` before loading, it builds a ``k``-block model that reads only the kept
    blocks' weights from the checkpoint (the blocks are numbered from 0, so blocks ``0..k-1`` match).

    transformers 5 configs are strict dataclasses: saving and reloading a config whose ``layer_types``
    length differs from ``num_hidden_layers`` fails validation, so both must change together.
    """
    layer_types = getattr(config, "layer_types", None)
    if isinstance(layer_types, list):
        # A few configs derive layer_types as a read-only property; those follow num_hidden_layers.
        with contextlib.suppress(AttributeError):
            config.layer_types = layer_types[:k]  # type: ignore[attr-defined]
    config.num_hidden_layers = k  # type: ignore[attr-defined]


def truncate_layers(model: M, k: int) -> M:
    """Keep only the first ``k`` blocks of ``model``, in place; returns the same object.

    Works for BERT- (``encoder.layer``), Llama- (``model.layers``) and GPT-2-style (``transformer.h``)
    models and updates ``config.num_hidden_layers`` / ``n_layer`` and ``config.layer_types`` when present,
    so ``save_pretrained`` / ``from_pretrained`` round-trip with ``k`` layers. The removed blocks are
    dropped (their memory is freed once nothing else refers to them). Raises ``ValueError`` naming the
    model class when the blocks cannot be found or ``k`` is not in ``1 .. number of blocks``.
    """
    parent, attribute, blocks = find_blocks(model)
    if not 1 <= k <= len(blocks):
        raise ValueError(f"k must be between 1 and {len(blocks)} for {type(model).__name__}, got {k}")
    setattr(parent, attribute, torch.nn.ModuleList(list(blocks)[:k]))
    config = getattr(model, "config", None)
    if config is not None:
        shrink_config(config, k)
    return model
