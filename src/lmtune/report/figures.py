"""Plotly figures of a report. Drawing only: every number shown comes from ``ReportContent`` or the study.

Optimization history and parallel coordinates come from ``optuna.visualization`` (they read the study);
the other figures are drawn here from the report's tables. ``build_figures`` returns figures keyed by the
names that ``sections`` refers to.
"""

from __future__ import annotations

from typing import Any

import optuna
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from lmtune.report.axes import metric_range
from lmtune.report.content import Front, ReportContent
from lmtune.report.gain_plot import gain_figure
from lmtune.report.series import ComputeSeries, Curve, Lineage, TransferSummary

__all__ = ["build_figures"]

_LAYOUT: dict[str, Any] = {
    "template": "plotly_white",
    "height": 440,
    "margin": {"l": 60, "r": 20, "t": 50, "b": 50},
}


def _curves_figure(curves: list[Curve], metric: str, best: int | None) -> go.Figure:
    fig = go.Figure()
    for curve in curves:
        if curve.state == "FAIL":
            continue
        xs, ys = [p[0] for p in curve.points], [p[1] for p in curve.points]
        pruned = curve.state == "PRUNED"
        label = (
            f"#{curve.number}"
            + (" default" if curve.is_default else "")
            + (" best" if curve.number == best else "")
        )
        width = 3.0 if curve.number == best or curve.is_default else 1.5
        symbols = ["circle"] * (len(xs) - 1) + ["x" if pruned else "circle"]
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=ys,
                mode="lines+markers",
                name=label + (" (pruned)" if pruned else ""),
                line={"dash": "dash" if pruned else "solid", "width": width},
                marker={"symbol": symbols, "size": [5] * (len(xs) - 1) + [10 if pruned else 5]},
            )
        )
    fig.update_layout(
        title=f"Learning curves: {metric}",
        xaxis_title="train examples seen (equal data across batch sizes)",
        yaxis_title=metric,
        **_LAYOUT,
    )
    fig.update_yaxes(range=metric_range(metric, [p[1] for c in curves if c.state != "FAIL" for p in c.points]))
    return fig


def _compute_figure(series: list[ComputeSeries], metric: str) -> go.Figure:
    """Best value so far against train tokens (left) and trainer wall time (right), one line per stage."""
    fig = make_subplots(rows=1, cols=2, shared_yaxes=True, horizontal_spacing=0.06)
    colors = ("#1f77b4", "#ff7f0e", "#2ca02c")
    for i, one in enumerate(series):
        pts = [p for p in one.points if p[2] is not None]
        style: dict[str, Any] = {"line": {"shape": "hv", "width": 2, "color": colors[i % len(colors)]},
                                 "mode": "lines+markers", "legendgroup": one.stage, "name": one.stage}
        fig.add_trace(go.Scatter(x=[p[0] for p in pts], y=[p[2] for p in pts], **style), row=1, col=1)
        fig.add_trace(go.Scatter(x=[p[1] for p in pts], y=[p[2] for p in pts], showlegend=False, **style),
                      row=1, col=2)
    fig.update_xaxes(title_text="train tokens (cumulative, every trial)", row=1, col=1)
    fig.update_xaxes(title_text="trainer wall time, s (cumulative)", row=1, col=2)
    fig.update_yaxes(title_text=f"best {metric} so far", row=1, col=1)
    fig.update_yaxes(range=metric_range(metric, [p[2] for one in series for p in one.points]))
    fig.update_layout(title=f"Best {metric} vs compute",
                      legend={"orientation": "h", "x": 1.0, "xanchor": "right", "y": 1.08}, **_LAYOUT)
    return fig


def _expected_best_figure(values: list[float], metric: str) -> go.Figure:
    fig = go.Figure(go.Scatter(x=list(range(1, len(values) + 1)), y=values, mode="lines+markers"))
    fig.update_layout(title=f"Expected best {metric} of n trials (Dodge et al. 2019)",
                      xaxis_title="trials (n)", yaxis_title=f"expected best {metric}", **_LAYOUT)
    fig.update_yaxes(range=metric_range(metric, values))
    return fig


