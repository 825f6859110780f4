"""Script trials (``task.type: script``) end to end: the user's program is started per trial, reads its
settings through ``lmtune.trial()``, reports through the file channel and obeys the pruner's decisions;
what it never read, a crash and a final run without test scores fail with their reasons."""

from __future__ import annotations

import io
import itertools
import json
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

import lmtune
from lmtune import script
from lmtune.api import study_config
from lmtune.errors import ConfigError
from lmtune.protocol import SCRIPT_DECISIONS, SCRIPT_EVENTS, Continue, Stop, TrialSpec
from lmtune.tuner.progress import PlainReporter

# A stand-in for a training program: the loss falls with the data seen and is lowest at lr = 1e-3, so
# a pruner can tell trials apart early. It writes what it was given and what it was told.
PROGRAM = textwrap.dedent("""
    import json, math, os, sys
    import lmtune

    t = lmtune.trial()
    lr = t.params["learning_rate"]
    batch = t.hparams["batch_size"]
    seed = t.seed  # final runs differ by it
    mode = os.environ.get("SCRIPT_MODE", "")
    if mode == "crash":
        raise RuntimeError("boom in the user's script")
    seen, decisions = 0, []
    while seen < t.total_examples:
        if mode == "progress":  # every step says how far it got (a tight loop: the trial sends few of them)
            for done in range(seen + batch, min(t.total_examples, seen + t.examples_per_unit) + 1, batch):
                t.progress(done, tokens=done * 12)
        seen = min(t.total_examples, seen + t.examples_per_unit)
        loss = abs(math.log10(lr) + 3) + 1.0 / (1 + seen / 100)
        tokens = seen * 12 if mode != "no-tokens" else None  # 12 real tokens per example
        d = t.report({"eval_loss": loss, "eval_accuracy": 1 - loss / 5}, examples=seen, tokens=tokens)
        decisions.append(type(d).__name__)
        if t.should_stop:
            break
    with open(os.path.join(t.output_dir, "script.json"), "w") as f:
        json.dump({"lr": lr, "batch": batch, "seen": seen, "decisions": decisions,
                   "total": t.total_examples, "epu": t.examples_per_unit}, f)
    if mode == "finish-test" or (t.evaluate_test and mode != "no-test"):
        t.finish(test_metrics={"test_loss": loss, "test_accuracy": 1 - loss / 5})
""")


def _study(tmp_path: Path, *, strategy: str = "hyperband", space: dict[str, Any] | None = None,
           training: dict[str, Any] | None = None, **task: Any) -> dict[str, Any]:
    (tmp_path / "train.py").write_text(PROGRAM)
    return {
        "study": {"name": "script", "dir": str(tmp_path / "study"), "metric": "eval_loss", "direction": "minimize"},
        "task": {"type": "script", "command": ["python", "train.py"], "workdir": str(tmp_path),
                 "metrics": ["eval_loss", "eval_accuracy"], "train_size": 400, **task},
        "training": {"batch_size": 10, "eval_every": 4, "epochs": 2, **(training or {})},
        "search": {"strategy": strategy, "space": space if space is not None else
                   {"learning_rate": {"type": "float", "low": 1e-6, "high": 1e-1, "log": True}}},
    }


def _told(study: lmtune.StudyResult, number: int) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((study.study_dir / "trials" / f"{number:04d}" / "script.json").read_text())
    return data


@pytest.mark.slow
def test_a_script_trial_is_pruned_at_equal_data_and_trains_its_own_settings(tmp_path: Path) -> None:
    result = lmtune.tune(_study(tmp_path), n_trials=8, progress=False)
    states = [t.state for t in result.trials]
    assert states.count("COMPLETE") >= 2 and "PRUNED" in states, states
    assert "FAIL" not in states
    for t in result.trials:
        told = _told(result, t.number)
        assert told["lr"] == pytest.approx(t.config["learning_rate"]) and told["batch"] == 10
        assert told["epu"] == 40 and told["total"] == 800  # 4 steps × 10; 2 epochs × 400 rows
        if t.state == "PRUNED":  # it stopped where it was told, and said nothing more
            assert told["decisions"][-1] == "Stop" and told["seen"] < 800
            assert told["seen"] == 40 * len(t.curve)
        else:
            assert told["seen"] == 800 and set(told["decisions"]) == {"Continue"}
    # the curve is in the study's units, at the examples the script reported
    full = next(t for t in result.trials if t.state == "COMPLETE")
    assert [p["units"] for p in full.curve] == list(range(1, 21))
    assert [p["examples"] for p in full.curve] == [40 * u for u in range(1, 21)]
    best = min((t for t in result.trials if t.value is not None), key=lambda t: t.value)  # type: ignore[arg-type]
    assert result.best is not None and result.best.number == best.number


