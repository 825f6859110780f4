"""One contract every Scheduler passes when the one trial loop (``tuner/drive.py``) drives it: the search
(Optuna sampler + pruner: random, ASHA, grid, under a token cap), PBT and the final runs. Each runs
in-process on the simulated backend (trainers in threads, no subprocess), wrapped in a checker that
records every call the loop makes and what the scheduler answers:

- ``stop_reason``, ``suggest``, ``started``, ``waiting_on_others`` and ``abandon`` come from the loop's
  thread; ``on_eval``, ``on_event``, ``on_end`` and ``on_crash`` from the trial's own thread;
- a stop reason, once given, is given again; no trial starts after it;
- keys are unique among running trials (PBT starts a member's key again after it paused); never more
  trials run than the backend has slots;
- every evaluation is answered with a Decision while its trial runs, and every start ends exactly once
  (``on_end``), after which nothing more is heard about that run;
- ``removable_checkpoints`` names only checkpoints some trial reported, each once, and never one a later
  exploit or resume uses.

The end state of each study is checked too (every trial finished, none left RUNNING)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Hashable, Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from conftest import interrupting_executor, tiny_overrides
from lmtune.config import load_config
from lmtune.execution.simulated import SimulatedExecutor
from lmtune.protocol import (
    Continue,
    Decision,
    End,
    Error,
    Eval,
    Event,
    Exploit,
    Note,
    OomRetry,
    Outcome,
    Pause,
    Progress,
    Start,
    Stop,
)
from lmtune.schedulers import Launch, Scheduler
from lmtune.schedulers.pbt import PBTRunner
from lmtune.schedulers.search import SearchScheduler
from lmtune.study import INTERRUPTED, record
from lmtune.tuner import drive as drive_module
from lmtune.tuner.budget import StopKind
from lmtune.tuner.final import FinalRunner
from lmtune.tuner.search import Tuner

ROOT = Path(__file__).parents[2]
QUICKSTART = str(ROOT / "examples" / "quickstart.yaml")
DECISIONS = (Continue, Stop, Pause, Exploit)


class Checked:
    """A scheduler seen through the loop's contract; violations are collected (a trial thread's assert
    would only become that trial's crash)."""

    def __init__(self, inner: Scheduler, workers: int) -> None:
        self.inner, self.workers = inner, workers
        self.poll_s = inner.poll_s
        self.loop_thread = threading.get_ident()
        self.lock = threading.RLock()
        self.live: set[Hashable] = set()
        self.starts: Counter[Hashable] = Counter()
        self.ended: Counter[Hashable] = Counter()
        self.started_keys: list[Hashable] = []
        self.evals = 0
        self.reported: set[str] = set()
        self.removed: set[str] = set()
        self.stopped = ""
        self.errors: list[str] = []
        self.used: list[Any] = []

    def _check(self, ok: bool, what: str) -> None:
        if not ok:
            with self.lock:
                self.errors.append(what)

    def _on_loop(self, call: str) -> None:
        self._check(threading.get_ident() == self.loop_thread, f"{call} called off the loop's thread")

    def _off_loop(self, call: str) -> None:
        self._check(threading.get_ident() != self.loop_thread, f"{call} called on the loop's thread")

    def use(self, checkpoints: Any) -> None:
        self._on_loop("use")
        self._check(not self.used and not self.starts, "use called twice, or after a trial started")
        self.used.append(checkpoints)
        self.inner.use(checkpoints)

    def stop_reason(self) -> str:
        self._on_loop("stop_reason")
        self._check(bool(self.used), "stop_reason before use")
        reason = self.inner.stop_reason()
        self._check(not self.stopped or reason == self.stopped, f"stop reason {self.stopped!r} not sticky: {reason!r}")
        self.stopped = self.stopped or reason
        return reason

    def suggest(self, device: str, threads: int) -> Launch | None:
        self._on_loop("suggest")
        self._check(not self.stopped, f"suggest called after stop {self.stopped!r}")
        launch = self.inner.suggest(device, threads)
        if launch is not None:
            with self.lock:
                self._check(launch.key not in self.live, f"key {launch.key!r} suggested while running")
                self._check(len(self.live) < self.workers, "more trials than slots")
                resume = launch.spec.resume_from
                self._check(resume is None or resume not in self.removed, f"resumed from removed {resume}")
        return launch

    def started(self, key: Hashable, handle: Any) -> None:
        self._on_loop("started")
        with self.lock:
            self.live.add(key)
            self.starts[key] += 1
            self.started_keys.append(key)
        self.inner.started(key, handle)

    def on_eval(self, key: Hashable, ev: Eval, curve: list[dict[str, Any]]) -> Decision:
        self._off_loop("on_eval")
        self._check(isinstance(ev, Eval), f"on_eval got {ev!r}, not a typed Eval")
        with self.lock:
            self._check(key in self.live, f"on_eval for {key!r}, not running")
            self.evals += 1
        self._check(bool(curve) and curve[-1] == ev.point(), "curve does not hold the evaluation")
        if ev.checkpoint:
            with self.lock:
                self.reported.add(ev.checkpoint)
        decision = self.inner.on_eval(key, ev, curve)
        self._check(isinstance(decision, DECISIONS), f"answered {decision!r}, not a Decision")
        if isinstance(decision, Exploit):
            self._check(decision.checkpoint not in self.removed, f"exploit of removed {decision.checkpoint}")
            self._check(bool(decision.checkpoint) and decision.checkpoint in self.reported,
                        f"exploit of {decision.source}, resolved to {decision.checkpoint!r}: never reported")
        return decision

    def removable_checkpoints(self) -> list[Path]:
        self._off_loop("removable_checkpoints")
        gone = self.inner.removable_checkpoints()
        with self.lock:
            for p in gone:
                self._check(str(p) in self.reported, f"removable {p} was never reported")
                self._check(str(p) not in self.removed, f"removable {p} named twice")
                self.removed.add(str(p))
        return gone

    def on_event(self, key: Hashable, ev: Event) -> None:
        self._off_loop("on_event")
        self._check(isinstance(ev, Start | Progress | OomRetry | Note), f"on_event got {ev!r}")
        self.inner.on_event(key, ev)

    def on_end(self, key: Hashable, outcome: Outcome) -> None:
        self._off_loop("on_end")
        self._check(isinstance(outcome.end, End | None) and isinstance(outcome.error, Error | None),
                    f"an untyped ending: {outcome.end!r} {outcome.error!r}")
        with self.lock:
            self._check(key in self.live, f"{key!r} ended but was not running")
            self.ended[key] += 1
            self.live.discard(key)
        self.inner.on_end(key, outcome)

    def on_crash(self, key: Hashable, exc: Exception) -> None:
        self.errors.append(f"{key!r} crashed: {exc!r}")  # none of these schedulers should crash here
        self.inner.on_crash(key, exc)

    def waiting_on_others(self) -> bool:
        self._on_loop("waiting_on_others")
        return self.inner.waiting_on_others()

    def abandon(self, keys: list[Hashable]) -> None:
        self._on_loop("abandon")
        self.inner.abandon(keys)

    def assert_kept(self) -> None:
        assert not self.errors, self.errors
        assert self.started_keys and not self.live, (self.started_keys, self.live)
        assert self.ended == self.starts  # every start ended exactly once


