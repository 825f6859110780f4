"""What ``lmtune final`` prints: the default-vs-optimized table and the compute spent.

The numbers come from the report layer's pure functions (``comparison_table``, ``search_cost``,
``final_cost``), so the terminal, report.md and report.html always agree.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from optuna.trial import FrozenTrial
from rich.console import Console

from lmtune.report import (
    ComparisonRow,
    comparison_table,
    final_cost,
    search_cost,
    seeds_advice,
    selection_gap,
    selection_gap_text,
    trial_table,
)


def directions(metric: str, direction: str, final: Mapping[str, Any]) -> dict[str, bool]:
    """The search metric's direction also decides its ``test_`` counterpart (as the report does)."""
    base = metric.removeprefix("eval_")
    return {n: direction != "minimize" for n in final.get("metric_names", []) if n.removeprefix("test_") == base}


def comparison_rows(final: Mapping[str, Any], metric: str, direction: str) -> list[ComparisonRow]:
    """The comparison rows; raises ``ValueError`` when one side has no finished run."""
    return comparison_table(final, higher_is_better=directions(metric, direction, final))


def comparison_markdown(rows: Sequence[ComparisonRow]) -> list[str]:
    """The comparison as Markdown table lines (readable in a terminal, pasteable into a README)."""
    lines = ["| metric | default | optimized | difference | exceeds seed std | verdict |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        arrow = "↑" if r.higher_is_better else "↓"
        lines.append(f"| {r.metric} {arrow} | {r.default_mean:.4f} ± {r.default_std:.4f} (n={r.n_default}) | "
                     f"{r.best_mean:.4f} ± {r.best_std:.4f} (n={r.n_best}) | {r.difference:+.4f} | "
                     f"{'yes' if r.exceeds_spread else 'no'} | {r.verdict} |")
    return lines


def cost_lines(trials: Sequence[FrozenTrial], final: Mapping[str, Any]) -> list[str]:
    s, f = search_cost(trials), final_cost(final)
    states = ", ".join(f"{n} {k.lower()}" for k, n in s["by_state"].items())
    overhead = f", {s['overhead_share']:.0%} overhead" if s.get("overhead_share") is not None else ""
    parts = ", ".join(f"{w} {p['runs']}" for w, p in f["by_which"].items())
    return [
        f"search: {s['n_trials']} trials ({states}), {s['train_tokens']:,} train tokens, "
        f"{s['wall_time_s']:.0f}s trial wall time{overhead}",
        f"final:  {f['runs']} runs ({parts}), {f['train_tokens']:,} train tokens, {f['wall_time_s']:.0f}s wall time",
        f"final runs measured on: {f.get('machine') or 'unknown machine'}",
    ]


def print_final(console: Console, final: Mapping[str, Any], trials: Sequence[FrozenTrial], *, metric: str,
                direction: str, study_dir: object = "STUDY_DIR") -> None:
    try:
        rows = comparison_rows(final, metric, direction)
    except ValueError as exc:
        console.print(f"no comparison yet: {exc}", markup=False)
    else:
        if final.get("best_trial") is not None and final.get("best_trial") == final.get("default_trial"):
            console.print(f"note: the best trial ({final['best_trial']}) is the default configuration's trial, "
                          "so both sides retrain the same settings")
        console.print("Default vs optimized on the test split (mean ± std over seeds; ↑/↓ = higher/lower is better)")
        for line in comparison_markdown(rows):
            console.print(line, markup=False)
        advice = seeds_advice(rows, study_dir)
        if advice is not None:
            console.print(advice.replace("`", ""), markup=False)
    gap = selection_gap(final, trial_table(trials), metric)
    if gap is not None:
        console.print(selection_gap_text(gap), markup=False)
    for line in cost_lines(trials, final):
        console.print(line)
