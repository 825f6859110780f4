"""The replay's plots, as standalone SVG (no image library; Markdown shows them as images): per task, the
regret of every arm against the budget, and Dodge et al.'s expected best against the number of
configurations trained to their end, with the arms' mean test score at each budget set beside it.

    PYTHONPATH=src:benchmarks .venv/bin/python benchmarks/tables/plots.py \
        --summary docs/benchmarks/search-replay/summary.json --out docs/benchmarks/search-replay/plots

`replay.py` writes them next to its summary as well.
"""

from __future__ import annotations

import argparse
import json
import math
from html import escape
from pathlib import Path
from typing import Any

# the arms drawn (the rest, the candidates of the auto redesign, are in the tables): lmtune's strategies as a
# user sets them, and the peers as their users run them
SHOWN: dict[str, tuple[str, str]] = {  # arm: (label, colour)
    "auto": ("lmtune auto", "#d62728"),
    "random": ("lmtune random", "#9467bd"),
    "asha": ("lmtune asha", "#8c564b"),
    "hyperband": ("lmtune hyperband", "#e377c2"),
    "bayes": ("lmtune bayes", "#bcbd22"),
    "peer_optuna_hyperband": ("HF + Optuna TPE + Hyperband", "#1f77b4"),
    "random_search": ("random search, to the end", "#7f7f7f"),
    "one_epoch_topk": ("one-epoch top-3", "#17becf"),
    "synetune_asha": ("Syne Tune ASHA", "#2ca02c"),
    "synetune_bohb": ("Syne Tune BOHB", "#ff7f0e"),
}
W, H = 860, 440
LEFT, RIGHT, TOP, BOTTOM = 64, 270, 62, 52


def scale(metric: str) -> tuple[float, str]:
    """Regret in points for a score in [0, 1] (accuracy, F1), in its own units otherwise (a loss)."""
    return (100.0, "points") if metric.endswith(("accuracy", "f1")) else (1.0, metric)


def _log_ticks(lo: float, hi: float) -> list[float]:
    out = []
    for e in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1):
        out += [m * 10.0 ** e for m in (1, 2, 5) if lo <= m * 10.0 ** e <= hi]
    return out or [lo, hi]


def _frame(title: str, subtitle: list[str], body: list[str], legend: list[tuple[str, str, bool]]) -> str:
    parts = [f'<text x="{LEFT}" y="20" font-weight="bold">{escape(title)}</text>',
             *(f'<text x="{LEFT}" y="{36 + 14 * i}" font-size="11" fill="#555">{escape(s)}</text>'
               for i, s in enumerate(subtitle)), *body]
    for i, (label, colour, thick) in enumerate(legend):
        y = TOP + 8 + 18 * i
        parts.append(f'<line x1="{W - RIGHT + 16}" x2="{W - RIGHT + 40}" y1="{y}" y2="{y}" stroke="{colour}" '
                     f'stroke-width="{3 if thick else 1.6}"/>')
        parts.append(f'<text x="{W - RIGHT + 46}" y="{y + 4}" font-size="11">{escape(label)}</text>')
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
            f'font-family="system-ui, sans-serif" font-size="12">\n<title>{escape(title)}</title>\n'
            '<rect width="100%" height="100%" fill="white"/>\n' + "\n".join(parts) + "\n</svg>\n")


