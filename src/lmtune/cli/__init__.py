"""cli layer of lmtune (see DESIGN.md)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lmtune.cli.app import main

__all__ = ["main"]

# The rest of the face: each name imported from its module when first named, so importing the package stays
# cheap (no torch, no Optuna until used) and free of import cycles between layers.
_FACE = {
    "main": "app",
}


def __getattr__(name: str) -> Any:
    module = _FACE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
