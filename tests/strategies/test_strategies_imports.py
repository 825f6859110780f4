"""The strategies layer decides only: it never imports training or process machinery (DESIGN.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import lmtune.strategies

BANNED = {"torch", "transformers", "accelerate", "peft", "subprocess", "multiprocessing", "ray"}


def test_strategies_import_no_training_or_process_modules() -> None:
    root = Path(lmtune.strategies.__file__).parent
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            else:
                continue
            tops = {n.split(".")[0] for n in names}
            assert not tops & BANNED, f"{path.name} imports {sorted(tops & BANNED)}"