def regret_svg(summary: dict[str, Any], task: str) -> str:
    """Mean regret (log scale) with its 95 % interval against the budget (log scale), one line per arm."""
    meta, by_budget = summary["tables"][task], summary["results"][task]
    k, unit = scale(meta["metric"])
    budgets = sorted((int(b) for b in by_budget), key=int)
    arms = [a for a in SHOWN if all(a in by_budget[str(b)] for b in budgets)]
    values = [k * v for b in budgets for a in arms
              for v in (by_budget[str(b)][a]["regret_mean"], *by_budget[str(b)][a]["regret_ci95"])]
    positive = [v for v in values if v > 0]
    lo, hi = (min(positive) / 1.5, max(positive) * 1.3) if positive else (0.01, 1.0)
    left, right, top, bottom = LEFT, W - RIGHT, TOP, H - BOTTOM

    def x(b: float) -> float:
        span = math.log(budgets[-1] / budgets[0]) or 1.0
        return left + 12 + (right - left - 24) * math.log(b / budgets[0]) / span

    def y(v: float) -> float:
        v = min(max(v, lo), hi)
        return top + (bottom - top) * (1 - math.log(v / lo) / math.log(hi / lo))

    body = [f'<rect x="{left}" y="{top}" width="{right - left}" height="{bottom - top}" fill="none" stroke="#ccc"/>']
    for t in _log_ticks(lo, hi):
        body.append(f'<line x1="{left}" x2="{right}" y1="{y(t):.1f}" y2="{y(t):.1f}" stroke="#eee"/>')
        body.append(f'<text x="{left - 6}" y="{y(t) + 4:.1f}" text-anchor="end" font-size="11">{t:g}</text>')
    for b in budgets:
        body.append(f'<text x="{x(b):.1f}" y="{bottom + 16}" text-anchor="middle" font-size="11">{b}×</text>')
    body.append(f'<text x="{(left + right) / 2}" y="{bottom + 36}" text-anchor="middle" font-size="11">budget, in '
                'default training runs (train tokens)</text>')
    body.append(f'<text x="14" y="{(top + bottom) / 2}" font-size="11" text-anchor="middle" '
                f'transform="rotate(-90 14 {(top + bottom) / 2})">regret ({escape(unit)}), log scale</text>')
    for i, a in enumerate(reversed(arms)):  # auto drawn last, on top
        label, colour = SHOWN[a]
        thick = a == "auto"
        shift = (len(arms) / 2 - i) * 1.6  # whiskers side by side, not over each other
        pts = []
        for b in budgets:
            c = by_budget[str(b)][a]
            m, (clo, chi) = k * c["regret_mean"], c["regret_ci95"]
            px, py = x(b) + shift, y(m)
            pts.append(f"{px:.1f},{py:.1f}")
            body.append(f'<line x1="{px:.1f}" x2="{px:.1f}" y1="{y(k * clo):.1f}" y2="{y(k * chi):.1f}" '
                        f'stroke="{colour}" stroke-opacity="0.6"/>')
            body.append(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="{3 if thick else 2.2}" fill="{colour}">'
                        f'<title>{escape(label)} at {b}×: {m:.2f} [{k * clo:.2f}, {k * chi:.2f}], '
                        f'{100 * c["budget_spent"]:.0f} % spent, {c["seeds"]} seeds</title></circle>')
        body.append(f'<polyline points="{" ".join(pts)}" fill="none" stroke="{colour}" '
                    f'stroke-width="{3 if thick else 1.4}"/>')
    seeds = min((by_budget[str(b)][a]["seeds"] for b in budgets for a in arms), default=0)  # no arm at every budget
    return _frame(f"{task}: regret against budget",
                  [f"mean over {seeds} search seeds or more, with its 95 % interval; lower is better",
                   f"table: {meta['configurations']} configurations × {meta['seeds']} recorded seeds"],
                  body, [(SHOWN[a][0], SHOWN[a][1], a == "auto") for a in arms])


