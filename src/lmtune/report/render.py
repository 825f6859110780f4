"""``write_report``: the report layer's one entry point for ``lmtune report``.

Reads a study directory (see ``lmtune.report.load``), computes every table once
(``lmtune.report.content``), and writes ``<study_dir>/report/report.html`` (self-contained, interactive
plotly figures, no network access) and ``<study_dir>/report/report.md`` (the same tables; beside it
``best-config.yaml``, the full best configuration it links to, and ``gain.svg``, the default-vs-optimized
picture it shows, once ``lmtune final`` has run).
"""

from __future__ import annotations

from pathlib import Path

from lmtune.report.content import collect
from lmtune.report.figures import build_figures
from lmtune.report.gain_plot import gain_svg
from lmtune.report.html import plotly_js_inline, render_html
from lmtune.report.load import StudyDirError, StudyMetaError, load_study_dir
from lmtune.report.markdown import render_markdown
from lmtune.report.sections import BEST_CONFIG_FILE, GAIN_IMAGE, sections

__all__ = ["REPORT_DIR", "StudyDirError", "StudyMetaError", "size_note", "write_report"]

REPORT_DIR = "report"
MIB = 2**20


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
    for name, text in ((BEST_CONFIG_FILE, content.best_yaml),
                       (GAIN_IMAGE, gain_svg(content.gain) if content.gain else None)):
        if text is not None:
            (out / name).write_text(text, encoding="utf-8")
        else:  # an older report's file would describe another state of the study
            (out / name).unlink(missing_ok=True)
    return html_path, md_path


def size_note(html_path: Path) -> str:
    """``4.7 MiB: 4.6 MiB of it plotly.js, embedded so the file opens offline; 0.1 MiB the study`` — what
    ``lmtune report`` says about the file it wrote. The study's part grows with its trials, about as
    fast as their own data does (one row, one point set, one curve per trial); plotly.js is fixed."""
    total = html_path.stat().st_size
    library = len(plotly_js_inline().encode("utf-8"))
    return (f"{total / MIB:.1f} MiB: {library / MIB:.1f} MiB of it plotly.js, embedded so the file opens offline; "
            f"{(total - library) / MIB:.1f} MiB the study")
