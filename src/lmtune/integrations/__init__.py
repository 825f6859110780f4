"""Bridges from other training libraries to lmtune script trials (``task.type: script``).

`lmtune.integrations.transformers.LmtuneCallback` makes an HF ``Trainer`` / TRL ``SFTTrainer`` script an
lmtune trial. Each bridge imports its library only when it is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lmtune.integrations.hf_args import lmtune_only, optimizer_arguments, trainer_arguments

__all__ = ["lmtune_only", "optimizer_arguments", "trainer_arguments"]

# The rest of the face: each name imported from its module when first named, so importing the package stays
# cheap (no torch, no Optuna until used) and free of import cycles between layers.
_FACE = {
    "lmtune_only": "hf_args",
    "optimizer_arguments": "hf_args",
    "trainer_arguments": "hf_args",
}


def __getattr__(name: str) -> Any:
    module = _FACE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
