"""The progress display: ETA from train tokens left at the measured speed, capped by the budgets; rich bars
per trial from the first step (its progress events) and a study bar that stays on screen."""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from lmtune.tuner.progress import LiveReporter, PlainReporter


def test_eta_is_tokens_left_over_measured_speed_and_respects_the_budgets(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    r = PlainReporter(io.StringIO())
    r.study_started("s", 0, 4, 3)
    r.study_budget(tokens_per_trial=1000.0, tokens_left=None, seconds_left=None)
    assert r.eta_s() is None  # nothing trained yet: no speed to go by
    r.trial_started(0, {}, False)
    now[0] += 10
    r.trial_advanced(0, 50, 500, 100)  # 500 tokens in 10 s: 50 tokens/s
    assert r.to_go() == pytest.approx(3 * 1000 + 500) and r.eta_s() == pytest.approx(3500 / 50)
    r.trial_finished(0, "PRUNED", None, "", None)  # ended at 500: the next trials are estimated at 500
    assert r.to_go() == pytest.approx(3 * 500)
    r.study_budget(tokens_per_trial=1000.0, tokens_left=800, seconds_left=None)
    assert r.to_go() == pytest.approx(300)  # the token cap ends the study first
    r.study_budget(tokens_per_trial=1000.0, tokens_left=None, seconds_left=15)
    assert r.eta_s() == pytest.approx(5)  # and the wall-time budget caps the ETA
    assert "ETA" in r.stream.getvalue()


def test_the_live_display_draws_bars_from_the_first_step_and_keeps_the_study_bar() -> None:
    buf = io.StringIO()
    r = LiveReporter(Console(file=buf, force_terminal=True, width=140))
    r.study_started("s", 0, 2, 3)
    r.study_budget(tokens_per_trial=1000.0, tokens_left=None, seconds_left=None)
    r.trial_started(7, {"learning_rate": 1e-3}, False)
    r.trial_advanced(7, 16, 200, 96)  # the trainer's first progress event, before any evaluation
    assert r._bars.tasks[-1].total == 96 and r._bars.tasks[-1].completed == 16
    r.trial_progress(7, 1, 3, 0.61)
    r.trial_finished(7, "COMPLETE", 0.61, "", 0.61)
    assert len(r._bars.tasks) == 1  # the trial's bar went; the study's stays
    r.close()
    out = buf.getvalue()
    assert "trial 7 COMPLETE" in out and "study 1/2 trials" in out


@pytest.mark.slow
def test_a_study_feeds_the_display_from_each_trials_first_step(tiny_model: Path, tiny_csv: Path,
                                                               tmp_path: Path) -> None:
    """The real loop and trainer: each trial's first progress event (examples of its planned total, train
    tokens) reaches the display before its first evaluation, and the study's budget figures are set."""
    from conftest import tiny_overrides
    from lmtune.config import load_config
    from lmtune.tuner.search import Tuner

    calls: list[tuple[Any, ...]] = []

    class Recording(PlainReporter):
        def study_budget(self, *, tokens_per_trial: float, tokens_left: int | None,
                         seconds_left: float | None) -> None:
            calls.append(("budget", tokens_per_trial, tokens_left, seconds_left))
            super().study_budget(tokens_per_trial=tokens_per_trial, tokens_left=tokens_left,
                                 seconds_left=seconds_left)

        def trial_advanced(self, number: int, examples: int, tokens: int, total_examples: int) -> None:
            calls.append(("advanced", number, examples, tokens, total_examples))
            super().trial_advanced(number, examples, tokens, total_examples)

        def trial_progress(self, number: int, units: int, max_units: int, value: float | None) -> None:
            calls.append(("eval", number, units))
            super().trial_progress(number, units, max_units, value)

    cfg = load_config(str(Path(__file__).parents[2] / "examples" / "quickstart.yaml"),
                      [*tiny_overrides(tiny_model, tiny_csv, tmp_path / "run"), "search.strategy=random",
                       "budget.max_train_tokens=100000"])
    reporter = Recording(io.StringIO())
    summary = Tuner(cfg, n_trials=2, reporter=reporter).run()
    assert [t.state.name for t in summary.study.trials] == ["COMPLETE", "COMPLETE"]
    budget = [c for c in calls if c[0] == "budget"]
    assert budget and budget[0][1] > 0 and budget[0][2] == 100_000  # tokens per trial, the token cap left
    for number in (0, 1):
        mine = [c for c in calls if c[0] != "budget" and c[1] == number]
        first = mine[0]
        assert first[0] == "advanced", mine  # before its first evaluation
        batch = summary.study.trials[number].user_attrs["config"]["batch_size"]
        assert first[2] == batch and first[3] > 0 and first[4] == 6 * 16  # one step of its planned examples
    assert reporter.eta_s() is not None and "ETA" in reporter.stream.getvalue()