def test_searched_epochs_set_the_scripts_length(tmp_path: Path) -> None:
    space = {"learning_rate": {"type": "categorical", "choices": [1e-3]},
             "epochs": {"type": "categorical", "choices": [1, 3]}}
    result = lmtune.tune(_study(tmp_path, strategy="grid", space=space, training={"epochs": 1}),
                         overrides={"search.include_default": False}, n_trials=2, progress=False)
    lengths = sorted(_told(result, t.number)["total"] for t in result.trials)
    assert lengths == [400, 1200]


def test_a_setting_the_script_never_reads_fails_the_trial_naming_it(tmp_path: Path) -> None:
    space = {"learning_rate": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
             "warmup_ratio": {"type": "float", "low": 0.0, "high": 0.2}}
    result = lmtune.tune(_study(tmp_path, strategy="random", space=space, training={"weight_decay": 0.01}),
                         overrides={"search.max_failures": 1}, n_trials=1, progress=False)
    (trial,) = result.trials  # failed trials do not count towards n_trials: max_failures ends the study
    assert trial.state == "FAIL"
    assert "never read warmup_ratio, weight_decay" in (trial.fail_reason or "")


def test_a_crashing_script_fails_with_its_log_and_the_study_goes_on(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCRIPT_MODE", "crash")
    result = lmtune.tune(_study(tmp_path, strategy="random"), overrides={"search.max_failures": 2}, n_trials=2,
                         progress=False)
    assert [t.state for t in result.trials] == ["FAIL", "FAIL"]
    reason = result.trials[0].fail_reason or ""
    assert "task.command exited with code 1" in reason and "boom in the user's script" in reason


def test_a_launchers_summary_does_not_hide_the_ranks_exception(tmp_path: Path) -> None:
    """torchrun / accelerate end a failed run's log with their own summary; the fail reason still names the
    exception a rank died of (the first cause in the log, and the last when it differs)."""
    from lmtune.execution.script import _tail

    log = tmp_path / "log.txt"
    log.write_text(textwrap.dedent("""\
        Traceback (most recent call last):
          File "train.py", line 3, in <module>
        ValueError: the rank's own error
        terminate called after throwing an instance of 'gloo::IoException'
          what():  Connection closed by peer
        torch.distributed.elastic.multiprocessing.errors.ChildFailedError:
        Root Cause (first observed failure):
        [0]:
          rank      : 0 (local_rank: 0)
          traceback : Signal 6 (SIGABRT) received by PID 15010
        ====
        """))
    reason = _tail(log)
    assert reason.startswith("cause: ValueError: the rank's own error ... then: terminate called")
    assert "Connection closed by peer" in reason and reason.endswith("SIGABRT) received by PID 15010 | ====")
    assert "ChildFailedError" not in reason  # the launcher's exception says only that a rank failed
    log.write_text("step 1\nValueError: in the tail\n")
    assert _tail(log) == "step 1 | ValueError: in the tail"  # a tail that names its cause is enough


def test_final_runs_of_a_script_study_score_the_test_split(tmp_path: Path) -> None:
    lmtune.tune(_study(tmp_path, strategy="random"), n_trials=2, progress=False)
    summary = lmtune.final(tmp_path / "study", seeds=1)
    runs = summary.results["runs"]
    assert not summary.failed and {r["which"] for r in runs} == {"default", "best"}
    assert all("test_loss" in r["metrics"] for r in runs)


def test_a_final_run_without_test_scores_fails_naming_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lmtune.tune(_study(tmp_path, strategy="random"), n_trials=1, progress=False)
    monkeypatch.setenv("SCRIPT_MODE", "no-test")
    summary = lmtune.final(tmp_path / "study", seeds=1)
    assert summary.failed and all("trial.finish(test_metrics=...)" in why for _, why in summary.failed)


@pytest.mark.parametrize(("change", "message"), [
    ({"task": {"command": None}}, "task.type script needs task.command"),
    ({"task": {"metrics": None}}, "task.type script needs task.metrics"),
    ({"study": {"metric": "eval_f1"}}, "or add it to task.metrics"),
    ({"task": {"train_size": None}}, "set task.train_size"),
])
def test_a_script_config_that_cannot_work_is_refused_before_anything_runs(tmp_path: Path, change: dict[str, Any],
                                                                           message: str) -> None:
    raw = _study(tmp_path)
    for section, values in change.items():
        raw[section] = {**raw.get(section, {}), **values}
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        lmtune.tune(raw, progress=False)
    assert not (tmp_path / "study" / "trials").exists()


def test_script_fields_belong_to_script_tasks_only(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"task\.command is for task\.type script only"):
        lmtune.tune({"task": {"command": ["python", "x.py"]}, "study": {"dir": str(tmp_path / "s")}}, progress=False)


def test_a_script_searches_names_of_its_own_with_their_baseline_in_task_defaults(tmp_path: Path) -> None:
    program = PROGRAM.replace('lr = t.params["learning_rate"]', 'lr = t.params["learning_rate"] * t.params["scale"]')
    raw = _study(tmp_path, strategy="grid", defaults={"scale": 1.0}, training={"learning_rate": 1e-3}, space={
        "learning_rate": {"type": "categorical", "choices": [1e-3]},
        "scale": {"type": "categorical", "choices": [1.0, 10.0]}})
    (tmp_path / "train.py").write_text(program)
    result = lmtune.tune(raw, n_trials=2, progress=False)
    assert result.default is not None and result.default.params["scale"] == 1.0
    for t in result.trials:
        assert t.state == "COMPLETE" and _told(result, t.number)["lr"] == pytest.approx(1e-3 * t.params["scale"])


def test_task_defaults_may_not_shadow_a_training_field(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"task\.defaults\.learning_rate: a training field"):
        lmtune.tune(_study(tmp_path, defaults={"learning_rate": 0.1}), progress=False)


class _Recording(PlainReporter):
    """What the display is told, in order: ("advanced", trial, examples, tokens, total) and ("eval", trial, units)."""

    def __init__(self) -> None:
        super().__init__(io.StringIO())
        self.calls: list[tuple[Any, ...]] = []

    def trial_advanced(self, number: int, examples: int, tokens: int, total_examples: int) -> None:
        self.calls.append(("advanced", number, examples, tokens, total_examples))
        super().trial_advanced(number, examples, tokens, total_examples)

    def trial_progress(self, number: int, units: int, max_units: int, value: float | None) -> None:
        self.calls.append(("eval", number, units))
        super().trial_progress(number, units, max_units, value)


def _events(folder: Path, kind: str) -> list[dict[str, Any]]:
    lines = (folder / SCRIPT_EVENTS).read_text().splitlines()
    return [e for e in map(json.loads, lines) if e["event"] == kind]


def test_trial_progress_moves_a_script_trials_bar_from_its_first_step(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from lmtune.tuner.search import Tuner

    raw = _study(tmp_path, strategy="hyperband")
    reporter = _Recording()
    monkeypatch.setenv("SCRIPT_MODE", "progress")
    Tuner(study_config(raw), n_trials=4, reporter=reporter).run()
    result = lmtune.load(raw["study"]["dir"])
    assert len(result.trials) == 4 and {t.state for t in result.trials} <= {"COMPLETE", "PRUNED"}
    for t in result.trials:
        mine = [c for c in reporter.calls if c[1] == t.number]
        assert mine[0] == ("advanced", t.number, 10, 120, 800), mine  # one step of 800, before any evaluation
        folder = result.study_dir / "trials" / f"{t.number:04d}"
        evals = _events(folder, "eval")
        sent = _events(folder, "progress")
        # 4 calls per evaluation; the first, then at most one per 2 s, reach the file
        assert 1 <= len(sent) <= 1 + evals[-1]["elapsed_s"] / script.PROGRESS_EVERY_S
        # progress events are no evaluations: one decision per report, the curve in units 1, 2, ...
        told = _told(result, t.number)
        assert len(told["decisions"]) == len(evals) == len(t.curve)
        assert [p["units"] for p in t.curve] == list(range(1, len(evals) + 1))
        assert told["decisions"][-1] == ("Stop" if t.state == "PRUNED" else "Continue")


def _file_trial(folder: Path, *, rank: int = 0) -> script.Trial:
    folder.mkdir(exist_ok=True)
    spec = TrialSpec(trial=0, model="", task_type="script", data_cache="", hparams={"batch_size": 8},
                     examples_per_unit=32, total_examples=96, output_dir=str(folder))
    (folder / SCRIPT_DECISIONS).mkdir(exist_ok=True)
    (folder / SCRIPT_EVENTS).touch()
    return script.Trial(spec, folder, rank=rank)


def test_trial_progress_sends_the_first_call_then_at_most_one_per_interval(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    trial = _file_trial(tmp_path / "a")
    for step in range(1, 10_001):  # a tight loop, far under 2 s: only the first call is sent
        trial.progress(8 * step, tokens=100 * step)
    assert _events(tmp_path / "a", "progress") == [{"event": "progress", "examples": 8, "tokens": 100,
                                                    "total_examples": 96}]  # the shape lmtune's trainer sends
    monkeypatch.setattr(script, "PROGRESS_EVERY_S", 0.05)
    paced = _file_trial(tmp_path / "b")
    calls, t0 = 0, time.monotonic()
    while time.monotonic() - t0 < 0.3:
        calls += 1
        paced.progress(calls)
    sent = [e["examples"] for e in _events(tmp_path / "b", "progress")]
    assert calls > 1000 and 2 <= len(sent) <= 1 + 0.3 / 0.05 + 1  # paced by the clock, not by the calls
    assert sent[0] == 1 and sent == sorted(sent)


def test_trial_progress_is_no_evaluation_and_only_rank_0_sends_it(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    trial = _file_trial(tmp_path)
    (tmp_path / SCRIPT_DECISIONS / "0.json").write_text(json.dumps({"decision": "continue"}))
    (tmp_path / SCRIPT_DECISIONS / "1.json").write_text(json.dumps({"decision": "stop"}))
    worker = _file_trial(tmp_path, rank=1)
    for n in range(1, 33):
        worker.progress(n, tokens=n)
    assert (tmp_path / SCRIPT_EVENTS).read_text() == ""  # only rank 0 sends
    trial.progress(8)
    # the report after it is the first evaluation and gets the first answer (a progress event gets none)
    assert trial.report({"eval_loss": 1.0}, examples=32) == Continue()
    assert trial.report({"eval_loss": 0.9}, examples=64) == Stop()
    lines = (tmp_path / SCRIPT_EVENTS).read_text()
    trial.progress(72)  # told to stop: nothing more is sent
    assert (tmp_path / SCRIPT_EVENTS).read_text() == lines
    assert [e["event"] for e in map(json.loads, lines.splitlines())] == ["progress", "eval", "eval"]
    # standalone (no lmtune driver): progress goes nowhere, as reports do
    monkeypatch.delenv("LMTUNE_TRIAL", raising=False)
    (tmp_path / "alone").mkdir()
    monkeypatch.chdir(tmp_path / "alone")
    alone = lmtune.trial(defaults={"max_steps": 4})
    alone.progress(8)
    assert list((tmp_path / "alone").iterdir()) == []


# A PBT-ready stand-in: its "model" is one number that grows with every unit of data by an amount that
# is largest at lr = 1e-3; the loss falls as it grows. It saves that state at every ready point and,
# started again, loads it from trial.resume_from. Each process appends what it was given to launches.jsonl.
PBT_PROGRAM = textwrap.dedent("""
    import json, math, os
    import lmtune

    t = lmtune.trial()
    lr = t.params["learning_rate"]
    t.params["batch_size"]
    mode = os.environ.get("SCRIPT_MODE", "")
    x, seen = 0.0, 0
    if t.resume_from is not None:
        state = json.loads((t.resume_from / "state.json").read_text())
        x, seen = state["x"], t.resume_examples
        assert state["seen"] == seen
    start, decisions = seen, []
    while seen < t.total_examples:
        seen = min(t.total_examples, seen + t.examples_per_unit)
        x += 1.0 / (1.0 + abs(math.log10(lr) + 3))
        t.progress(seen)  # shown only: PBT's ready points and decisions do not move
        folder = t.checkpoint_dir(seen)
        if folder is not None and mode != "no-checkpoint":
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "state.json").write_text(json.dumps({"x": x, "seen": seen}))
        d = t.report({"eval_loss": 5.0 / (1.0 + x)}, examples=seen,
                     checkpoint=None if mode == "no-checkpoint" else folder)
        decisions.append(type(d).__name__)
        if t.should_stop:
            break
    with open(os.path.join(t.output_dir, "launches.jsonl"), "a") as f:
        f.write(json.dumps({"lr": lr, "resume_from": str(t.resume_from or ""), "start": start, "end": seen,
                            "decisions": decisions, "seed": t.seed}) + "\\n")
    if t.evaluate_test:
        t.finish(test_metrics={"test_loss": 5.0 / (1.0 + x)})
""")


def _pbt_study(tmp_path: Path) -> dict[str, Any]:
    raw = _study(tmp_path, strategy="pbt", training={"epochs": 1, "learning_rate": 1e-5})
    raw["task"]["metrics"] = ["eval_loss"]
    raw["search"]["pbt"] = {"population_size": 3, "ready_every": 8, "quantile": 0.34}
    (tmp_path / "train.py").write_text(PBT_PROGRAM)
    return raw


def _launches(study: lmtune.StudyResult, number: int) -> list[dict[str, Any]]:
    path = study.study_dir / "trials" / f"{number:04d}" / "launches.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.slow
def test_pbt_runs_a_script_restarting_it_from_the_donors_checkpoint_with_explored_settings(tmp_path: Path) -> None:
    result = lmtune.tune(_pbt_study(tmp_path), progress=False)  # one worker: members take turns (pauses)
    assert [t.state for t in result.trials] == ["COMPLETE"] * 3
    trials_dir = result.study_dir / "trials"
    exploits = 0
    for t in result.trials:
        launches = _launches(result, t.number)
        ends = [run["end"] for run in launches]
        assert len(launches) >= 2 and ends[-1] == 400  # 10 units of 40 examples, in pieces
        assert [run["decisions"][-1] for run in launches] == ["Pause"] * (len(launches) - 1) + ["Continue"]
        schedule = (t.pbt or {})["schedule"]
        for before, run in itertools.pairwise(launches):
            donor = Path(run["resume_from"])  # it starts where that checkpoint was written
            assert donor.parent.parent.parent == trials_dir and donor.name == f"u{run['start'] // 40:05d}"
            if int(donor.parent.parent.name) == t.number:  # its own checkpoint: on from where it paused
                assert run["start"] == before["end"]
            else:  # an exploit: another member's state (at that member's last ready point)
                exploits += 1
        copied = [run for run in launches[1:] if int(Path(run["resume_from"]).parent.parent.name) != t.number]
        if copied:  # the last exploit is the last schedule entry: where it resumed, the settings it trained
            assert copied[-1]["start"] == schedule[-1]["units"] * 40
            assert copied[-1]["lr"] == pytest.approx(schedule[-1]["config"]["learning_rate"])
        assert launches[0]["lr"] == pytest.approx(t.params["learning_rate"])  # the member's initial settings
    assert exploits >= 1  # the worst member copied a better one at least once
    best = min(result.trials, key=lambda t: t.value or 1e9)
    assert result.best is not None and result.best.number == best.number

    # lmtune final replays the best member's schedule as a chain of runs of the script
    summary = lmtune.final(result.study_dir, seeds=1)
    assert not summary.failed, summary.failed
    schedule = (best.pbt or {})["schedule"]
    assert len(schedule) >= 2  # the best member changed settings once at least (the study's seed fixes it)
    runs = [json.loads(line) for line in
            (result.study_dir / "final" / "runs" / "best-seed0" / "launches.jsonl").read_text().splitlines()]
    assert [run["start"] for run in runs] == [40 * e["units"] for e in schedule]
    assert [run["lr"] for run in runs] == pytest.approx([e["config"]["learning_rate"] for e in schedule])
    assert runs[-1]["end"] == 400 and {run["seed"] for run in runs} == {0}
    record = next(r for r in summary.results["runs"] if r["which"] == "best")
    assert record["metrics"]["test_loss"] == pytest.approx(best.value, rel=1e-6)  # the same path, replayed


def test_a_pbt_script_without_a_checkpoint_at_a_ready_point_fails_saying_how(tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCRIPT_MODE", "no-checkpoint")
    result = lmtune.tune(_pbt_study(tmp_path), progress=False)
    assert [t.state for t in result.trials] == ["FAIL"] * 3
    assert "is a PBT ready point; save the training state in trial.checkpoint_dir(80)" in (
        result.trials[0].fail_reason or "")


def test_a_token_budget_stops_a_script_study_at_the_tokens_it_reports(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    raw = _study(tmp_path, strategy="random")
    raw["budget"] = {"max_train_tokens": 25_000}  # a full trial: 800 examples x 12 tokens = 9,600
    result = lmtune.tune(raw, n_trials=10, progress=False)
    assert result.stop_reason.startswith("budget: max_train_tokens")
    assert "cannot train another trial to its end" in result.stop_reason  # a third would be cut part-way
    assert [t.state for t in result.trials] == ["COMPLETE", "COMPLETE"]
    assert sum(t.train_tokens or 0 for t in result.trials) == 2 * 9_600
    # a cap below one trial: the first starts (no tokens per example are known before a report) and is
    # stopped at the evaluation before the next interval (480 tokens) would cross the cap
    raw["budget"] = {"max_train_tokens": 5_000}
    raw["study"]["dir"] = str(tmp_path / "small")
    small = lmtune.tune(raw, n_trials=10, progress=False)
    assert [t.state for t in small.trials] == ["PRUNED"]
    assert 4_000 < (small.trials[0].train_tokens or 0) <= 5_000
    monkeypatch.setenv("SCRIPT_MODE", "no-tokens")
    raw["study"]["dir"] = str(tmp_path / "study2")
    failed = lmtune.tune(raw, overrides={"search.max_failures": 1}, n_trials=1, progress=False)
    assert "budget.max_train_tokens, so every report counts the train tokens: pass tokens=n" in (
        failed.trials[0].fail_reason or "")


def test_free_port_in_the_command_is_a_free_port_per_launch() -> None:
    from lmtune.execution.script import with_free_port

    cmd = ["torchrun", "--master-port", "{free_port}", "--rdzv-endpoint", "127.0.0.1:{free_port}", "train.py"]
    first, second = with_free_port(cmd), with_free_port(cmd)
    port = first[2]
    assert port.isdigit() and first[4] == f"127.0.0.1:{port}"  # one port wherever it appears
    assert second[2].isdigit() and "{free_port}" not in " ".join(first + second)
    assert with_free_port(["python", "train.py"]) == ["python", "train.py"]


def test_a_script_trial_is_started_with_the_free_port_filled_in(tmp_path: Path) -> None:
    raw = _study(tmp_path, strategy="random", space={})
    (tmp_path / "train.py").write_text(textwrap.dedent("""
        import json, os, socket, sys
        import lmtune

        t = lmtune.trial()
        port = int(sys.argv[sys.argv.index("--port") + 1])
        with socket.socket() as s:  # the port is free: the rendezvous of a multi-process launch can bind it
            s.bind(("127.0.0.1", port))
        json.dump({"argv": sys.argv[1:]}, open(os.path.join(t.output_dir, "argv.json"), "w"))
        t.report({"eval_loss": 1.0, "eval_accuracy": 0.5}, examples=t.total_examples)
    """))
    raw["task"]["command"] = ["python", "train.py", "--port", "{free_port}"]
    result = lmtune.tune(raw, n_trials=1, progress=False)
    argv = json.loads((result.study_dir / "trials" / "0000" / "argv.json").read_text())["argv"]
    assert argv[0] == "--port" and argv[1].isdigit()
