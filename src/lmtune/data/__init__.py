"""data layer of lmtune (see DESIGN.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lmtune._faces import lazy

if TYPE_CHECKING:
    from lmtune.data.causal import IGNORE_INDEX
    from lmtune.data.smollm2 import default_cache_root, minilm_folder, smollm2_folder
    from lmtune.data.sources import DataSpec, load_splits
    from lmtune.data.tokenized import TokenizedSplit, build_cache, load_meta, load_split

__all__ = ["IGNORE_INDEX", "DataSpec", "TokenizedSplit", "build_cache", "default_cache_root", "load_meta",
           "load_split", "load_splits", "minilm_folder", "smollm2_folder"]

# the rest of the face, each name imported from its module when first named (lmtune._faces)
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

__getattr__ = lazy(__name__, _FACE)
