"""The import rules of DESIGN.md, checked on the source (so a lazy import inside a function counts)."""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).parents[1] / "src" / "lmtune"

FORBIDDEN = {
    "strategies": {"torch", "transformers", "subprocess", "ray", "peft", "accelerate"},
    "space": {"torch", "transformers", "subprocess", "ray"},
    "config": {"torch", "transformers", "ray", "optuna"},
    "training": {"optuna", "ray"},
    "data": {"optuna", "ray"},
    "report": {"torch", "transformers", "peft", "ray"},
    "study": {"torch", "transformers", "ray"},
}


def imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_import_rules(layer: str) -> None:
    bad = []
    for path in (SRC / layer).rglob("*.py"):
        hits = imported_roots(path) & FORBIDDEN[layer]
        bad += [f"{path.relative_to(SRC)} imports {h}" for h in sorted(hits)]
    assert not bad, bad