def _importances_figure(values: dict[str, float], evaluator: str) -> go.Figure:
    names = sorted(values, key=lambda k: values[k])
    fig = go.Figure(
        go.Bar(
            x=[values[n] for n in names],
            y=names,
            orientation="h",
            text=[f"{values[n]:.2f}" for n in names],
            textposition="auto",
        )
    )
    fig.update_layout(
        title=f"Hyperparameter importances ({evaluator})", xaxis_title="share of variance", **_LAYOUT
    )
    return fig


def _schedule_traces(schedule: list[dict[str, Any]]) -> list[go.Scatter]:
    """One step-line per numeric hyperparameter, as a multiple of the member's starting value."""
    configs = [(int(s.get("units", 0)), dict(s.get("config") or {})) for s in schedule]
    names = sorted({k for _, c in configs for k, v in c.items() if isinstance(v, int | float)})
    traces = []
    for name in names:
        pts = [(u, float(c[name])) for u, c in configs if isinstance(c.get(name), int | float)]
        if not pts or pts[0][1] == 0.0:
            continue
        traces.append(
            go.Scatter(
                x=[u for u, _ in pts],
                y=[v / pts[0][1] for _, v in pts],
                mode="lines+markers",
                name=name,
                line={"shape": "hv"},
                customdata=[v for _, v in pts],
                hovertemplate=name + " = %{customdata:.4g} (×%{y:.2f}) from %{x} units<extra></extra>",
            )
        )
    return traces


def _lineage_traces(lin: Lineage) -> list[go.Scatter]:
    """Parent edges as grey segments, then one marker per member-generation coloured by value."""
    where = {n.trial: (n.generation, n.member) for n in lin.nodes}
    ex: list[float | None] = []
    ey: list[float | None] = []
    for parent, child in lin.edges:
        if parent in where and child in where:
            ex += [where[parent][0], where[child][0], None]
            ey += [where[parent][1], where[child][1], None]
    edges = go.Scatter(x=ex, y=ey, mode="lines", line={"color": "#999", "width": 1}, hoverinfo="skip")
    marker = {
        "size": 12,
        "color": [n.value if n.value is not None else float("nan") for n in lin.nodes],
        "colorscale": "Viridis",
        "showscale": True,
        "colorbar": {"len": 0.45, "y": 0.78, "title": {"text": "value"}},
        "line": {"width": [3 if n.trial == lin.best_trial else 0 for n in lin.nodes], "color": "red"},
    }
    nodes = go.Scatter(
        x=[n.generation for n in lin.nodes],
        y=[n.member for n in lin.nodes],
        mode="markers",
        marker=marker,
        text=[f"trial #{n.trial}, value {n.value}" for n in lin.nodes],
        hoverinfo="text",
    )
    return [edges, nodes]


def _pbt_figure(lin: Lineage) -> go.Figure:
    """Top: the lineage graph (best trial ringed red). Bottom: the best member's schedule."""
    titles = ("Members by generation (edges: continued from)", f"Schedule of best member {lin.best_member}")
    fig = make_subplots(rows=2, cols=1, vertical_spacing=0.15, subplot_titles=titles)
    for trace in _lineage_traces(lin):
        fig.add_trace(trace.update(showlegend=False), row=1, col=1)
    schedule = lin.schedules.get(lin.best_member) if lin.best_member is not None else None
    for trace in _schedule_traces(schedule or []):
        fig.add_trace(trace, row=2, col=1)
    fig.update_xaxes(title_text="generation", dtick=1, row=1, col=1)
    fig.update_yaxes(title_text="member", dtick=1, row=1, col=1)
    fig.update_xaxes(title_text="units", row=2, col=1)
    fig.update_yaxes(title_text="× starting value", row=2, col=1)
    legend = {"orientation": "h", "y": -0.12, "title": {"text": "hyperparameter:"}}
    fig.update_layout(**{**_LAYOUT, "height": 760}, title="PBT lineage", legend=legend)
    return fig


