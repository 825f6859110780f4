"""The trainer contract (`lmtune.protocol`): what a process that trains one trial must do, whoever wrote it.
lmtune's own trainer (``lmtune.training.worker``) and its stand-in (``lmtune.execution.simtrainer``) pass
it (``tests/training/test_trainer_contract.py``); a trainer of your own — any module run as
``python -m MODULE TRIAL_JSON`` that speaks the protocol — can be checked the same way:

    from lmtune.testing import check_trainer

    check_trainer("my_package.my_trainer", spec, folder=tmp_path)

``spec`` is a `TrialSpec` of exactly 4 evaluation units (``total_examples = 4 * examples_per_unit``) whose
``metric`` the trainer reports. A trainer reads the frozen spec, streams ``start``, one ``eval`` per
evaluation unit and ``end``, obeys the driver's answer to each evaluation (``Continue``, ``Stop``, and
PBT's ``Pause`` at a checkpoint it saved, resumed later from it), and needs no answers when the spec is not
interactive. Each check raises ``AssertionError`` naming what the trainer did wrong. No pytest needed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from lmtune.execution import LocalExecutor
from lmtune.protocol import Continue, Decision, End, Ending, Eval, Event, Pause, Start, Stop, TrialSpec, read_event

__all__ = ["TRAINER_CHECKS", "check_trainer"]

UNITS = 4  # the evaluation units of the spec every check runs


def run_trainer(module: str, spec: TrialSpec, trial_dir: Path,
                answer: Callable[[Eval], Decision]) -> tuple[list[Event], int, Path]:
    """One run of ``module`` on ``spec`` in ``trial_dir`` (a local process, as lmtune runs trainers); each
    evaluation answered with ``answer`` when the spec is interactive. Its typed events, exit code and log."""
    ex = LocalExecutor(workers=1, device=spec.device, threads=1, module=module, warm_start=False)
    slot = ex.acquire()
    try:
        proc = ex.launch(replace(spec, output_dir=str(trial_dir)), trial_dir, slot)
        events: list[Event] = []
        for wire in proc.events():
            ev = read_event(wire)
            events.append(ev)
            if isinstance(ev, Eval) and spec.interactive:
                proc.send(answer(ev))
        return events, proc.wait(), proc.log_path
    finally:
        ex.release(slot)
        ex.close()


def _evals(events: list[Event]) -> list[Eval]:
    return [e for e in events if isinstance(e, Eval)]


def _main(events: list[Event]) -> list[Event]:
    """The events but the progress ones (display only, any number of them)."""
    return [e for e in events if isinstance(e, Start | Eval | End)]


def check_streams_start_evals_and_end(module: str, spec: TrialSpec, folder: Path) -> None:
    """Answered with Continue: start, one eval per unit (examples at equal data, tokens growing, the metric),
    an end that says it completed with the last evaluation's tokens; exit 0."""
    events, code, log = run_trainer(module, spec, folder / "end", lambda ev: Continue())
    main = _main(events)
    assert code == 0, f"a trial that ran to its end exited with {code}; see {log}"
    assert main and isinstance(main[0], Start) and isinstance(main[-1], End), f"start … end expected: {main}"
    evals = _evals(events)
    assert [e.units for e in evals] == list(range(1, UNITS + 1)), f"one eval per unit: {[e.units for e in evals]}"
    for e in evals:
        assert spec.metric in e.metrics, f"eval at units {e.units} lacks the study's metric {spec.metric}"
        assert e.examples == e.units * spec.examples_per_unit, f"units {e.units}: {e.examples} examples"
    tokens = [e.tokens for e in evals]
    assert tokens == sorted(tokens) and tokens[0] > 0, f"train tokens must grow from the first eval: {tokens}"
    end = main[-1]
    assert isinstance(end, End) and end.ending is Ending.COMPLETED and end.units == UNITS, f"its end: {end}"
    assert spec.metric in end.metrics and end.train_tokens == tokens[-1], f"its end's metrics/tokens: {end}"


def check_stops_where_told(module: str, spec: TrialSpec, folder: Path) -> None:
    """A Stop at the second evaluation ends the run there, its end saying it was pruned; exit 0."""
    events, code, _ = run_trainer(module, spec, folder / "stop", lambda ev: Stop() if ev.units == 2 else Continue())
    main = _main(events)
    assert code == 0 and len(_evals(events)) == 2 and isinstance(main[-1], End), f"exit {code}, events {main}"
    assert main[-1].ending is Ending.PRUNED and main[-1].units == 2, f"a stopped run's end: {main[-1]}"


def check_runs_without_answers(module: str, spec: TrialSpec, folder: Path) -> None:
    """A spec that is not interactive trains its whole length without waiting for any answer."""
    events, code, _ = run_trainer(module, replace(spec, interactive=False), folder / "quiet", lambda ev: Stop())
    main = _main(events)
    assert code == 0 and isinstance(main[-1], End) and main[-1].units == UNITS, f"exit {code}, events {main}"


def check_pauses_and_resumes(module: str, spec: TrialSpec, folder: Path) -> None:
    """With ``checkpoint_every=2`` the second evaluation names a whole checkpoint; a Pause there ends the run
    (paused), and a run resumed from that checkpoint goes on at units 3 and 4."""
    spec = replace(spec, checkpoint_every=2)
    d = folder / "pause"
    events, code, _ = run_trainer(module, spec, d, lambda ev: Pause() if ev.checkpoint else Continue())
    evals, main = _evals(events), _main(events)
    units = [e.units for e in evals]
    assert code == 0 and units == [1, 2], f"paused at its checkpoint? exit {code}, units {units}"
    assert evals[0].checkpoint is None and evals[1].checkpoint, "a checkpoint at units 2 only (checkpoint_every=2)"
    assert isinstance(main[-1], End) and main[-1].ending is Ending.PAUSED, f"a paused run's end: {main[-1]}"
    assert Path(evals[1].checkpoint).is_dir(), f"the checkpoint {evals[1].checkpoint} is not there"
    events, code, log = run_trainer(module, replace(spec, resume_from=evals[1].checkpoint), d, lambda ev: Continue())
    assert code == 0 and [e.units for e in _evals(events)] == [3, 4], \
        f"a resumed run goes on from units 2: {[e.units for e in _evals(events)]}; see {log}"
    end = _main(events)[-1]
    assert isinstance(end, End) and end.ending is Ending.COMPLETED, f"the resumed run's end: {end}"


TRAINER_CHECKS: tuple[Callable[[str, TrialSpec, Path], None], ...] = (
    check_streams_start_evals_and_end, check_stops_where_told, check_runs_without_answers, check_pauses_and_resumes)


def check_trainer(module: str, spec: TrialSpec, *, folder: Path) -> None:
    """Run every check of the trainer contract on ``module`` with ``spec`` (4 evaluation units; runs under
    ``folder``); the first that fails raises ``AssertionError``."""
    total, per = spec.total_examples, spec.examples_per_unit
    assert total == UNITS * per, f"the spec must train {UNITS} units: total_examples {total}, examples_per_unit {per}"
    for check in TRAINER_CHECKS:
        check(module, spec, Path(folder) / check.__name__)
