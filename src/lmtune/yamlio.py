"""YAML reading with the safe loader, floats as people write them, and no surprises.

PyYAML implements YAML 1.1, where ``1e-5`` (no dot) is a string; every ML config writes learning
rates that way, so the loader here also resolves YAML 1.2 style floats. Two refusals on top of the
safe loader: a key given twice in one mapping (PyYAML keeps the last one silently), and aliases that
expand the document beyond ``MAX_EXPANDED_NODES`` nodes (a "billion laughs" bomb: ten lines of YAML
took minutes and gigabytes before any error); an alias bomb fails at once with bounded memory.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

MAX_EXPANDED_NODES = 10_000  # a study config has hundreds of values; aliases rarely add any


class SafeLoader(yaml.SafeLoader):
    """yaml.SafeLoader plus ``1e-5``-style floats, refusing duplicate keys and alias bombs."""

    def compose_document(self) -> Any:
        self._lmtune_sizes: dict[int, int] = {}
        self._lmtune_expanded = 0
        return super().compose_document()

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            node = self.anchors.get(event.anchor)
            if node is not None:
                self._lmtune_expanded += self._lmtune_size(node)
                if self._lmtune_expanded > MAX_EXPANDED_NODES:
                    raise yaml.composer.ComposerError(
                        None, None, f"its aliases expand to more than {MAX_EXPANDED_NODES:,} values (an alias "
                        "bomb?); write the values out or use fewer aliases", event.start_mark)
        return super().compose_node(parent, index)

    def _lmtune_size(self, node: yaml.Node) -> int:
        """Values under ``node`` once every alias is expanded (memoised per node)."""
        known = self._lmtune_sizes.get(id(node))
        if known is not None:
            return known
        size = 1
        if isinstance(node, yaml.SequenceNode):
            size += sum(self._lmtune_size(n) for n in node.value)
        elif isinstance(node, yaml.MappingNode):
            size += sum(self._lmtune_size(k) + self._lmtune_size(v) for k, v in node.value)
        self._lmtune_sizes[id(node)] = size
        return size

    def construct_mapping(self, node: yaml.Node, deep: bool = False) -> Any:
        if isinstance(node, yaml.MappingNode):
            seen: set[Any] = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # keys merged in with << may be overridden: that is what merging is for
                key = self.construct_object(key_node, deep=True)
                if isinstance(key, list | dict):
                    continue  # unhashable: the base class reports it
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        "while reading a mapping", node.start_mark,
                        f"the key {key!r} is given twice; keep one (PyYAML would silently use the last)",
                        key_node.start_mark)
                seen.add(key)
        return super().construct_mapping(node, deep=deep)  # type: ignore[arg-type]


SafeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^[-+]?(?:[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?|\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                |[0-9][0-9_]*[eE][-+]?[0-9]+|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."),
)


def safe_load(text: str) -> Any:
    return yaml.load(text, Loader=SafeLoader)
