"""Benchmarks run on demand, not in CI, so a rename in the package would break them silently: every
``from lmtune... import name`` in ``benchmarks/`` must still resolve."""

import ast
import importlib
from pathlib import Path

BENCHMARKS = Path(__file__).parents[1] / "benchmarks"


def lmtune_imports() -> list[tuple[str, str, str]]:
    found = []
    for path in sorted(BENCHMARKS.rglob("*.py")):
        if any(part.startswith(".") for part in path.relative_to(BENCHMARKS).parts):
            continue  # a tool's virtual environment (`make bench-synetune` puts Syne Tune's in benchmarks/)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("lmtune"):
                found += [(str(path.relative_to(BENCHMARKS)), node.module or "", a.name) for a in node.names]
            elif isinstance(node, ast.Import):
                found += [(str(path.relative_to(BENCHMARKS)), a.name, "") for a in node.names
                          if a.name.startswith("lmtune")]
    return found


def test_every_lmtune_import_in_the_benchmarks_resolves() -> None:
    imports = lmtune_imports()
    assert imports, "the benchmarks import nothing from lmtune: is the path right?"
    broken = []
    for where, module, name in imports:
        try:
            mod = importlib.import_module(module)
        except ImportError as e:
            broken.append(f"{where}: {module} ({e})")
            continue
        if name and not hasattr(mod, name):
            try:
                importlib.import_module(f"{module}.{name}")
            except ImportError:
                broken.append(f"{where}: {module} has no {name}")
    assert not broken, broken
