"""The report's sections as format-neutral text: titles, paragraphs, string tables, code, figure keys.

Both ``markdown`` and ``html`` render the list that ``sections`` returns, so the two files always say
the same things in the same order. Paragraph text may hold `inline code` in backticks.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from lmtune.report.content import ReportContent
from lmtune.report.diff import show
from lmtune.report.series import FEW_TRIALS_FOR_IMPORTANCES
from lmtune.report.tables import ALPHA, TrialRow, seeds_advice, selection_gap_text

__all__ = ["BEST_CONFIG_FILE", "GAIN_IMAGE", "Section", "Table", "fmt_mean_std", "fmt_num", "fmt_seconds", "sections"]

BEST_CONFIG_FILE = "best-config.yaml"  # beside report.md: the full best configuration
GAIN_IMAGE = "gain.svg"  # beside report.md: the default-vs-optimized picture


@dataclass(frozen=True)
class Table:
    headers: list[str]
    rows: list[list[str]]


@dataclass(frozen=True)
class Section:
    """One heading's worth of report. ``figures`` name plots built by ``lmtune.report.figures``."""

    key: str
    title: str
    paragraphs: list[str] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    code: str | None = None
    figures: list[str] = field(default_factory=list)
    code_summary: str | None = None  # HTML: the code collapsed under this line (<details>)
    code_file: str | None = None  # Markdown: a link to this file (beside report.md) instead of the code
    images: list[str] = field(default_factory=list)  # Markdown: image files beside report.md, shown first
    figures_first: bool = False  # HTML: the figures right after the paragraphs, above the tables


def fmt_num(value: float | None, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:.{digits}f}"


def fmt_mean_std(mean: float, std: float, digits: int = 4) -> str:
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def fmt_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


def _fmt_tokens(tokens: int | None) -> str:
    return "—" if tokens is None else f"{tokens:,}"


def _fmt_params(params: dict[str, Any]) -> str:
    parts = []
    for name, value in params.items():
        shown = f"{value:.4g}" if isinstance(value, float) else json.dumps(value)
        parts.append(f"{name}={shown}")
    return ", ".join(parts)


def _overview(c: ReportContent) -> Section:
    paragraphs = [
        f"Study `{c.study_name}` in `{c.study_dir}`: metric `{c.metric}` ({c.direction}), "
        f"{c.search_cost['n_trials']} trials.",
    ]
    if c.best is not None:
        paragraphs.append(f"Best trial: #{c.best.number} with {c.metric} = {fmt_num(c.best.value)}.")
        if c.comparison:
            r = c.comparison[0]
            paragraphs.append(f"On the held-out test split, the optimized configuration changed {r.metric} by "
                              f"{r.difference:+.4f} ({fmt_num(r.default_mean)} → {fmt_num(r.best_mean)}): {r.verdict}.")
    else:
        paragraphs.append("No trial has completed yet, so there is no best configuration.")
    return Section("overview", "Overview", paragraphs)


def _comparison(c: ReportContent) -> Section:
    title = "Default vs optimized (held-out test set)"
    if c.comparison is None or c.final is None:
        text = (
            "No final runs yet: run `lmtune final` on this study directory to retrain the default and "
            "the best configuration with several seeds and compare them on the test split."
        )
        return Section("comparison", title, [text])
    seeds = c.final.get("seeds", [])
    intro = (
        f"Each configuration retrained with seeds {seeds}; cells are mean ± sample std over seeds. "
        f"A difference is called significant when Welch's t-test gives p < {ALPHA} (needs 2+ seeds per side)."
    )
    rows = [
        [
            r.metric + ("" if r.higher_is_better else " (lower is better)"),
            fmt_mean_std(r.default_mean, r.default_std),
            fmt_mean_std(r.best_mean, r.best_std),
            f"{r.difference:+.4f}",
            r.verdict,
        ]
        for r in c.comparison
    ]
    table = Table(["metric", "default", "optimized", "difference", "verdict"], rows)
    paragraphs = [intro]
    advice = seeds_advice(c.comparison, c.study_dir)
    if advice is not None:
        paragraphs.append(advice)
    if c.selection is not None:
        paragraphs.append(selection_gap_text(c.selection))
    return Section("comparison", title, paragraphs, [table], figures=["gain"] if c.gain else [],
                   images=[GAIN_IMAGE] if c.gain else [], figures_first=True)


