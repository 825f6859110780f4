"""data layer of lmtune (see DESIGN.md)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lmtune.data.causal import IGNORE_INDEX
    from lmtune.data.smollm2 import default_cache_root, minilm_folder, smollm2_folder
    from lmtune.data.sources import DataSpec, load_splits
    from lmtune.data.tokenized import TokenizedSplit, build_cache, load_meta, load_split

__all__ = ["IGNORE_INDEX", "DataSpec", "TokenizedSplit", "build_cache", "default_cache_root", "load_meta",
           "load_split", "load_splits", "minilm_folder", "smollm2_folder"]

# The rest of the face: each name imported from its module when first named, so importing the package stays
# cheap (no torch, no Optuna until used) and free of import cycles between layers.
_FACE = {
    "DataSpec": "sources",
    "IGNORE_INDEX": "causal",
    "TokenizedSplit": "tokenized",
    "build_cache": "tokenized",
    "default_cache_root": "smollm2",
    "load_meta": "tokenized",
    "load_split": "tokenized",
    "load_splits": "sources",
    "minilm_folder": "smollm2",
    "smollm2_folder": "smollm2",
}


def __getattr__(name: str) -> Any:
    module = _FACE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