@pytest.fixture
def checked(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Checked]]:
    """Every scheduler driven while the test runs, wrapped in a checker."""
    seen: list[Checked] = []
    real = drive_module.drive

    def checking_drive(scheduler: Scheduler, executor: Any) -> str:
        seen.append(Checked(scheduler, executor.workers))
        return real(seen[-1], executor)

    for module in ("lmtune.tuner.search", "lmtune.tuner.final"):
        monkeypatch.setattr(f"{module}.drive", checking_drive)
    yield seen


def _cfg(tiny_model: Path, tiny_csv: Path, d: Path, *extra: str) -> Any:
    return load_config(QUICKSTART, [*tiny_overrides(tiny_model, tiny_csv, d), "training.max_steps=12",
                                    "execution.workers=2", *extra])


SEARCHES: dict[str, tuple[str, ...]] = {
    "random": ("search.strategy=random",),
    "asha": ("search.strategy=asha", "search.min_units=1"),
    "grid": ("search.strategy=grid", "search.space={learning_rate: [1e-4, 1e-3, 1e-2]}"),
    # a trial here trains ~2,000 tokens (192 examples of the tiny data's real tokens): two run side by side, a
    # third cannot finish and never starts
    "token-cap": ("search.strategy=random", "budget.max_train_tokens=5000"),
}


@pytest.mark.parametrize("name", sorted(SEARCHES))
def test_the_search_keeps_the_contract(name: str, checked: list[Checked], tiny_model: Path, tiny_csv: Path,
                                       tmp_path: Path) -> None:
    cfg = _cfg(tiny_model, tiny_csv, tmp_path / name, *SEARCHES[name])
    summary = Tuner(cfg, n_trials=5, backend=SimulatedExecutor(workers=2)).run()
    checked[0].assert_kept()
    states = [t.state for t in summary.study.trials]
    assert TrialState.RUNNING not in states and TrialState.WAITING not in states
    done = [s for s in states if s in (TrialState.COMPLETE, TrialState.PRUNED)]
    if name == "grid":
        assert len(done) == 3 and summary.stop_reason == "n_trials reached"  # the 3 points (the default among them)
    elif name == "token-cap":
        assert summary.stop_reason.startswith("budget: max_train_tokens") and len(done) < 5
    else:
        assert len(done) == 5 and summary.stop_reason == "n_trials reached"
    assert summary.stop_kind is (StopKind.BUDGET if name == "token-cap" else StopKind.FINISHED)


