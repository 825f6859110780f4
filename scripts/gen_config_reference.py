"""Write the config reference (every key, its type, default, constraints, description and whether a search
may vary it) from the schema itself, so the page cannot drift from the code.

The source of each part:

* keys, types, defaults and bounds: the pydantic models in ``lmtune.config.schema`` (``StudyConfig`` and
  the sections it nests);
* descriptions: the comments written beside or directly above each field in ``schema.py``, and each
  section's docstring;
* searchable: ``TRAINING_FIELDS`` (what ``search.space`` may name), less ``effects.FIXED_PER_STUDY``, with
  ``effects.NEEDS`` (when a searched field takes effect) and ``space.build.MUTABLE_BY_DEFAULT`` (what PBT
  changes mid-run unless told otherwise).

``mkdocs build`` runs this through ``scripts/mkdocs_hooks.py`` (the page is generated, not committed);
``python scripts/gen_config_reference.py [OUT]`` writes the same Markdown to OUT (default: stdout).
"""

from __future__ import annotations

import ast
import inspect
import io
import sys
import tokenize
import types
import typing
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from lmtune.config import effects, schema
from lmtune.space.build import MUTABLE_BY_DEFAULT

INTRO = """# Config reference

Generated from `lmtune.config.schema` when the site is built: every key of the study YAML, its type,
default and bounds, what the schema's source says about it, and whether `search.space` may vary it.
What the keys do together, with examples, is in [the configuration guide](../configuration.md); the
commented example is `examples/quickstart.yaml`. Every section refuses unknown keys (a typo is an error,
exit 2), and every key can be set from the command line: `--set training.warmup_ratio=0.1`.

**Searchable** applies to the `training` section, whose fields are the defaults (trial 0, the baseline)
and the names `search.space` may use. *yes, PBT-mutable* means a PBT study may also change the value
of a running member by default; *yes, when …* means the field is refused in a space where that can
never hold (it would change nothing).
"""


def _type(annotation: Any) -> str:
    """``int | None``, ``"fp32" | "bf16"``, ``list[str]``: the annotation as a user writes the value."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Literal:
        return " \\| ".join(f'`"{a}"`' if isinstance(a, str) else f"`{a}`" for a in args)
    if origin in (typing.Union, types.UnionType):
        return " \\| ".join(_type(a) for a in args)
    if annotation is type(None):
        return "`null`"
    if origin is not None:
        inner = ", ".join(_type(a).strip("`") for a in args)
        return f"`{getattr(origin, '__name__', str(origin))}[{inner}]`"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "section"
    return f"`{getattr(annotation, '__name__', str(annotation)).replace('typing.', '')}`"


def _default(info: Any) -> str:
    if info.default_factory is not None:
        value = info.default_factory()
    elif info.default is PydanticUndefined:
        return "required"
    else:
        value = info.default
    if isinstance(value, BaseModel):
        return "(section)"
    if value is None:
        return "`null`"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, str):
        return f'`"{value}"`'
    if isinstance(value, tuple):
        value = list(value)
    return f"`{value}`"


def _bounds(info: Any) -> str:
    signs = {"ge": "≥", "gt": ">", "le": "≤", "lt": "<"}
    parts = []
    for m in info.metadata:
        for attr, sign in signs.items():
            if getattr(m, attr, None) is not None:
                parts.append(f"{sign} {getattr(m, attr)}")
    return ", ".join(parts)


def _comments(cls: type) -> dict[str, str]:
    """field name -> the comments beside it and in the comment block directly above it."""
    source = inspect.getsource(cls)
    lines = source.splitlines()
    comment_at: dict[int, str] = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            comment_at[tok.start[0]] = tok.string.lstrip("#").strip()
    found: dict[str, str] = {}
    for node in ast.parse(source).body[0].body:  # type: ignore[attr-defined]
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        above, n = [], node.lineno - 1
        while n >= 1 and lines[n - 1].strip().startswith("#"):
            above.insert(0, comment_at.get(n, ""))
            n -= 1
        beside = [comment_at[i] for i in range(node.lineno, (node.end_lineno or node.lineno) + 1) if i in comment_at]
        found[node.target.id] = " ".join(p for p in (*above, *beside) if p)
    return found


def _searchable(name: str) -> str:
    if name in effects.FIXED_PER_STUDY:
        return "no (fixed per study)"
    text = "yes"
    if name in effects.NEEDS:
        context, wanted, _ = effects.NEEDS[name]
        if isinstance(wanted, frozenset):
            shown = " or ".join(sorted("null" if v is None else str(v) for v in wanted))
            text = f"yes, when `{context}` is {shown}"
        else:
            text = f"yes, when `{context}` is set"
    if name.startswith("lora_") and name != "lora_enabled":
        text += " (LoRA on)" if text != "yes" else ", when `lora_enabled` is true"
    if name in MUTABLE_BY_DEFAULT:
        text += ", PBT-mutable"
    return text


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def _section(prefix: str, model: type[BaseModel], out: list[str]) -> None:
    own = model.__dict__.get("__doc__")  # never pydantic's BaseModel docstring
    doc = inspect.cleandoc(own) if own else None
    out += [f"## `{prefix}`", ""]
    if doc:
        out += [_escape(doc), ""]
    training = model is schema.TrainingSection
    header = "| key | type | default | bounds | searchable | description |" if training else \
        "| key | type | default | bounds | description |"
    out += [header, "|" + "---|" * (header.count("|") - 1)]
    nested: list[tuple[str, type[BaseModel]]] = []
    notes = _comments(model)
    for name, info in model.model_fields.items():
        sub = [a for a in (info.annotation, *get_args(info.annotation))
               if isinstance(a, type) and issubclass(a, BaseModel)]
        if sub:
            nested.append((f"{prefix}.{name}", sub[0]))
        cells = [f"`{prefix}.{name}`", _type(info.annotation), _default(info), _bounds(info)]
        if training:
            cells.append(_searchable(name))
        note = notes.get(name, "")
        if sub:
            note = (note + " " if note else "") + f"A section: see `{prefix}.{name}` below."
        cells.append(_escape(note))
        out.append("| " + " | ".join(cells) + " |")
    out.append("")
    for sub_prefix, sub_model in nested:
        _section(sub_prefix, sub_model, out)


def render() -> str:
    """The whole reference page as Markdown."""
    schema.StudyConfig.model_rebuild()  # resolves the forward reference to ProxySection
    out = [INTRO]
    for name, info in schema.StudyConfig.model_fields.items():
        model = next(a for a in (info.annotation, *get_args(info.annotation))
                     if isinstance(a, type) and issubclass(a, BaseModel))
        _section(name, model, out)
    return "\n".join(out).rstrip() + "\n"


def main(argv: list[str]) -> None:
    text = render()
    if len(argv) > 1:
        with open(argv[1], "w", encoding="utf-8") as f:
            f.write(text)
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main(sys.argv)
