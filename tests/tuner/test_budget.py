"""`budget.max_train_tokens` is a cap: no trial starts, and the running one stops, when the next
evaluation interval would cross it."""

from __future__ import annotations

from pathlib import Path

import optuna

from conftest import run_lmtune, set_args, tiny_overrides

ROOT = Path(__file__).parents[2]
QUICKSTART = str(ROOT / "examples" / "quickstart.yaml")


def test_the_token_budget_stops_the_trial_that_reaches_it(tiny_model: Path, tiny_csv: Path, tmp_path: Path) -> None:
    d = tmp_path / "cap"
    # 6 steps of 16 rows per trial, an evaluation every 3 steps; first learn one whole trial's tokens
    # (a space without batch_size: every trial evaluates at 3 and 6 steps of 16 rows)
    first = run_lmtune("tune", QUICKSTART, *set_args(tiny_overrides(tiny_model, tiny_csv, d)), "--n-trials", "1")
    assert first.returncode == 0, first.stderr
    study = optuna.load_study(study_name=None, storage=f"sqlite:///{d / 'study.db'}")
    per_trial = study.trials[0].user_attrs["train_tokens"]
    # the third trial (launched at 2.0 + 0.5 <= 2.6 trials) would cross the cap in its second half:
    # it stops at its first evaluation (half-way), so the study ends at 2.5 trials, under the cap
    cap = int(2.6 * per_trial)
    over = [*tiny_overrides(tiny_model, tiny_csv, d), "search.strategy=random",
            "search.space={weight_decay: {type: float, low: 0.0, high: 0.1}}", f"budget.max_train_tokens={cap}"]
    out = run_lmtune("tune", QUICKSTART, *set_args(over), "--n-trials", "6")
    assert out.returncode == 0, out.stderr
    trials = optuna.load_study(study_name=None, storage=f"sqlite:///{d / 'study.db'}").trials
    spent = sum(t.user_attrs.get("train_tokens", 0) for t in trials)
    assert len(trials) == 3, [(t.number, t.state.name) for t in trials]  # nothing launched after the cap
    assert [t.state.name for t in trials[:2]] == ["COMPLETE", "COMPLETE"]
    last = trials[2]
    assert last.state.name == "PRUNED" and last.user_attrs["stopped_by"] == "budget"
    assert "max_train_tokens" in last.user_attrs["stop_reason"]
    assert spent <= cap and spent == 2 * per_trial + last.user_attrs["train_tokens"]
    assert last.user_attrs["curve"][-1]["examples"] == 48  # half of its 96 examples
