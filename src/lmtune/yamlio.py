"""YAML reading with the safe loader, and floats as people write them.

PyYAML implements YAML 1.1, where ``1e-5`` (no dot) is a string; every ML config writes learning
rates that way, so the loader here also resolves YAML 1.2 style floats. Nothing else changes.
"""

from __future__ import annotations

import re
from typing import Any

import yaml


class SafeLoader(yaml.SafeLoader):
    """yaml.SafeLoader plus ``1e-5``-style floats."""


SafeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^[-+]?(?:[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?|\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                |[0-9][0-9_]*[eE][-+]?[0-9]+|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."),
)


def safe_load(text: str) -> Any:
    return yaml.load(text, Loader=SafeLoader)