def _transfer_figure(tr: TransferSummary, metric: str) -> go.Figure:
    fig = go.Figure(
        go.Scatter(
            x=[p.proxy_value for p in tr.pairs],
            y=[p.target_value for p in tr.pairs],
            mode="markers+text",
            text=[f"#{p.target_trial}" for p in tr.pairs],
            textposition="top center",
            marker={"size": 10},
        )
    )
    fig.update_layout(
        title=f"Proxy vs target {metric} (Spearman rho = {tr.rho:.3f})",
        xaxis_title=f"proxy {metric}",
        yaxis_title=f"target {metric}",
        **_LAYOUT,
    )
    fig.update_xaxes(range=metric_range(metric, [p.proxy_value for p in tr.pairs]))
    fig.update_yaxes(range=metric_range(metric, [p.target_value for p in tr.pairs]))
    return fig


def build_figures(study: optuna.Study, content: ReportContent) -> dict[str, go.Figure]:
    """Every figure the sections name, keyed ``history``, ``parallel``, ``gain``, ``compute``,
    ``expected_best``, ``importances``, ``curves``, ``pbt`` and ``transfer`` (all but the first two only
    when their data exists). Every metric axis spans the data (``axes.metric_range``)."""
    name = content.metric
    # a multi-objective study: these two show the first objective (the score); the front shows them all
    score = (lambda t: t.values[0]) if len(study.directions) > 1 else None
    figs: dict[str, go.Figure] = {
        "history": optuna.visualization.plot_optimization_history(study, target=score, target_name=name),
        "parallel": optuna.visualization.plot_parallel_coordinate(study, target=score, target_name=name),
    }
    for key in ("history", "parallel"):
        figs[key].update_layout(**_LAYOUT)
    values = [t.values[0] for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
              if t.values]
    figs["history"].update_yaxes(range=metric_range(name, values))  # plotly's own fit counts empty traces
    # parallel coordinates: Optuna scales every axis, the objective's too, to its own data's span
    if content.gain:
        figs["gain"] = gain_figure(content.gain)
    if content.importances.values:
        figs["importances"] = _importances_figure(content.importances.values, content.importances.evaluator)
    if any(p[2] is not None for one in content.compute for p in one.points):
        figs["compute"] = _compute_figure(content.compute, name)
    if len(content.expected_best) >= 2:
        figs["expected_best"] = _expected_best_figure(content.expected_best, name)
    if content.curves:
        best = content.best.number if content.best else None
        figs["curves"] = _curves_figure(content.curves, name, best)
    if content.lineage is not None:
        figs["pbt"] = _pbt_figure(content.lineage)
    if content.transfer is not None and content.transfer.pairs:
        figs["transfer"] = _transfer_figure(content.transfer, name)
    if content.front is not None and content.front.points:
        figs["front"] = _front_figure(content.front)
    return figs


def _front_figure(front: Front) -> go.Figure:
    """The score (first objective, y) against each other objective (x), one panel each: every COMPLETE
    trial, the front's joined by a line, the default settings marked."""
    (score, _), costs = front.objectives[0], front.objectives[1:]
    fig = make_subplots(rows=1, cols=len(costs), shared_yaxes=True,
                        subplot_titles=[f"{score} vs {m} ({d})" for m, d in costs])
    for k, (cost, _d) in enumerate(costs, start=1):
        groups = (("other trials", [p for p in front.points if not p.on_front], "#9aa5b1", "circle"),
                  ("Pareto front", sorted(front.members, key=lambda p: p.values[k]), "#1f77b4", "circle"),
                  ("default settings", [p for p in front.points if p.is_default], "#d62728", "star"))
        for label, pts, color, symbol in groups:
            if not pts:
                continue
            fig.add_trace(go.Scatter(
                x=[p.values[k] for p in pts], y=[p.values[0] for p in pts], name=label, legendgroup=label,
                showlegend=k == 1, mode="lines+markers" if label == "Pareto front" else "markers",
                line={"shape": "hv", "color": color}, marker={"color": color, "symbol": symbol,
                                                                "size": 14 if symbol == "star" else 9},
                text=[f"trial #{p.number}" for p in pts],
                hovertemplate="%{text}<br>" + cost + " %{x:.4g}<br>" + score + " %{y:.4g}<extra></extra>"),
                row=1, col=k)
        fig.update_xaxes(title_text=cost, row=1, col=k)
    fig.update_yaxes(title_text=score, row=1, col=1)
    fig.update_layout(**_LAYOUT)
    return fig
