"""How many seeds would settle a "within seed noise" verdict (issue 35, item 4): the power computation, the
advice and its command, and that `lmtune final --seeds N` keeps the runs it already has."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import stats

from lmtune.report.stats import MAX_SEEDS, seeds_for_power, welch_power
from lmtune.report.tables import comparison_table, seeds_advice
from lmtune.tuner.final_plan import Choice, kept_runs, plan_jobs, todo


@pytest.mark.parametrize(("d", "n"), [(0.5, 64), (0.8, 26), (1.0, 17), (2.0, 6)])
def test_equal_spreads_give_the_textbook_two_sample_t_test_sizes(d: float, n: int) -> None:
    """Cohen (1988), two-sided alpha 0.05, power 0.8: 64, 26, 17 per group for d = 0.5, 0.8, 1.0."""
    assert seeds_for_power(d, 1.0, 1.0) == n
    assert welch_power(d, 1.0, 1.0, n) >= 0.8 > welch_power(d, 1.0, 1.0, n - 1)


def test_the_planned_seeds_detect_the_difference_four_times_in_five() -> None:
    """Simulated: draw N seeds per side from normals with the observed means and spreads; Welch's test at
    p < 0.05 rejects in about 80 % of 4,000 repeats (binomial sd 0.6 %)."""
    diff, sd_a, sd_b = 0.026, 0.015, 0.025
    n = seeds_for_power(diff, sd_a, sd_b)
    assert n is not None and 5 < n < 30
    rng = np.random.default_rng(0)
    a = rng.normal(0.80, sd_a, size=(4000, n))
    b = rng.normal(0.80 + diff, sd_b, size=(4000, n))
    detected = float(np.mean(stats.ttest_ind(a, b, axis=1, equal_var=False).pvalue < 0.05))
    assert 0.78 <= detected <= 0.84
    fewer = float(np.mean(stats.ttest_ind(a[:, :n - 2], b[:, :n - 2], axis=1, equal_var=False).pvalue < 0.05))
    assert fewer < 0.78


def test_no_difference_or_a_hopeless_one_gives_no_number() -> None:
    assert seeds_for_power(0.0, 0.01, 0.01) is None
    assert seeds_for_power(1e-6, 0.05, 0.05) is None  # would need more than MAX_SEEDS
    assert MAX_SEEDS == 1000
    assert seeds_for_power(0.01, 0.0, 0.0) == 2  # no spread at all: any difference shows


def _final(default: list[float], best: list[float]) -> dict[str, Any]:
    runs = [{"which": w, "seed": i, "metrics": {"test_accuracy": v}}
            for w, values in (("default", default), ("best", best)) for i, v in enumerate(values)]
    return {"metric_names": ["test_accuracy"], "runs": runs}


def test_within_seed_noise_says_how_many_seeds_and_the_command() -> None:
    # the case: +0.0260 at 2 seeds, within seed noise
    rows = comparison_table(_final([0.800, 0.812], [0.822, 0.842]))
    row = rows[0]
    assert row.verdict.startswith("within seed noise") and f"{row.difference:+.4f}" == "+0.0260"
    assert row.seeds_needed == seeds_for_power(row.difference, row.default_std, row.best_std)
    assert row.seeds_needed is not None and row.seeds_needed > 2
    text = seeds_advice(rows, "runs/sst2")
    assert text is not None
    assert f"about {row.seeds_needed} seeds per side" in text and "80% power" in text and "p < 0.05" in text
    assert f"`lmtune final runs/sst2 --seeds {row.seeds_needed}`" in text and "finished runs are kept" in text
    assert "2 per side now" in text


def test_a_settled_verdict_gives_no_advice() -> None:
    significant = comparison_table(_final([0.80, 0.81, 0.80], [0.86, 0.87, 0.86]))
    assert significant[0].verdict.startswith("better, significant") and significant[0].seeds_needed is None
    assert seeds_advice(significant, "s") is None
    one_seed = comparison_table(_final([0.80], [0.86]))
    assert one_seed[0].seeds_needed is None and seeds_advice(one_seed, "s") is None


def test_final_with_more_seeds_keeps_the_finished_runs() -> None:
    """`lmtune final STUDY --seeds 5` after `--seeds 2`: seeds 0 and 1 are reused, only 2..4 train."""
    default = Choice("default", {"learning_rate": 5e-5}, None, 0)
    best = Choice("best", {"learning_rate": 3e-4}, None, 4)
    done = [{"which": c.which, "seed": s, "config": {**c.hparams, "seed": s}, "metrics": {"test_accuracy": 0.8}}
            for s in (0, 1) for c in (default, best)]
    jobs = plan_jobs(default, best, 5)
    left = todo(jobs, kept_runs(done, [default, best]), model_exported=True)
    assert [j.key for j in left] == [f"{w}-seed{s}" for s in (2, 3, 4) for w in ("default", "best")]


def test_final_prints_the_advice(tmp_path: Path) -> None:
    from io import StringIO

    from rich.console import Console

    from lmtune.cli.final_views import print_final

    buf = StringIO()
    print_final(Console(file=buf, width=200), _final([0.800, 0.812], [0.822, 0.842]), [], metric="eval_accuracy",
                direction="maximize", study_dir=tmp_path)
    assert f"lmtune final {tmp_path} --seeds" in buf.getvalue() and "`" not in buf.getvalue()
