"""The import rules of DESIGN.md's layer table, checked two ways: on the source (so a lazy import inside
a function counts) and transitively (every module of a layer imported in a fresh interpreter, then
``sys.modules`` read: a third-party module that pulls in another counts, e.g. optuna loads subprocess).
Both checks are themselves tested: a temporary module that breaks one rule makes them fail."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).parents[1] / "src"
PKG = SRC / "lmtune"

# What a layer's source may not import at all, lazily or not (its first-level names).
FORBIDDEN = {
    "strategies": {"torch", "transformers", "subprocess", "ray", "peft", "accelerate"},
    "space": {"torch", "transformers", "subprocess", "ray"},
    "config": {"torch", "transformers", "ray", "optuna"},
    "training": {"optuna", "ray"},
    "data": {"optuna", "ray"},
    "report": {"torch", "transformers", "peft", "ray"},
    "study": {"torch", "transformers", "ray"},
    "execution": {"optuna"},  # a backend never decides
    "schedulers": {"torch", "transformers", "ray", "peft", "accelerate"},  # decide; trainers run elsewhere
    "testing": {"torch", "transformers", "ray", "optuna", "pytest"},  # contract suites users import
    "protocol.py": {"torch", "transformers", "optuna", "ray", "numpy", "subprocess"},
    # runs inside the user's training script: nothing heavy at import, no driver parts
    "script.py": {"torch", "transformers", "optuna", "ray", "numpy", "subprocess"},
    "integrations": {"optuna", "ray", "subprocess"},
}

HEAVY = ("torch", "transformers", "peft", "accelerate")
_LAYERS = ("config", "space", "protocol", "script", "strategies", "study", "schedulers", "tuner", "execution",
           "training", "data", "report", "cli", "integrations", "testing")


def _layers(*names: str) -> tuple[str, ...]:
    return tuple(f"lmtune.{n}" for n in names)


# What importing every module of a layer may not load (third-party modules and other lmtune layers).
LOADED_FORBIDDEN: dict[str, tuple[str, ...]] = {
    "config": ("torch", "transformers", "optuna", "ray",
               *_layers("training", "tuner", "execution", "study", "strategies", "report", "cli", "data")),
    "space": ("torch", "transformers", "ray", *_layers("training", "tuner", "execution", "study", "data")),
    # shared by driver, backends and trainers (and the stand-in trainer): standard library only
    "protocol": ("torch", "transformers", "optuna", "ray", "numpy", "subprocess",
                 *_layers(*(n for n in _LAYERS if n != "protocol"))),
    # the script side of a script trial: the protocol and the config's rules only (data when splits() runs)
    "script": ("torch", "transformers", "optuna", "ray", "numpy",
               *_layers("training", "tuner", "execution", "study", "strategies", "report", "cli", "data",
                        "integrations")),
    # bridges from training libraries: the script side plus the library they bridge, never the driver
    "integrations": ("optuna", "ray", *_layers("tuner", "execution", "study", "strategies", "report", "cli")),
    "strategies": (*HEAVY, "ray", *_layers("training", "tuner", "execution", "study", "data", "cli")),
    "study": (*HEAVY, "ray", *_layers("training", "tuner", "execution", "strategies", "cli")),
    # the loop holds no training logic: trainers run in their own processes
    "tuner": (*HEAVY, "ray", *_layers("cli", "report")),
    # the schedulers decide; the tuner's loop runs them and trainers train in their own processes
    "schedulers": (*HEAVY, "ray", *_layers("cli", "report")),
    # contract suites for users' own backends: the execution layer's rules, and no pytest
    "testing": ("optuna", *HEAVY, "ray", "pytest", *_layers("tuner", "schedulers", "strategies", "study", "training",
                                                            "cli", "report")),
    "execution": ("optuna", *HEAVY, *_layers("tuner", "strategies", "study", "training", "cli")),
    "training": ("optuna", "ray", *_layers("tuner", "strategies", "execution", "study", "report", "cli")),
    "data": ("optuna", "ray", "torch", *_layers("training", "tuner", "strategies", "execution", "study")),
    "report": (*HEAVY, "ray", *_layers("training", "tuner", "execution", "strategies", "cli")),
    # a thin CLI that starts fast: the training stack and Ray load when a command needs them
    "cli": (*HEAVY, "ray"),
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


def direct_violations(pkg: Path, layer: str) -> list[str]:
    bad = []
    for path in [pkg / layer] if layer.endswith(".py") else sorted((pkg / layer).rglob("*.py")):
        hits = imported_roots(path) & FORBIDDEN[layer]
        bad += [f"{path.relative_to(pkg)} imports {h}" for h in sorted(hits)]
    return bad


_LOAD_ALL = """
import importlib, pkgutil, sys
layer, forbidden = sys.argv[1], sys.argv[2].split(",")
root = importlib.import_module("lmtune." + layer)
for info in pkgutil.walk_packages(getattr(root, "__path__", []), root.__name__ + "."):
    if not info.name.endswith("__main__"):
        importlib.import_module(info.name)
