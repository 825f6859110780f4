"""Render report sections as GitHub-flavoured Markdown: interactive figures are only in the HTML report;
a section's images (files beside report.md, e.g. the gain picture) are shown, and a code block that has a
file of its own is a link to it."""

from __future__ import annotations

from lmtune.report.sections import Section, Table

__all__ = ["render_markdown"]


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _table(table: Table) -> list[str]:
    lines = ["| " + " | ".join(_cell(h) for h in table.headers) + " |"]
    lines.append("|" + "|".join("---" for _ in table.headers) + "|")
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in table.rows]
    return [*lines, ""]


def render_markdown(title: str, sections: list[Section]) -> str:
    """The whole Markdown report: a ``#`` title, then each section as ``##`` with text, tables, code."""
    lines = [f"# {title}", ""]
    for section in sections:
        lines += [f"## {section.title}", ""]
        for image in section.images:
            lines += [f"![{section.title}]({image})", ""]
        for paragraph in section.paragraphs:
            lines += [paragraph, ""]
        for table in section.tables:
            lines += _table(table)
        if section.code is not None and section.code_file is not None:
            lines += [f"[{section.code_summary or 'Full file'}]({section.code_file})", ""]
        elif section.code is not None:
            lines += ["```yaml", section.code.rstrip("\n"), "```", ""]
        if section.figures:
            lines += ["(Interactive version in report.html.)" if section.images else
                      "(Interactive plot in report.html.)", ""]
    return "\n".join(lines).rstrip("\n") + "\n"
