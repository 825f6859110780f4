"""The config reference page (generated from the schema when the docs are built) lists every key of every
section with its default, and marks searchability as the loader and effects rules decide it."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from lmtune.config import schema

SCRIPT = Path(__file__).parents[2] / "scripts" / "gen_config_reference.py"


def _generator() -> Any:
    spec = importlib.util.spec_from_file_location("gen_config_reference", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _keys(prefix: str, model: type[BaseModel]) -> list[str]:
    keys = []
    for name, info in model.model_fields.items():
        keys.append(f"{prefix}.{name}")
        for sub in (info.annotation, *getattr(info.annotation, "__args__", ())):
            if isinstance(sub, type) and issubclass(sub, BaseModel):
                keys += _keys(f"{prefix}.{name}", sub)
    return keys


def _rows(page: str) -> dict[str, list[str]]:
    rows = {}
    for line in page.splitlines():
        m = re.match(r"\| `([a-z0-9_.]+)` \|", line)
        if m:
            rows[m.group(1)] = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
    return rows


def test_every_schema_key_is_on_the_page_with_its_default() -> None:
    schema.StudyConfig.model_rebuild()
    rows = _rows(_generator().render())
    expected = [k for name, info in schema.StudyConfig.model_fields.items()
                for k in _keys(name, next(a for a in (info.annotation, *getattr(info.annotation, "__args__", ()))
                                          if isinstance(a, type) and issubclass(a, BaseModel)))]
    assert sorted(rows) == sorted(expected)
    assert rows["training.warmup_ratio"][1:4] == ["`float`", "`0.0`", "≥ 0, ≤ 1"]
    assert rows["search.strategy"][2] == '`"auto"`'
    assert rows["execution.device"][1] == '`"auto"` \\| `"cpu"` \\| `"cuda"`'


def test_searchable_column_follows_the_effects_rules() -> None:
    rows = _rows(_generator().render())
    searchable = {k.split(".", 1)[1]: v[4] for k, v in rows.items() if k.startswith("training.")}
    assert set(searchable) == schema.TRAINING_FIELDS
    assert searchable["eval_every"].startswith("no")
    assert searchable["learning_rate"] == "yes, PBT-mutable"
    assert searchable["batch_size"] == "yes"
    assert searchable["momentum"].startswith("yes, when `optimizer` is sgd")
    assert all(v.startswith("yes") for k, v in searchable.items() if k != "eval_every")


def test_descriptions_come_from_the_schema_comments() -> None:
    rows = _rows(_generator().render())
    assert "halve on OOM" in rows["training.micro_batch_size"][-1]
    assert "SQLAlchemy URL" in rows["study.storage"][-1]