print(",".join(m for m in forbidden if m in sys.modules))
"""


def loaded_violations(src: Path, layer: str) -> str:
    """The forbidden modules that importing every module of ``layer`` (from ``src``) loads."""
    out = subprocess.run([sys.executable, "-c", _LOAD_ALL, layer, ",".join(LOADED_FORBIDDEN[layer])],
                         capture_output=True, text=True, check=True, cwd=src,
                         env={**os.environ, "PYTHONPATH": str(src)})
    return out.stdout.strip()


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_import_rules(layer: str) -> None:
    bad = direct_violations(PKG, layer)
    assert not bad, bad


def test_every_layer_has_a_transitive_rule() -> None:
    layers = {p.name for p in PKG.iterdir() if p.is_dir() and (p / "__init__.py").exists()} | {"protocol", "script"}
    assert layers == set(LOADED_FORBIDDEN), "a layer without a rule, or a rule for no layer"


@pytest.mark.parametrize("layer", sorted(LOADED_FORBIDDEN))
def test_importing_a_layer_loads_nothing_it_must_not(layer: str) -> None:
    loaded = loaded_violations(SRC, layer)
    assert loaded == "", f"importing lmtune.{layer} (all its modules) loads {loaded}"


# -- the checks of the checks -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def copy_of_src(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dst = tmp_path_factory.mktemp("src")
    shutil.copytree(PKG, dst / "lmtune", ignore=shutil.ignore_patterns("__pycache__"))
    return dst


@pytest.mark.parametrize(("layer", "body", "expected"), [
    ("config", "def f():\n    import optuna\n", "optuna"),  # a lazy import: only the source check sees it
    ("execution", "from optuna import samplers\n", "optuna"),
])
def test_the_source_check_fails_on_a_module_that_breaks_a_rule(copy_of_src: Path, layer: str, body: str,
                                                               expected: str) -> None:
    breaker = copy_of_src / "lmtune" / layer / "_breaks_a_rule.py"
    breaker.write_text(body)
    try:
        assert direct_violations(copy_of_src / "lmtune", layer) == [f"{layer}/_breaks_a_rule.py imports {expected}"]
    finally:
        breaker.unlink()


@pytest.mark.parametrize(("layer", "body", "expected"), [
    ("config", "import lmtune.strategies.pruners\n", "lmtune.strategies"),
    ("training", "from lmtune.study import store  # the study pulls in optuna\n", "optuna"),
    ("report", "import lmtune.execution.local\n", "lmtune.execution"),
])
def test_the_transitive_check_fails_on_a_module_that_breaks_a_rule(copy_of_src: Path, layer: str, body: str,
                                                                   expected: str) -> None:
    breaker = copy_of_src / "lmtune" / layer / "_breaks_a_rule.py"
    breaker.write_text(body)
    try:
        assert expected in loaded_violations(copy_of_src, layer).split(",")
    finally:
        breaker.unlink()
    assert loaded_violations(copy_of_src, layer) == ""  # and the copy without it passes


PACKAGES = sorted(p.name for p in PKG.iterdir() if (p / "__init__.py").is_file())


def _cross_package_imports(pkg: Path) -> list[str]:
    """``from lmtune.P.M import ...`` in a module outside package P (not P's own), except a module's namesake
    (``from lmtune.tuner.train_one import train_one``: the package attribute of that name is the module)."""
    found = []
    for f in sorted(pkg.rglob("*.py")):
        rel = f.relative_to(pkg).parts
        owner = rel[0] if len(rel) > 1 else None
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("lmtune."):
                parts = node.module.split(".")
                if len(parts) == 3 and parts[1] in PACKAGES and parts[1] != owner \
                        and not all(a.name == parts[2] for a in node.names):
                    found.append(f"{f.relative_to(pkg.parent)}:{node.lineno}: from {node.module} import ...")
    return found


def test_other_layers_use_a_package_through_its_face() -> None:
    """Every package's ``__init__`` exports what the others use (``__all__``, as Optuna's do); no module
    reaches into another package's modules."""
    assert _cross_package_imports(PKG) == []


def test_the_face_check_fails_on_a_module_that_reaches_into_another_package(copy_of_src: Path) -> None:
    (copy_of_src / "lmtune" / "report" / "reach.py").write_text("from lmtune.tuner.plan import Plan\n")
    assert _cross_package_imports(copy_of_src / "lmtune") == [
        "lmtune/report/reach.py:1: from lmtune.tuner.plan import ..."]


@pytest.mark.parametrize("package", PACKAGES)
def test_every_name_a_face_exports_resolves(package: str) -> None:
    code = (f"import lmtune.{package} as p\n"
            "missing = [n for n in p.__all__ if getattr(p, n, None) is None]\n"
            "assert not missing, missing\n")
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "PYTHONPATH": str(SRC)})
