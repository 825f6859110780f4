"""cli layer of lmtune (see DESIGN.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lmtune._faces import lazy

if TYPE_CHECKING:
    from lmtune.cli.app import main

__all__ = ["main"]

# the rest of the face, each name imported from its module when first named (lmtune._faces)
_FACE = {
    "main": "app",
}

__getattr__ = lazy(__name__, _FACE)
