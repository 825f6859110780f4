"""PBT under a budget (docs/configuration.md, ``budget``): it does not plan its members from the budget. A fresh
population that cannot reach its end within ``max_train_tokens`` is refused before anything trains, naming the
population that fits; a cap reached mid-run stops it resuming members, which stay paused for a later run."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import run_lmtune, set_args, tiny_overrides
from lmtune.config import load_config
from lmtune.errors import ConfigError
from lmtune.execution.simulated import SimulatedExecutor
from lmtune.study import record
from lmtune.tuner import Tuner

QUICKSTART = str(Path(__file__).parents[2] / "examples" / "quickstart.yaml")


def _base(tiny_model: Path, tiny_csv: Path, d: Path) -> list[str]:
    return [*tiny_overrides(tiny_model, tiny_csv, d), "search.strategy=pbt", "search.pbt.population_size=4",
            "training.max_steps=12", "execution.workers=1"]


@pytest.mark.slow
def test_a_population_the_token_cap_cannot_finish_is_refused_before_training(tiny_model: Path, tiny_csv: Path,
                                                                            tmp_path: Path) -> None:
    base = _base(tiny_model, tiny_csv, tmp_path / "free")
    free = Tuner(load_config(QUICKSTART, base), backend=SimulatedExecutor(workers=1)).run()
    whole = sum(r.train_tokens or 0 for r in record.records(free.study.trials))  # 4 members to their end
    assert [r.state for r in record.records(free.study.trials)] == ["COMPLETE"] * 4
    cap = f"budget.max_train_tokens={int(whole * 0.6)}"
    capped = [*base, f"study.dir={tmp_path / 'capped'}", cap]
    with pytest.raises(ConfigError, match=r"population_size to 2 or fewer"):
        Tuner(load_config(QUICKSTART, capped), backend=SimulatedExecutor(workers=1)).run()
    assert not (tmp_path / "capped" / "trials").exists() or not any((tmp_path / "capped" / "trials").iterdir())
    # from the command line: one clear error, exit 2, no traceback
    out = run_lmtune("tune", QUICKSTART, *set_args([*base, f"study.dir={tmp_path / 'cli'}", cap]))
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-800:]
    assert "PBT does not plan its members from the budget" in out.stderr + out.stdout
    # two members fit: it runs, and both reach their end
    fits = [*base, f"study.dir={tmp_path / 'two'}", "search.pbt.population_size=2", cap]
    two = Tuner(load_config(QUICKSTART, fits), backend=SimulatedExecutor(workers=1)).run()
    assert [r.state for r in record.records(two.study.trials)] == ["COMPLETE"] * 2


def test_a_cap_reached_mid_run_stops_pbt_resuming_members_and_a_later_run_resumes_them(
        tiny_model: Path, tiny_csv: Path, tmp_path: Path) -> None:
    """A cost cap (device-seconds here: it cannot be checked before the speed is known) reached mid-run: the
    members short of their end are not resumed. A later run without
    the cap resumes every member from its checkpoint and finishes the population."""
    d = tmp_path / "s"
    base = _base(tiny_model, tiny_csv, d)
    capped = Tuner(load_config(QUICKSTART, [*base, "budget.max_cost=1.0", "budget.prices={cpu: 3600}",
                                                        "execution.device=cpu"]),
                   backend=SimulatedExecutor(workers=1, unit_s=0.2)).run()  # a member: 4 units of 0.2 s
    recs = record.records(capped.study.trials)
    assert capped.stop_reason.startswith("budget: max_cost"), capped.stop_reason
    assert len(recs) == 4 and "RUNNING" in {r.state for r in recs}  # paused short of their end, not resumed
    again = Tuner(load_config(QUICKSTART, base), backend=SimulatedExecutor(workers=1)).run()
    assert [r.state for r in record.records(again.study.trials)] == ["COMPLETE"] * 4
