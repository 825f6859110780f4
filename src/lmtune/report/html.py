"""Render report sections and plotly figures as one self-contained HTML file.

plotly.js is embedded inline exactly once, in ``<head>``; each figure is a ``<div>`` plus a small
``Plotly.newPlot`` script (``include_plotlyjs=False``). Nothing is loaded from the network: the bundle's
few built-in ``https://cdn`` default strings (topojson and map-icon base URLs, used only by geo/map
traces the report never draws) are written with ``\\/`` escapes, which JavaScript reads as the same
string, so the file contains no literal ``https://cdn`` at all.
"""

from __future__ import annotations

import html
import re

import plotly.graph_objects as go
import plotly.io as pio
from plotly.offline import get_plotlyjs

from lmtune.report.sections import Section, Table

__all__ = ["plotly_js_inline", "render_html"]

_CDN = "https://cdn"
_PLOT_CONFIG = {"displaylogo": False, "responsive": True}
_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1180px; margin: 2em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 0.8em 0 1.4em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; vertical-align: top; }
th { background: #f2f2f2; }
pre { background: #f6f8fa; padding: 0.8em; overflow-x: auto; }
code { background: #f2f2f2; padding: 0 0.2em; }
.plot { margin: 0.5em 0 1.5em; }
summary { cursor: pointer; color: #1f5fa8; margin: 0.4em 0; }
"""


def plotly_js_inline() -> str:
    """The plotly.js bundle, safe to inline in a ``<script>`` and free of the literal ``https://cdn``.

    Every occurrence of that text in the bundle is inside a string or template literal (or a comment),
    where ``\\/`` and ``/`` are the same character, so the rewrite does not change behaviour.
    """
    return get_plotlyjs().replace(_CDN, "https:\\/\\/cdn").replace("</script", "<\\/script")


def _inline(text: str) -> str:
    """Escape ``text`` for HTML and turn `backticked` spans into ``<code>``."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))


def _table(table: Table) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in table.headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in table.rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _figure(key: str, fig: go.Figure) -> str:
    div = pio.to_html(
        fig,
        full_html=False,
        include_plotlyjs=False,
        include_mathjax=False,
        div_id=f"fig-{key}",
        config=_PLOT_CONFIG,
    )
    return f'<div class="plot">{div}</div>'


def _section(section: Section, figures: dict[str, go.Figure]) -> str:
    parts = [f'<section id="{html.escape(section.key)}"><h2>{html.escape(section.title)}</h2>']
    parts += [f"<p>{_inline(p)}</p>" for p in section.paragraphs]
    drawn = [_figure(key, figures[key]) for key in section.figures if key in figures]
    if section.figures_first:
        parts, drawn = parts + drawn, []
    parts += [_table(t) for t in section.tables]
    if section.code is not None:
        code = f"<pre><code>{html.escape(section.code)}</code></pre>"
        if section.code_summary is not None:  # one click away, not in the way
            code = f"<details><summary>{_inline(section.code_summary)}</summary>{code}</details>"
        parts.append(code)
    return "\n".join([*parts, *drawn, "</section>"])


def render_html(title: str, sections: list[Section], figures: dict[str, go.Figure]) -> str:
    """The whole HTML document. Figures named by a section but missing from ``figures`` are skipped."""
    body = "\n".join(_section(s, figures) for s in sections)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n<style>{_STYLE}</style>\n"
        f'<script type="text/javascript">{plotly_js_inline()}</script>\n</head>\n'
        f"<body>\n<h1>{html.escape(title)}</h1>\n{body}\n</body>\n</html>\n"
    )