def expected_best_svg(summary: dict[str, Any], task: str) -> str:
    """Dodge et al.'s expected test score of the validation-best of n random configurations trained to their
    end, n = 1..64 (log scale), with each arm's mean test score at budget B drawn at n = B (a budget of B
    default runs pays for about B configurations of the mean length: the space's lengths centre on the
    default's)."""
    meta, curve, by_budget = summary["tables"][task], summary["dodge"][task], summary["results"][task]
    budgets = sorted((int(b) for b in by_budget), key=int)
    arms = [a for a in SHOWN if all(a in by_budget[str(b)] for b in budgets)]
    best = meta.get("best_test_mean")
    values = [*curve, *([best] if best is not None else []),
              *(by_budget[str(b)][a]["test_mean"] for b in budgets for a in arms)]
    lo, hi = min(values), max(values)
    pad = (hi - lo) * 0.06 or 0.01
    lo, hi = lo - pad, hi + pad
    n_max = len(curve)
    left, right, top, bottom = LEFT, W - RIGHT, TOP, H - BOTTOM

    def x(n: float) -> float:
        return left + 12 + (right - left - 24) * math.log(n) / math.log(n_max)

    def y(v: float) -> float:
        return top + (bottom - top) * (1 - (v - lo) / (hi - lo))

    body = [f'<rect x="{left}" y="{top}" width="{right - left}" height="{bottom - top}" fill="none" stroke="#ccc"/>']
    for i in range(6):
        t = lo + (hi - lo) * i / 5
        body.append(f'<line x1="{left}" x2="{right}" y1="{y(t):.1f}" y2="{y(t):.1f}" stroke="#eee"/>')
        body.append(f'<text x="{left - 6}" y="{y(t) + 4:.1f}" text-anchor="end" font-size="11">{t:.3f}</text>')
    for n in (1, 2, 3, 5, 10, 20, 64):
        if n <= n_max:
            body.append(f'<text x="{x(n):.1f}" y="{bottom + 16}" text-anchor="middle" font-size="11">{n}</text>')
    body.append(f'<text x="{(left + right) / 2}" y="{bottom + 36}" text-anchor="middle" font-size="11">'
                'configurations trained to their end (curve) · budget in default runs (points)</text>')
    body.append(f'<text x="14" y="{(top + bottom) / 2}" font-size="11" text-anchor="middle" '
                f'transform="rotate(-90 14 {(top + bottom) / 2})">{escape(meta["metric"])}</text>')
    if best is not None:
        body.append(f'<line x1="{left}" x2="{right}" y1="{y(best):.1f}" y2="{y(best):.1f}" stroke="#000" '
                    'stroke-dasharray="5 4"/>')
        body.append(f'<text x="{right - 4}" y="{y(best) - 5:.1f}" text-anchor="end" font-size="11">'
                    f'the world\'s best configuration, {best:.3f}</text>')
    pts = " ".join(f"{x(n + 1):.1f},{y(v):.1f}" for n, v in enumerate(curve))
    body.append(f'<polyline points="{pts}" fill="none" stroke="#000" stroke-width="2"/>')
    for a in reversed(arms):
        label, colour = SHOWN[a]
        thick = a == "auto"
        pts = " ".join(f"{x(b):.1f},{y(by_budget[str(b)][a]['test_mean']):.1f}" for b in budgets if b <= n_max)
        body.append(f'<polyline points="{pts}" fill="none" stroke="{colour}" stroke-width="{2.5 if thick else 1.2}" '
                    'stroke-dasharray="2 2"/>')
        for b in budgets:
            v = by_budget[str(b)][a]["test_mean"]
            body.append(f'<circle cx="{x(b):.1f}" cy="{y(v):.1f}" r="{3 if thick else 2.2}" fill="{colour}">'
                        f'<title>{escape(label)} at {b}×: mean test {v:.4f}</title></circle>')
    return _frame(f"{task}: expected best (Dodge et al.) and what each arm selected",
                  ["curve: expected test score of the validation-best of n random configurations trained to their end",
                   "points: the mean test score of each arm's selection at a budget of B default runs"],
                  body, [("expected best of n (Dodge)", "#000", True),
                         *((SHOWN[a][0], SHOWN[a][1], a == "auto") for a in arms)])


def write_plots(summary: dict[str, Any], out: Path) -> list[Path]:
    """``{task}-regret.svg`` and ``{task}-expected-best.svg`` for every task of ``summary`` under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for task in summary.get("results", {}):
        for name, draw in (("regret", regret_svg), ("expected-best", expected_best_svg)):
            if name == "expected-best" and task not in summary.get("dodge", {}):
                continue
            path = out / f"{task}-{name}.svg"
            path.write_text(draw(summary, task))
            written.append(path)
    return written


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--summary", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    for p in write_plots(json.loads(args.summary.read_text()), args.out):
        print(p)


if __name__ == "__main__":
    main()