def test_pbt_keeps_the_contract(checked: list[Checked], tiny_model: Path, tiny_csv: Path, tmp_path: Path) -> None:
    cfg = _cfg(tiny_model, tiny_csv, tmp_path / "pbt", "search.strategy=pbt", "search.pbt.population_size=3",
               "search.pbt.ready_every=3")
    summary = Tuner(cfg, backend=SimulatedExecutor(workers=2)).run()
    checked[0].assert_kept()
    assert summary.stop_reason == "population finished" and summary.stop_kind is StopKind.FINISHED
    assert [t.state for t in summary.study.trials] == [TrialState.COMPLETE] * 3
    # 3 members on 2 slots: someone paused for a slot and was resumed, so a key started more than once
    assert len(checked[0].started_keys) > 3
    # retention: the loop had the backend delete what PBT gave up; the rest is still on disk
    removed, reported = checked[0].removed, checked[0].reported
    assert removed and not any(Path(p).exists() for p in removed)
    kept = {str(p) for p in (tmp_path / "pbt").rglob("u?????")}
    assert kept and kept <= reported - removed


def test_halving_keeps_the_contract(checked: list[Checked], tiny_model: Path, tiny_csv: Path,
                                   tmp_path: Path) -> None:
    """Synchronous successive halving on 2 slots: configurations pause at each rung and the best are started again
    under the same key; the checkpoints no configuration resumes from are given up and deleted."""
    cfg = _cfg(tiny_model, tiny_csv, tmp_path / "halving", "search.strategy=halving", "training.eval_every=2",
               "search.min_units=1")
    summary = Tuner(cfg, n_trials=4, backend=SimulatedExecutor(workers=2)).run()
    checked[0].assert_kept()
    assert summary.stop_reason == "successive halving finished" and summary.stop_kind is StopKind.FINISHED
    states = [t.state for t in summary.study.trials]
    assert states.count(TrialState.COMPLETE) == 1 and states.count(TrialState.PRUNED) == 3, states
    assert len(checked[0].started_keys) > 4  # promoted configurations were started again
    removed, reported = checked[0].removed, checked[0].reported
    assert removed and not any(Path(p).exists() for p in removed)
    assert {str(p) for p in (tmp_path / "halving").rglob("u?????")} <= reported - removed


