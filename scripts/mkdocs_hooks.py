"""mkdocs hooks (``hooks:`` in mkdocs.yml). Two pages are generated when the site is built, so neither can
drift from its source:

* ``reference/config.md``: the config reference, from the schema (``scripts/gen_config_reference.py``);
* ``index.md``: the home page, from README.md, its links made relative to ``docs/`` (``docs/x.md`` ->
  ``x.md``; a link to another file of the repository becomes its text in code, as the site has no copy).
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")


def _config_reference() -> str:
    spec = importlib.util.spec_from_file_location("gen_config_reference",
                                                  Path(__file__).with_name("gen_config_reference.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return str(module.render())


def _relink(match: re.Match[str]) -> str:
    text, target = match.group(1), match.group(2)
    if re.match(r"[a-z]+:", target) or target.startswith("#"):
        return match.group(0)
    if target.startswith("docs/"):
        return f"[{text}]({target.removeprefix('docs/')})"
    return text if text.startswith("`") else f"`{text}`"


def home_page(readme: str) -> str:
    """README.md as the site's home page."""
    return LINK.sub(_relink, readme)


def on_files(files: Files, config: Any) -> Files:
    files.append(File.generated(config, "reference/config.md", content=_config_reference()))
    files.append(File.generated(config, "index.md", content=home_page((ROOT / "README.md").read_text())))
    return files
