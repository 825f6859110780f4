"""How a package's face (its ``__init__``'s ``__all__``) serves names from its modules: imported when first
named, so importing a package stays cheap (no torch, no Optuna until used) and free of import cycles between
layers. Standard library only: every layer's ``__init__`` uses it."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy"]


def lazy(package: str, face: Mapping[str, str]) -> Callable[[str], Any]:
    """The module ``__getattr__`` of ``package`` for the names in ``face`` (name -> its module in the package);
    a name, once imported, is kept in the package so the next lookup does not come here."""

    def __getattr__(name: str) -> Any:
        module = face.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__
