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
    "protocol.py": {"torch", "transformers", "optuna", "ray", "numpy", "subprocess"},
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
    for path in [SRC / layer] if layer.endswith(".py") else (SRC / layer).rglob("*.py"):
        hits = imported_roots(path) & FORBIDDEN[layer]
        bad += [f"{path.relative_to(SRC)} imports {h}" for h in sorted(hits)]
    assert not bad, bad


# Transitive: what importing a layer loads in a fresh interpreter (a third-party module that pulls in
# another counts, e.g. optuna loads subprocess). Layers whose job needs the module import it lazily.
LOADED_FORBIDDEN = {
    "lmtune.config": ("torch", "transformers", "optuna", "ray"),
    "lmtune.space": ("torch", "transformers", "ray"),
    "lmtune.strategies": ("torch", "transformers", "ray", "subprocess"),
    "lmtune.training": ("optuna", "ray"),
    "lmtune.data": ("optuna", "ray"),
    "lmtune.report": ("torch", "transformers", "ray"),
    # shared by driver, backends and trainers (and the stand-in trainer): standard library only
    "lmtune.protocol": ("torch", "transformers", "optuna", "ray", "numpy", "subprocess", "lmtune.training",
                        "lmtune.execution", "lmtune.tuner"),
}


@pytest.mark.parametrize("module", sorted(LOADED_FORBIDDEN))
def test_importing_a_layer_loads_nothing_it_must_not(module: str) -> None:
    import subprocess
    import sys

    code = (f"import sys, importlib; importlib.import_module({module!r}); "
            f"print(','.join(m for m in {LOADED_FORBIDDEN[module]!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"importing {module} loads {out.stdout.strip()}"
