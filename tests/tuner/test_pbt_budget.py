"""PBT under a token cap (docs/configuration.md, ``budget``): it does not plan from the budget; once the cap is
reached it resumes no member, so members short of their end stay paused, for a later run to resume."""

from __future__ import annotations

from pathlib import Path

from conftest import tiny_overrides
from lmtune.config import load_config
from lmtune.execution.simulated import SimulatedExecutor
from lmtune.study import record
from lmtune.tuner import Tuner

QUICKSTART = str(Path(__file__).parents[2] / "examples" / "quickstart.yaml")


def test_a_token_cap_stops_pbt_resuming_members_and_leaves_the_rest_paused(tiny_model: Path, tiny_csv: Path,
                                                                           tmp_path: Path) -> None:
    base = [*tiny_overrides(tiny_model, tiny_csv, tmp_path / "free"), "search.strategy=pbt",
            "search.pbt.population_size=4", "training.max_steps=12", "execution.workers=1"]
    free = Tuner(load_config(QUICKSTART, base), backend=SimulatedExecutor(workers=1)).run()
    whole = sum(r.train_tokens or 0 for r in record.records(free.study.trials))  # 4 members to their end
    assert [r.state for r in record.records(free.study.trials)] == ["COMPLETE"] * 4
    capped = Tuner(load_config(QUICKSTART, [*base, f"study.dir={tmp_path / 'capped'}",
                                            f"budget.max_train_tokens={whole // 2}"]),
                   backend=SimulatedExecutor(workers=1)).run()
    recs = record.records(capped.study.trials)
    assert capped.stop_reason.startswith("budget: max_train_tokens")
    # members take turns on the one worker: at half the tokens none has reached its end, and none is resumed
    assert [r.state for r in recs] == ["RUNNING"] * 4
    spent = sum(r.train_tokens or 0 for r in recs)
    assert whole // 2 <= spent < whole  # the cap stopped it; the member running then went on to its ready point
    # a later run without the cap resumes every member from its checkpoint and finishes the population
    again = Tuner(load_config(QUICKSTART, [*base, f"study.dir={tmp_path / 'capped'}"]),
                  backend=SimulatedExecutor(workers=1)).run()
    assert [r.state for r in record.records(again.study.trials)] == ["COMPLETE"] * 4