def test_pbt_changes_in_place_only_what_a_running_trainer_can(checked: list[Checked], tiny_model: Path,
                                                              tiny_csv: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """An exploit that changes dropout (built into the model) is answered with a pause, so the member starts
    again from the donor's checkpoint with the new model; one that changes only optimizer settings is
    done in place."""
    answered: list[tuple[dict[str, Any], dict[str, Any], Decision]] = []
    real = PBTRunner._on_eval

    def spy(self: PBTRunner, member: Any, ev: dict[str, Any]) -> Decision:
        before = dict(self.pbt.member_state(member.member).config)
        decision = real(self, member, ev)
        answered.append((before, dict(self.pbt.member_state(member.member).config), decision))
        return decision

    monkeypatch.setattr(PBTRunner, "_on_eval", spy)
    space = ("search.space={learning_rate: {type: float, low: 1.0e-5, high: 1.0e-2, log: true}, "
             "dropout: {type: float, low: 0.0, high: 0.3}}")
    cfg = _cfg(tiny_model, tiny_csv, tmp_path / "pbt-dropout", "search.strategy=pbt", space,
               "search.pbt.population_size=4", "search.pbt.ready_every=2", "search.pbt.quantile=0.5",
               "search.pbt.resample_probability=0.5")
    Tuner(cfg, backend=SimulatedExecutor(workers=4)).run()  # a slot each: only a dropout change pauses
    checked[0].assert_kept()
    moved = [(b, a, d) for b, a, d in answered if a != b]
    assert moved, "no member explored"
    for before, after, decision in moved:
        changed = {k for k in {*before, *after} if before.get(k) != after.get(k)}
        assert isinstance(decision, Pause if "dropout" in changed else (Exploit, Pause)), (changed, decision)
    assert any(isinstance(d, Pause) for b, a, d in moved if a.get("dropout") != b.get("dropout"))
def test_final_replays_a_schedule_that_changes_dropout_as_a_chain_of_runs(checked: list[Checked], tiny_model: Path,
                                                                          tiny_csv: Path, tmp_path: Path) -> None:
    d = tmp_path / "pbt-final"
    Tuner(_cfg(tiny_model, tiny_csv, d, "search.strategy=random"), n_trials=1, backend=SimulatedExecutor()).run()
    study = optuna.load_study(study_name=None, storage=f"sqlite:///{d / 'study.db'}")
    steps = [{"units": 0, "config": {"learning_rate": 1e-3, "dropout": 0.1}},
             {"units": 2, "config": {"learning_rate": 1e-3, "dropout": 0.25}},
             {"units": 3, "config": {"learning_rate": 5e-4, "dropout": 0.25}}]
    config = {**study.trials[0].user_attrs["config"], "learning_rate": 1e-3, "dropout": 0.1}
    study.add_trial(optuna.trial.create_trial(  # a PBT member that won, as the PBT runner records one
        state=TrialState.COMPLETE, value=2.0, params={"learning_rate": 1e-3},
        distributions={"learning_rate": optuna.distributions.FloatDistribution(1e-6, 1.0, log=True)},
        user_attrs={"config": config, "pbt": {"member": 1, "generation": 2, "parent_trial": 0, "schedule": steps}}))
    summary = FinalRunner(d, seeds=1, log=lambda _m: None, backend=SimulatedExecutor(workers=1)).run()
    checked[1].assert_kept()
    assert not summary.failed, summary.failed
    assert summary.best.source_trial == 1 and summary.best.schedule is not None
    assert checked[1].started_keys.count("best-seed0") == 3  # one run per schedule entry
    assert checked[1].started_keys.count("default-seed0") == 1
    saved = {p.name for p in (d / "final" / "runs" / "best-seed0" / "checkpoints").iterdir()}
    assert {"u00002", "u00003"} <= saved  # the boundaries the next runs went on from (every gcd(2, 3) = 1 unit)
    best = next(r for r in summary.results["runs"] if r["which"] == "best")
    assert [e["units"] for e in best["schedule"]] == [0, 2, 3] and best["metrics"]


def test_the_final_runs_keep_the_contract(checked: list[Checked], tiny_model: Path, tiny_csv: Path,
                                          tmp_path: Path) -> None:
    d = tmp_path / "final"
    Tuner(_cfg(tiny_model, tiny_csv, d, "search.strategy=random"), n_trials=3,
          backend=SimulatedExecutor(workers=2)).run()
    summary = FinalRunner(d, seeds=2, log=lambda _m: None, backend=SimulatedExecutor(workers=2)).run()
    checked[1].assert_kept()
    assert summary.failed == [] and sorted(summary.ran) == ["best-seed0", "best-seed1", "default-seed0",
                                                            "default-seed1"]
    assert {r["which"] for r in summary.results["runs"]} == {"default", "best"}


def test_an_interrupted_search_fails_and_requeues_what_ran(checked: list[Checked], tiny_model: Path,
                                                           tiny_csv: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = _cfg(tiny_model, tiny_csv, tmp_path / "int", "search.strategy=random")
    abandon = SearchScheduler.abandon

    def late_abandon(self: SearchScheduler, keys: list[Hashable]) -> None:
        time.sleep(0.5)  # the killed trainers' followers see their "-9" exits first (CI's race, made certain)
        abandon(self, keys)

    monkeypatch.setattr(SearchScheduler, "abandon", late_abandon)
    with pytest.raises(KeyboardInterrupt):
        Tuner(cfg, n_trials=5, backend=interrupting_executor(2, workers=3, unit_s=0.5)).run()  # a 3rd slot: Ctrl-C
    study = optuna.load_study(study_name=None, storage=f"sqlite:///{tmp_path / 'int' / 'study.db'}")
    failed = [t for t in study.trials if t.state == TrialState.FAIL]
    assert len(failed) == 2 and all(record.read(t).fail_reason == INTERRUPTED for t in failed)
    assert len([t for t in study.trials if t.state == TrialState.WAITING]) == 2  # their configurations again
    assert TrialState.RUNNING not in [t.state for t in study.trials]


def test_drive_stops_when_the_scheduler_has_nothing_left() -> None:
    calls: list[str] = []

    class Nothing(Scheduler):
        def suggest(self, device: str, threads: int) -> None:
            calls.append("suggest")
            return None

        def abandon(self, keys: list[Hashable]) -> None:
            raise AssertionError("nothing to abandon")

    ex = SimulatedExecutor(workers=2)
    nothing = Nothing()
    assert drive_module.drive(nothing, ex) == ""
    assert nothing.checkpoints is ex  # the loop hands the scheduler its backend's checkpoint operations
    assert calls == ["suggest"] and sorted(ex._free) == [0, 1]  # the slot went back


