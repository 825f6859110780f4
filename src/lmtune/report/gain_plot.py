"""Drawing the gain (``gain.GainPanel``): default vs optimized per test metric, one point per seed, the
mean as a bar with its 95 % interval, and what each side cost.

``gain_figure`` is the interactive plotly figure at the top of report.html; ``gain_svg`` is the same
picture as a small standalone SVG (written beside report.md as ``gain.svg``: Markdown shows images, not
scripts, and SVG needs no image library). Both take their axis ranges from ``axes.metric_range``.
"""

from __future__ import annotations

from html import escape

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from lmtune.report.axes import metric_range
from lmtune.report.gain import GainPanel, GainSide, cost_text

__all__ = ["gain_figure", "gain_svg"]

COLORS = {"default": "#7f7f7f", "optimized": "#1f77b4"}
TITLE = "Default vs optimized on the test split: one point per seed, mean ± 95 % interval"


def _jitter(n: int) -> list[float]:
    """Offsets that spread ``n`` seeds' points across their column (deterministic)."""
    return [0.0] if n == 1 else [-0.12 + 0.24 * i / (n - 1) for i in range(n)]


def _span(panel: GainPanel) -> list[float] | None:
    values = [*panel.default.values, *panel.optimized.values]
    for side in (panel.default, panel.optimized):
        values += list(side.interval or ())
    return metric_range(panel.metric, values)


def _panel_title(p: GainPanel) -> str:
    arrow = "↑" if p.higher_is_better else "↓"
    return f"{p.metric} {arrow}  {p.difference:+.4f}<br><sub>{p.verdict.split(';')[0]}</sub>"


def _side_traces(side: GainSide, x: float, first: bool) -> list[go.Scatter]:
    color = COLORS[side.label]
    points = go.Scatter(x=[x + j for j in _jitter(len(side.values))], y=side.values, mode="markers",
                        marker={"size": 9, "color": color, "opacity": 0.75}, name=f"{side.label}: seeds",
                        legendgroup=side.label, showlegend=first, customdata=side.seeds,
                        hovertemplate=f"{side.label}, seed %{{customdata}}: %{{y:.4f}}<extra></extra>")
    lo, hi = side.interval or (side.mean, side.mean)
    mean = go.Scatter(x=[x], y=[side.mean], mode="markers", name=f"{side.label}: mean, 95 % interval",
                      marker={"symbol": "line-ew-open", "size": 44, "color": color, "line": {"width": 3}},
                      error_y={"type": "data", "symmetric": False, "array": [hi - side.mean],
                               "arrayminus": [side.mean - lo], "color": color, "thickness": 2, "width": 10},
                      legendgroup=side.label, showlegend=first,
                      hovertemplate=(f"{side.label} mean %{{y:.4f}} (95 % interval {lo:.4f} – {hi:.4f}, "
                                     f"{len(side.values)} seeds)<extra></extra>"))
    return [points, mean]


def gain_figure(panels: list[GainPanel]) -> go.Figure:
    """One column per metric; x: default | optimized; y: the metric on a range that fits its values."""
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=[_panel_title(p) for p in panels],
                        horizontal_spacing=0.08)
    for col, p in enumerate(panels, start=1):
        for x, side in ((0.0, p.default), (1.0, p.optimized)):
            for trace in _side_traces(side, x, first=col == 1):
                fig.add_trace(trace, row=1, col=col)
        fig.update_xaxes(tickvals=[0, 1], ticktext=["default", "optimized"], range=[-0.5, 1.5], row=1, col=col)
        fig.update_yaxes(range=_span(p), row=1, col=col)
    first = panels[0]
    costs = (f"compute — default: {cost_text(first.default)}<br>optimized: {cost_text(first.optimized)}")
    fig.add_annotation(text=costs, showarrow=False, xref="paper", yref="paper", x=0, y=-0.2, xanchor="left",
                       yanchor="top", align="left", font={"size": 12})
    # no legend: the x labels name the sides, the title says what the marks are
    fig.update_layout(title=TITLE, template="plotly_white", height=460, showlegend=False,
                      margin={"l": 60, "r": 20, "t": 110, "b": 110})
    return fig


