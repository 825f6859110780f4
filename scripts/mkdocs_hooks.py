"""mkdocs hooks (``hooks:`` in mkdocs.yml): add the config reference, generated from the schema at build time
(``scripts/gen_config_reference.py``), so the site can never show a stale list of keys."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

PAGE = "reference/config.md"


def _render() -> str:
    spec = importlib.util.spec_from_file_location("gen_config_reference",
                                                  Path(__file__).with_name("gen_config_reference.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return str(module.render())


def on_files(files: Files, config: Any) -> Files:
    files.append(File.generated(config, PAGE, content=_render()))
    return files
