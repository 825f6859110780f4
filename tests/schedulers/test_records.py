"""One record for one run, whichever scheduler ran it: the default-settings run by the search, by PBT (member 0
starts from the default), by the final runs and by `lmtune train` is recorded through
`lmtune.study.record.ended` by all four, so its records hold the same fields, and the same values for
everything the run itself decides."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from conftest import tiny_overrides
from lmtune.config import StudyConfig, load_config
from lmtune.execution.simulated import SimulatedExecutor
from lmtune.protocol import End, Ending, Error, Outcome, read_event
from lmtune.study import record
from lmtune.study.record import TrialRecord
from lmtune.tuner.final import FinalRunner
from lmtune.tuner.search import Tuner
from lmtune.tuner.train_one import RESULT_FILE, train_one

QUICKSTART = str(Path(__file__).parents[2] / "examples" / "quickstart.yaml")
ONLY = {"search": set(), "pbt": {"pbt"}}  # what only one scheduler records
TIMES = {"wall_time_s", "overhead_s", "startup_s"}  # measured: present in both, values differ


def _cfg(strategy: str, tiny_model: Path, tiny_csv: Path, d: Path) -> StudyConfig:
    extra = ["search.pbt.population_size=2", "search.pbt.ready_every=12"] if strategy == "pbt" else []
    return load_config(QUICKSTART, [*tiny_overrides(tiny_model, tiny_csv, d), "training.max_steps=12",
                                    "execution.workers=2", f"search.strategy={strategy}", *extra])


def _default_trial(strategy: str, tiny_model: Path, tiny_csv: Path, d: Path) -> TrialRecord:
    cfg = _cfg(strategy, tiny_model, tiny_csv, d)
    summary = Tuner(cfg, n_trials=2, backend=SimulatedExecutor(workers=2)).run()
    trials = [r for r in record.records(summary.study.trials) if r.is_default or (r.pbt or {}).get("member") == 0]
    assert len(trials) == 1 and trials[0].state == "COMPLETE"
    return trials[0]


def _recorded(r: TrialRecord) -> dict[str, Any]:
    return {k: getattr(r, k) for k in record.ATTRS if getattr(r, k) not in (None, [], {}, False)}


def test_the_same_run_is_recorded_alike_by_the_search_and_by_pbt(tiny_model: Path, tiny_csv: Path,
                                                                 tmp_path: Path) -> None:
    search = _recorded(_default_trial("random", tiny_model, tiny_csv, tmp_path / "search"))
    pbt = _recorded(_default_trial("pbt", tiny_model, tiny_csv, tmp_path / "pbt"))
    assert set(search) - ONLY["search"] == set(pbt) - ONLY["pbt"], (sorted(search), sorted(pbt))
    assert set(search) >= TIMES
    for key in sorted(set(search) - TIMES - {"trial_dir", "pbt", "is_default"}):
        assert search[key] == pbt[key], key


# what the run itself decides, and so every scheduler's record of it must agree on
RUN_DECIDES = ("train_tokens", "precision", "precision_reason", "forward", "stopped_by")


def test_the_same_run_is_recorded_alike_by_the_final_runs_and_lmtune_train(tiny_model: Path, tiny_csv: Path,
                                                                             tmp_path: Path) -> None:
    search = _recorded(_default_trial("random", tiny_model, tiny_csv, tmp_path / "study"))
    final = FinalRunner(tmp_path / "study", seeds=1, log=lambda _m: None, backend=SimulatedExecutor(workers=1)).run()
    run = next(r for r in final.results["runs"] if r["which"] == "default")
    one = train_one(_cfg("random", tiny_model, tiny_csv, tmp_path / "study"), out=tmp_path / "train",
                    backend=SimulatedExecutor(workers=1), log=lambda _m: None)
    kept = json.loads((tmp_path / "train" / RESULT_FILE).read_text())
    assert search["precision"] == "fp32"  # the stand-in trainer says so in its start event only
    for name, rec in (("final", run), ("train", kept)):
        assert {k: rec.get(k) for k in RUN_DECIDES} == {k: search.get(k) for k in RUN_DECIDES}, name
        assert rec["wall_time_s"] > 0 and rec["overhead_s"] is not None, name
    assert one.train_tokens == search["train_tokens"]


@pytest.mark.parametrize(("end", "error", "budget", "state"), [
    ({"metrics": {"eval_loss": 0.5}, "train_tokens": 10, "train_time_s": 2.0, "eval_time_s": 1.0}, None, "",
     "COMPLETE"),
    ({"metrics": {"eval_loss": 0.5}, "stopped_by": "pruned", "units": 2}, None, "", "PRUNED"),
    ({"metrics": {"eval_loss": 0.5}, "stopped_by": "pruned", "units": 2}, None, "budget: spent", "PRUNED"),
    ({"metrics": {"eval_loss": 0.5}, "stopped_by": "paused", "units": 2}, None, "", "PAUSED"),
    ({"metrics": {"eval_loss": 0.5}, "stopped_by": "early_stopping"}, None, "", "COMPLETE"),
    ({"metrics": {"eval_accuracy": 0.5}}, None, "", "FAIL"),
    (None, {"kind": "oom", "reason": "out of memory"}, "", "FAIL"),
    (None, None, "", "FAIL"),
])
def test_every_ending_maps_to_one_state_and_its_fields(end: dict[str, Any] | None, error: dict[str, Any] | None,
                                                        budget: str, state: str) -> None:
    curve = [{"units": 1, "tokens": 7, "metrics": {"eval_loss": 0.6}}]
    typed_end = read_event({"event": "end", **end}) if end is not None else None
    typed_error = read_event({"event": "error", **error}) if error is not None else None
    assert isinstance(typed_end, End | None) and isinstance(typed_error, Error | None)
    e = record.ended(Outcome(curve=curve, end=typed_end, error=typed_error, code=0 if end else 1, log_path="log"),
                     metric="eval_loss", wall_s=5.0, stopped_for_budget=budget)
    assert e.state == state
    assert e.value == (0.5 if state == "COMPLETE" else None)
    assert e.fields["curve"] == curve and e.fields["wall_time_s"] == 5.0
    assert e.fields["train_tokens"] == (10 if end and "train_tokens" in end else 7)
    if budget:  # a stop the budget decided is recorded as such, with its reason, not as pruned
        assert e.ending is Ending.BUDGET and e.fields["stopped_by"] == "budget" and e.fields["stop_reason"] == budget
    elif end is not None:
        assert e.fields["stopped_by"] == end.get("stopped_by")
        assert e.fields["overhead_s"] == (2.0 if "train_time_s" in end else 5.0)
    assert ("fail_reason" in e.fields) == (state == "FAIL") and bool(e.reason) == (state == "FAIL" or bool(budget))
    assert ("pruned_at_units" in e.fields) == (state == "PRUNED")
    if state == "FAIL" and end is not None:
        assert "metric 'eval_loss' was None; reported metrics: ['eval_accuracy']" in e.reason
    record.write(_Sink(), **e.fields)  # every field is a TrialRecord field


class _Sink:
    def set_user_attr(self, key: str, value: Any) -> None:
        pass
