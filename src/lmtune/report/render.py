"""``write_report``: the report layer's one entry point for ``lmtune report``.

Reads a study directory (see ``lmtune.report.load``), computes every table once
(``lmtune.report.content``), and writes ``<study_dir>/report/report.html`` (self-contained, interactive
plotly figures, no network access) and ``<study_dir>/report/report.md`` (the same tables, no figures).
"""

from __future__ import annotations

from pathlib import Path

from lmtune.report.content import collect
from lmtune.report.figures import build_figures
from lmtune.report.html import render_html
from lmtune.report.load import StudyDirError, StudyMetaError, load_study_dir
from lmtune.report.markdown import render_markdown
from lmtune.report.sections import sections

__all__ = ["REPORT_DIR", "StudyDirError", "StudyMetaError", "write_report"]

REPORT_DIR = "report"


def write_report(study_dir: Path | str) -> tuple[Path, Path]:
    """Write the HTML and Markdown reports of ``study_dir`` and return ``(html_path, md_path)``.

    Raises ``StudyDirError`` (a ``FileNotFoundError``) when ``study_dir`` has no ``lmtune.json`` and
    ``StudyMetaError`` (a ``ValueError``) when the study files are malformed. Existing reports in
    ``<study_dir>/report/`` are overwritten; nothing else in the study directory is touched.
    """
    record = load_study_dir(study_dir)
    content = collect(record)
    parts = sections(content)
    title = f"lmtune report: {content.study_name}"
    out = record.study_dir / REPORT_DIR
    out.mkdir(parents=True, exist_ok=True)
    html_path, md_path = out / "report.html", out / "report.md"
    html_path.write_text(render_html(title, parts, build_figures(record.study, content)), encoding="utf-8")
    md_path.write_text(render_markdown(title, parts), encoding="utf-8")
    return html_path, md_path