def _cost(c: ReportContent) -> Section:
    s = c.search_cost
    states = ", ".join(f"{n} {k.lower()}" for k, n in s["by_state"].items()) or "none"
    share = s["overhead_share"]
    rows = [
        [
            "search",
            f"{s['n_trials']} ({states})",
            _fmt_tokens(int(s["train_tokens"])),
            fmt_seconds(s["wall_time_s"]),
            "—" if share is None else f"{100 * share:.1f} %",
        ],
    ]
    if c.final_cost is not None:
        for which, part in c.final_cost["by_which"].items():
            rows.append(
                [
                    f"final ({which})",
                    f"{part['runs']} runs",
                    _fmt_tokens(part["train_tokens"]),
                    fmt_seconds(part["wall_time_s"]),
                    "—",
                ]
            )
    paragraphs = []
    if c.budget:
        paragraphs.append(f"Search budget spent: {c.budget} (wall time x devices x price per device-hour).")
    if c.final_cost is not None and c.final_cost.get("machine"):
        paragraphs.append(f"Final runs measured on: {c.final_cost['machine']}.")
    table = Table(["stage", "trials / runs", "train tokens", "wall time", "overhead share"], rows)
    return Section("cost", "Compute cost", paragraphs, [table])


def _best_config(c: ReportContent) -> Section:
    if c.best is None or c.best_yaml is None:
        return Section("best", "Best configuration", ["No completed trial yet."])
    changes = c.changes or []
    changed = [ch for ch in changes if ch.changed]
    kept = [ch.name for ch in changes if ch.searched and not ch.changed]
    text = [f"What trial #{c.best.number} changed from the default: {len(changed)} setting(s)"
            + (" (* = searched)." if changed else "; it trains the default settings.")]
    if kept:
        text.append("Searched but kept at the default value: " + ", ".join(f"`{n}`" for n in kept) + ".")
    rows = [[ch.name + (" *" if ch.searched else ""), show(ch.default), show(ch.best)] for ch in changed]
    summary = (f"Full configuration ({c.best_yaml.count(chr(10))} lines of YAML: the file `lmtune export --format "
               "yaml` writes; `lmtune train` on it trains this configuration once)")
    return Section("best", "Best configuration: what changed", text,
                   [Table(["setting", "default", "best"], rows)] if rows else [], code=c.best_yaml,
                   code_summary=summary, code_file=BEST_CONFIG_FILE)


def _search_plots(c: ReportContent) -> list[Section]:
    imp = c.importances
    imp_text = (
        [f"{imp.evaluator} importance of each searched parameter over the completed trials."]
        if imp.values
        else [f"No importances: {imp.reason}."]
    )
    if imp.values and imp.trials < FEW_TRIALS_FOR_IMPORTANCES:
        imp_text.append(f"Warning: computed from only {imp.trials} completed trials (fewer than "
                        f"{FEW_TRIALS_FOR_IMPORTANCES}); with so few points the shares are mostly noise: do not "
                        "drop a parameter because of them.")
    staged = len(c.compute) > 1
    compute_text = (
        f"The best `{c.metric}` found so far against the compute spent to find it, every trial counted "
        "(pruned and failed ones too), in the order trials ended"
        + ("; the target stage starts where the proxy stage's compute ended (the proxy line is the proxy "
           "model's own score)." if staged else ".")
    )
    eb = c.expected_best
    if len(eb) >= 2:
        rise = eb[-1] - eb[-2]
        eb_text = (f"The expected best `{c.metric}` of n trials drawn from this study's {len(eb)} completed ones "
                   f"(Dodge et al. 2019, \"Show Your Work\"): the last trial added {rise:+.4f} in expectation; a curve "
                   "still rising at its right end says more trials would still pay, a flat one that they would not.")
    else:
        eb_text = "Needs at least 2 completed trials."
    curve_text = (
        f"`{c.metric}` against train examples seen (equal amounts of training data across trials); "
        "pruned trials dashed and marked where they stopped, failed trials left out."
        if c.curves
        else f"No trial has recorded a `{c.metric}` curve yet."
    )
    has_compute = any(p[2] is not None for one in c.compute for p in one.points)
    return [
        Section("history", "Optimization history", figures=["history"]),
        Section("compute", "Best score vs compute", [compute_text] if has_compute else
                ["No completed trial yet."], figures=["compute"] if has_compute else []),
        Section("expected_best", "Expected best vs number of trials", [eb_text],
                figures=["expected_best"] if len(eb) >= 2 else []),
        Section(
            "importances", "Parameter importances", imp_text, figures=["importances"] if imp.values else []
        ),
        Section("parallel", "Parallel coordinates", figures=["parallel"]),
        Section("curves", "Learning curves", [curve_text], figures=["curves"] if c.curves else []),
    ]