# --- SVG ------------------------------------------------------------------------------------------
W, H, TOP, BOTTOM, LEFT = 300, 330, 64, 56, 62  # one panel; the plot area is inside the margins


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    return [lo + (hi - lo) * i / (n - 1) for i in range(n)]


def _svg_panel(p: GainPanel, x0: int) -> list[str]:
    lo, hi = _span(p) or [0.0, 1.0]
    plot_h = H - TOP - BOTTOM

    def y(v: float) -> float:
        return TOP + plot_h * (1 - (v - lo) / ((hi - lo) or 1.0))

    left, right = x0 + LEFT, x0 + W - 16
    out = [f'<text x="{x0 + W / 2}" y="22" text-anchor="middle" font-weight="bold">{escape(p.metric)} '
           f'{"↑" if p.higher_is_better else "↓"} {p.difference:+.4f}</text>',
           f'<text x="{x0 + W / 2}" y="40" text-anchor="middle" font-size="11">'
           f'{escape(p.verdict.split(";")[0])}</text>',
           f'<rect x="{left}" y="{TOP}" width="{right - left}" height="{plot_h}" fill="none" stroke="#ccc"/>']
    for t in _ticks(lo, hi):
        out.append(f'<line x1="{left - 4}" x2="{right}" y1="{y(t):.1f}" y2="{y(t):.1f}" stroke="#eee"/>')
        out.append(f'<text x="{left - 6}" y="{y(t) + 4:.1f}" text-anchor="end" font-size="11">{t:.3f}</text>')
    for i, side in enumerate((p.default, p.optimized)):
        cx = left + (right - left) * (0.28 + 0.44 * i)
        color = COLORS[side.label]
        for j, v in zip(_jitter(len(side.values)), side.values, strict=True):
            out.append(f'<circle cx="{cx + j * 120:.1f}" cy="{y(v):.1f}" r="4.5" fill="{color}" '
                       f'fill-opacity="0.75"><title>seed: {v:.4f}</title></circle>')
        if side.interval is not None:
            a, b = side.interval
            out.append(f'<line x1="{cx:.1f}" x2="{cx:.1f}" y1="{y(max(a, lo)):.1f}" y2="{y(min(b, hi)):.1f}" '
                       f'stroke="{color}" stroke-width="2"/>')
        out.append(f'<line x1="{cx - 22:.1f}" x2="{cx + 22:.1f}" y1="{y(side.mean):.1f}" y2="{y(side.mean):.1f}" '
                   f'stroke="{color}" stroke-width="3"/>')
        out.append(f'<text x="{cx:.1f}" y="{TOP + plot_h + 18}" text-anchor="middle">{side.label}</text>')
        out.append(f'<text x="{cx:.1f}" y="{TOP + plot_h + 34}" text-anchor="middle" font-size="11">'
                   f'{side.mean:.4f}</text>')
    return out


def gain_svg(panels: list[GainPanel]) -> str:
    """A standalone SVG of the panels side by side, the costs below (no scripts, no external files)."""
    width, height = max(W * len(panels), 640), H + 62  # room for the cost lines under a single panel
    first = panels[0]
    body = [line for i, p in enumerate(panels) for line in _svg_panel(p, i * W)]
    body.append(f'<text x="8" y="{H + 14}" font-size="12">compute — default: {escape(cost_text(first.default))}'
                "</text>")
    body.append(f'<text x="8" y="{H + 32}" font-size="12">optimized: {escape(cost_text(first.optimized))}</text>')
    body.append(f'<text x="8" y="{H + 50}" font-size="12" fill="#555">points: one per seed; bar: the mean; line: '
                "its 95 % interval (Student t)</text>")
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" font-family="system-ui, sans-serif" font-size="13">\n'
            f'<title>{escape(TITLE)}</title>\n<rect width="100%" height="100%" fill="white"/>\n'
            + "\n".join(body) + "\n</svg>\n")