def _front(c: ReportContent) -> Section | None:
    f = c.front
    if f is None:
        return None
    names = [m for m, _ in f.objectives]
    senses = ", ".join(f"`{m}` ({d})" for m, d in f.objectives)
    members = sorted(f.members, key=lambda p: p.number)
    text = [f"{len(members)} of {len(f.points)} completed trials are on the Pareto front of {senses}: no other "
            "trial is at least as good on every objective and better on one. Each is a valid answer; choose by "
            "what you pay for, then `lmtune export --trial N` or `lmtune final --trial N`."]
    default = next((p for p in f.points if p.is_default), None)
    if default is not None:
        where = "on the front" if default.on_front else "not on the front (some trial beats it on every objective)"
        text.append(f"The default settings (trial #{default.number}) are {where}.")
    rows = [[f"#{p.number}" + (" (default)" if p.is_default else ""), *(fmt_num(v) for v in p.values),
             _fmt_params(p.params)] for p in members]
    return Section("front", "Pareto front", text, [Table(["trial", *names, "params"], rows)],
                   figures=["front"] if f.points else [], figures_first=True)


def _pbt(c: ReportContent) -> Section | None:
    lin = c.lineage
    if lin is None:
        return None
    text = f"{len({n.member for n in lin.nodes})} members, {len(lin.nodes)} member-generations."
    tables = []
    schedule = lin.schedules.get(lin.best_member) if lin.best_member is not None else None
    if schedule:
        text += f" Best member: {lin.best_member} (trial #{lin.best_trial}); its schedule:"
        rows = [
            [str(step.get("units", "")), _fmt_params(dict(step.get("config") or {}))] for step in schedule
        ]
        tables.append(Table(["from units", "config"], rows))
    return Section("pbt", "Population-based training lineage", [text], tables, figures=["pbt"])


def _transfer(c: ReportContent) -> Section | None:
    tr = c.transfer
    if tr is None:
        return None
    text = [
        f"Spearman rank correlation between proxy and target values: rho = {fmt_num(tr.rho, 3)} "
        f"over {len(tr.pairs)} configurations."
    ]
    if tr.warning:
        text.append(f"Warning: {tr.warning}.")
    rows = [
        [stage, str(cost["trials"]), _fmt_tokens(int(cost["train_tokens"])), fmt_seconds(cost["wall_time_s"])]
        for stage, cost in (("proxy", tr.proxy_cost), ("target", tr.target_cost))
    ]
    est = tr.target_only
    if est is not None:
        rows.append([f"target-only search (estimate: {est['trials']} trials at the target's mean cost per "
                     "complete trial)", str(est["trials"]), _fmt_tokens(int(est["train_tokens"])),
                     fmt_seconds(est["wall_time_s"])])
        spent = tr.proxy_cost["wall_time_s"] + tr.target_cost["wall_time_s"]
        if est["wall_time_s"] > 0:
            text.append(f"Proxy search + transfer took {100 * spent / est['wall_time_s']:.0f} % of the trial wall "
                        f"time a target-only search of {est['trials']} trials would have taken (estimated).")
    table = Table(["stage", "trials", "train tokens", "wall time"], rows)
    return Section(
        "transfer", "Proxy → target transfer", text, [table], figures=["transfer"] if tr.pairs else []
    )


def _trial_rows(rows: list[TrialRow]) -> list[list[str]]:
    return [
        [
            str(r.number) + (" (default)" if r.is_default else ""),
            r.state,
            fmt_num(r.value),
            _fmt_params(r.params),
            _fmt_tokens(r.train_tokens),
            fmt_seconds(r.wall_time_s),
            r.reason,
        ]
        for r in rows
    ]


def _trials(c: ReportContent) -> list[Section]:
    headers = ["trial", "state", c.metric, "params", "train tokens", "wall time", "reason"]
    fail_text = [] if c.failures else ["No trial failed."]
    fail_tables = [Table(headers, _trial_rows(c.failures))] if c.failures else []
    return [
        Section("trials", "All trials", tables=[Table(headers, _trial_rows(c.trials))]),
        Section("failures", "Failures", fail_text, fail_tables),
    ]


def sections(c: ReportContent) -> list[Section]:
    """The report's sections in reading order; optional ones (PBT, proxy) only when they apply."""
    out = [_overview(c), _comparison(c), *([front] if (front := _front(c)) else []), _best_config(c), _cost(c),
           *_search_plots(c)]
    out += [s for s in (_pbt(c), _transfer(c)) if s is not None]
    return out + _trials(c)
