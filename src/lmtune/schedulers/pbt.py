"""PBT as a `Scheduler` of the one trial loop (`lmtune.tuner.drive`), following `lmtune.strategies.pbt.PBT`.

Each member is one Optuna trial (params = its initial configuration; user attr ``pbt`` = member,
generation, parent trial and the hyperparameter schedule so far). Trainers save an exact checkpoint
at every ready point, then report; the driver answers:

- ``continue`` — or ``pause`` when other members wait for a worker slot (the member is resumed later
  from the checkpoint it just saved, so fewer workers than members still gives a real population);
- an exploit order — load member B's checkpoint at ``su`` units and go on with the explored settings,
  when they change only what a running trainer can change (``lmtune.protocol.CHANGED_IN_PLACE``);
  otherwise, and always for a script trial, ``pause``: the trainer is started again from B's checkpoint
  with those settings (``TrialSpec.resume_from``; ``lmtune.script.Trial.resume_from``);
- nothing at the last unit (the member is finished).

The whole PBT state is written to ``<study_dir>/pbt_state.json`` after every decision, so a killed
study resumes every unfinished member from its last checkpoint without losing completed work.
Checkpoints the strategy can no longer hand out are named after each decision
(`removable_checkpoints`) and deleted by the backend (bounded disk).
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from lmtune.config import PBTSection
from lmtune.execution import Checkpoints, TrialHandle
from lmtune.protocol import (
    CHANGED_IN_PLACE,
    CheckpointRef,
    Continue,
    Decision,
    Ending,
    Eval,
    Event,
    Exploit,
    Outcome,
    Pause,
    Progress,
    Start,
    Stop,
    ToolArgs,
)
from lmtune.schedulers.base import Launch, Scheduler, register
from lmtune.strategies import PBT
from lmtune.study import INTERRUPTED, record
from lmtune.tuner import NoTracking, Plan, Reporter, RunRecord, Tracker, trial_spec

STATE_FILE = "pbt_state.json"
log = logging.getLogger("lmtune")


@dataclass
class _Member:
    member: int
    trial: optuna.trial.Trial
    proc: TrialHandle | None = None
    started: float = 0.0
    wall: float = 0.0
    busy: float = 0.0  # seconds its runs trained and evaluated (their end events say)
    startup: float | None = None  # its first run's launch to first step
    tokens: int = 0
    curve: list[dict[str, Any]] | None = None
    restarts: list[dict[str, Any]] | None = None  # checkpoints found gone: [{"units": u, "missing": path}]


def make_pbt(p: PBTSection, plan: Plan, population: int, *, seed: int, eval_every: int | None) -> PBT:
    """The strategy from its own section (``search.pbt``): ready points every ``p.ready_every`` steps at
    the default batch size (``eval_every`` when unset; every evaluation when both are), in the plan's units."""
    ready_steps = p.ready_every or eval_every
    _, _, batch_size = plan.trial.length
    ready_units = max(1, round(ready_steps * batch_size / plan.examples_per_unit)) if ready_steps else 1
    return PBT(space=plan.space, population_size=population, ready_units=ready_units, max_units=plan.max_units,
               seed=seed, direction=plan.trial.direction, quantile=p.quantile,
               resample_probability=p.resample_probability, perturb_factors=p.perturb_factors,
               mutable=frozenset(p.mutable) if p.mutable is not None else None)


@register("pbt")
class PBTRunner(Scheduler):
    """One PBT study as a `lmtune.schedulers.Scheduler` (keys are member indices), driven to the end or
    to a budget stop. Only this process writes the study.

    Built from its own parts of the config: the ``pbt`` section (search.pbt), ``population`` members, the
    study's ``metric`` and ``seed``, ``eval_every`` (training.eval_every: the ready interval when
    ``pbt.ready_every`` is unset) and ``include_default`` (search.include_default: member 0 starts from
    the default settings)."""

    poll_s: float | None = None
    finished_reason = "population finished"

    def __init__(self, plan: Plan, study: optuna.Study, *, pbt: PBTSection, population: int, metric: str,
                 seed: int, eval_every: int | None, include_default: bool, reporter: Reporter,
                 budget_stop: Callable[[], str], tracker: Tracker | None = None) -> None:
        self.plan, self.study, self.reporter = plan, study, reporter
        self.metric, self.include_default = metric, include_default
        self.tracker: Tracker = tracker or NoTracking()
        self.pbt = make_pbt(pbt, plan, population, seed=seed, eval_every=eval_every)
        self.lock = threading.Lock()
        self.members: dict[int, _Member] = {}
        self.waiting: deque[int] = deque()
        self.state_path = plan.paths.root / STATE_FILE
        self._budget_stop = budget_stop
        self._stop = ""
        self._reported: dict[Path, Path] = {}  # checkpoints members reported, not yet given up → trial folder
        self._removable: list[Path] = []

    # -- population ------------------------------------------------------------------------------
    def start_population(self) -> None:
        """Create the members (first run) or load them (resume); queue every unfinished one."""
        numbers: dict[int, int] = {}
        if self.state_path.is_file():
            saved = json.loads(self.state_path.read_text())
            self.pbt.load_state_dict(saved["pbt"])
            numbers = {int(k): int(v) for k, v in saved["trials"].items()}
        for m in range(self.pbt.population_size):
            if m not in numbers:
                numbers[m] = self._new_member_trial(m)
                self._save_state(numbers)
        by_number = {t.number: t for t in self.study.get_trials(deepcopy=False)}
        for m, number in sorted(numbers.items()):
            frozen = by_number[number]
            rec = record.read(frozen)
            wall = rec.wall_time_s or 0.0  # its runs before this driver's: their busy part from the record
            self.members[m] = _Member(m, optuna.trial.Trial(self.study, frozen._trial_id), curve=rec.curve,
                                      tokens=rec.train_tokens or 0, wall=wall,
                                      busy=max(0.0, wall - rec.overhead_s) if rec.overhead_s is not None else 0.0,
                                      restarts=list((rec.pbt or {}).get("restarts", [])))
            if frozen.state != TrialState.RUNNING:
                continue
            state = self.pbt.member_state(m)
            if not state.finished:
                self.waiting.append(m)
            elif state.score is not None and math.isfinite(state.score):  # killed between report and tell
                self.study.tell(self.members[m].trial, state.score)
        mine = set(numbers.values())
        for t in by_number.values():  # e.g. a member trial asked but never recorded: not ours to resume
            if t.state == TrialState.RUNNING and t.number not in mine:
                record.write_frozen(self.study, t, fail_reason=INTERRUPTED)
                self.study.tell(t.number, state=TrialState.FAIL)
        self._save_state()

    def _new_member_trial(self, m: int) -> int:
        fixed = self.plan.defaults if (m == 0 and self.include_default) else None
        config = self.pbt.initial_config(m, fixed=fixed)
        is_default = fixed is not None and config == self.plan.space.restrict(self.plan.defaults)
        self.study.enqueue_trial(config, user_attrs=record.enqueue_attrs(is_default=is_default))
        trial = self.study.ask()
        self.plan.space.suggest(trial)  # records the enqueued params with their distributions
        record.write(trial, config={**self.plan.defaults, **config},
                     trial_dir=str(self.plan.paths.trial_dir(trial.number)))
        return trial.number

    # -- the scheduler -------------------------------------------------------------------------
    def use(self, checkpoints: Checkpoints) -> None:
        """The backend's checkpoints; a resumed study takes over the ones its members reported last run."""
        super().use(checkpoints)
        with self.lock:
            for m, member in self.members.items():
                reported, folder = self.pbt.member_state(m).units, self.plan.paths.trial_dir(member.trial.number)
                self._reported |= {c: folder for c in checkpoints.list_checkpoints(folder)
                                   if (checkpoints.checkpoint_units(c) or 0) <= reported}

    def stop_reason(self) -> str:
        self._stop = self._stop or self._budget_stop()
        return self._stop

    def waiting_on_others(self) -> bool:
        return False

    def suggest(self, device: str, threads: int) -> Launch | None:
        """The next waiting member, resumed from its checkpoint when it has one (see `_gone`)."""
        with self.lock:
            while True:
                if not self.waiting:
                    return None
                m = self.waiting.popleft()
                state = self.pbt.member_state(m)
                resume = self._ckpt_path(*state.checkpoint) if state.checkpoint else None
                if resume is None or self.checkpoints.checkpoint_ready(resume):
                    break
                if self._gone(m, resume):
                    state, resume = self.pbt.member_state(m), None  # it starts over from scratch
                    break
        member = self.members[m]
        hparams = {**self.plan.defaults, **state.config}
        spec = trial_spec(self.plan, number=member.trial.number, hparams=hparams, device=device,
                          threads=threads, checkpoint_every=self.pbt.ready_units,
                          resume_from=str(resume) if resume is not None else None)
        member.started = time.monotonic()
        if member.startup is None:  # its first run here: the length it trains (every member's, max_units)
            with self.lock:
                record.write(member.trial, planned_examples=spec.total_examples, device=device,
                             devices=max(1, spec.world_size))
        return Launch(m, spec, self.plan.paths.trial_dir(member.trial.number))

    def _gone(self, m: int, path: Path) -> bool:
        """Member ``m``'s checkpoint (its own, or the donor's it was to copy) is gone or incomplete: the
        member starts over from scratch with its current settings, recorded in its trial's ``pbt``
        attr, rather than being lost; when that would overwrite a checkpoint another member or the best
        still needs, it is retired as failed with the reason. True when it restarts. Under the lock."""
        member = self.members[m]
        units = self.pbt.member_state(m).units
        best = self.pbt.best()
        if self.pbt.restart(m, best_gone=best is not None and
                            not self.checkpoints.checkpoint_ready(self._ckpt_path(best.member, best.units))):
            member.restarts = [*(member.restarts or []), {"units": units, "missing": str(path)}]
            log.warning("PBT member %d (trial %d): its checkpoint %s is gone; it starts over from the start "
                        "with its current settings", m, member.trial.number, path)
            self._record_member(member)
            self._save_state()
            return True
        reason = (f"PBT checkpoint {path} is gone, and starting over would overwrite a checkpoint that another "
                  "member still needs")
        record.write(member.trial, fail_reason=reason)
        self.study.tell(member.trial, state=TrialState.FAIL)
        self.pbt.retire(m)
        self._save_state()
        self._finished(member, "FAIL", None, reason)
        return False

    def started(self, key: Hashable, handle: TrialHandle) -> None:
        member = self.members[int(key)]  # type: ignore[call-overload]
        member.proc = handle
        self.reporter.trial_started(member.trial.number, {"member": member.member,
                                                          **self.pbt.member_state(member.member).config}, False)

    def on_eval(self, key: Hashable, ev: Eval, curve: list[dict[str, Any]]) -> Decision:
        return self._on_eval(self.members[int(key)], ev)  # type: ignore[call-overload]

    def on_event(self, key: Hashable, ev: Event) -> None:
        member = self.members[int(key)]  # type: ignore[call-overload]
        if isinstance(ev, Start) and member.startup is None:  # its first run: launch to the first step
            member.startup = time.monotonic() - member.started
            with self.lock:
                record.write(member.trial, **record.started(ev, startup_s=member.startup))
        if isinstance(ev, Progress):
            self.reporter.trial_advanced(member.trial.number, ev.examples, ev.tokens, ev.total_examples)
        if isinstance(ev, ToolArgs):  # a tool trial: what the tool's Trainer runs with (its latest run's)
            with self.lock:
                record.write(member.trial, tool_args=ev.values)

    def on_end(self, key: Hashable, outcome: Outcome) -> None:
        paused = self._on_exit(self.members[int(key)], outcome)  # type: ignore[call-overload]
        with self.lock:
            if paused and not self._stop:
                self.waiting.append(int(key))  # type: ignore[call-overload]

    def on_crash(self, key: Hashable, exc: Exception) -> None:
        member = self.members[int(key)]  # type: ignore[call-overload]
        reason = f"not recorded: {type(exc).__name__}: {exc}"
        with self.lock:
            record.write(member.trial, fail_reason=reason)
            self.study.tell(member.trial, state=TrialState.FAIL)
            self.pbt.retire(member.member)
            self._save_state()
        self._finished(member, "FAIL", None, reason)

    def removable_checkpoints(self) -> list[Path]:
        with self.lock:
            gone, self._removable = self._removable, []
        return gone

    def abandon(self, keys: list[Hashable]) -> None:
        """Interrupted: the trainers were killed; every member resumes from ``pbt_state.json`` next run."""

    def _on_eval(self, member: _Member, ev: Eval) -> Decision:
        """Record the evaluation, ask PBT, persist, clean up checkpoints; returns the answer."""
        metric = self.metric
        score = ev.metrics.get(metric, float("nan"))
        score = score if score is not None else float("nan")
        assert member.curve is not None
        member.curve.append(ev.point())
        member.tokens = max(member.tokens, ev.tokens)
        self.reporter.trial_advanced(member.trial.number, ev.examples, ev.tokens, 0)
        self.reporter.trial_progress(member.trial.number, ev.units, self.plan.max_units, score)
        if ev.checkpoint is None:
            return Continue()
        with self.lock:
            self._reported[Path(ev.checkpoint)] = self.plan.paths.trial_dir(member.trial.number)
            running = dict(self.pbt.member_state(member.member).config)  # what its trainer runs with now
            decision = self.pbt.report(member.member, ev.units, float(score))
            self._record_member(member)  # before the state: a resumed member never lacks its curve
            self._save_state()
            self._retain()
            waiting = bool(self.waiting)
        if isinstance(decision, Stop):
            return Continue()  # PBT stops a member at max_units, where its trainer ends by itself
        if isinstance(decision, Exploit):
            donor = self._ckpt_path(decision.source.owner, decision.source.units)
            changed = {k for k in {*running, *decision.hparams} if running.get(k) != decision.hparams.get(k)}
            if (waiting or not self.checkpoints.checkpoint_ready(donor) or self.plan.trial.task_type == "script"
                    or not changed <= CHANGED_IN_PLACE):
                # resumed later from the donor's checkpoint with the new config (gone: `_gone`): a script is
                # never changed while it runs, and lmtune's trainer builds its model again for a dropout
                return Pause()
            donor_trial = self.members[decision.source.owner].trial.number
            return Exploit(CheckpointRef(donor_trial, decision.source.units), checkpoint=str(donor),
                           hparams={**self.plan.defaults, **decision.hparams})
        return Pause() if waiting else Continue()

    def _on_exit(self, member: _Member, outcome: Outcome) -> bool:
        """Record how a member's run ended (`lmtune.study.record.ended`, over all its runs so far); True when
        it paused (it is resumed when a slot frees)."""
        end = outcome.end
        member.wall += time.monotonic() - member.started
        if end is not None:
            member.busy += end.busy_s
        trial = member.trial
        with self.lock:
            self._record_member(member)
            ended = record.ended(outcome, metric=self.metric, wall_s=member.wall, busy_s=member.busy,
                                 curve=list(member.curve or []), train_tokens=member.tokens)
            if ended.ending is Ending.PAUSED:
                return True
            if end is not None and not self.pbt.member_state(member.member).finished:  # ended early
                self.pbt.retire(member.member)  # (early stopping)
                self._save_state()
            record.write(trial, **ended.fields)
            if ended.state == "COMPLETE":
                self.study.tell(trial, ended.value)
                self._finished(member, "COMPLETE", ended.value, "")
                return False
            # PBT never prunes a member (it sends no Stop): an ending other than these is a failure
            reason = ended.reason or f"ended as {ended.state} without a result"
            if "fail_reason" not in ended.fields:
                record.write(trial, fail_reason=reason)
            self.study.tell(trial, state=TrialState.FAIL)
            self.pbt.retire(member.member)
            self._save_state()
            self._finished(member, "FAIL", None, reason)
            return False

    def _finished(self, member: _Member, state: str, value: float | None, reason: str) -> None:
        last = (member.curve or [{}])[-1].get("metrics") or {}
        st = self.pbt.member_state(member.member)
        self.tracker.log_run(RunRecord(  # the member's settings as it ended (its schedule is in the study)
            name=f"trial-{member.trial.number:04d}", params={**self.plan.defaults, **st.config},
            curve=list(member.curve or []), metrics=dict(last), state=state, reason=reason,
            train_tokens=member.tokens, wall_time_s=member.wall))
        try:
            best = float(self.study.best_value)
        except ValueError:
            best = None
        self.reporter.trial_finished(member.trial.number, state, value, reason, best)

    # -- records ---------------------------------------------------------------------------------
    def _record_member(self, member: _Member) -> None:
        st = self.pbt.member_state(member.member)
        parent = self.members[st.parent].trial.number if st.parent is not None else None
        attrs = {"curve": member.curve, "train_tokens": member.tokens, "wall_time_s": member.wall,
                 # kept with every record, so a resumed driver knows its runs' busy seconds
                 "overhead_s": max(0.0, member.wall - member.busy),
                 "pbt": {"member": st.member, "generation": st.generation, "parent_trial": parent,
                         "schedule": st.schedule, "units": st.units,
                         **({"restarts": member.restarts} if member.restarts else {})}}
        record.write(member.trial, **attrs)

    def _save_state(self, numbers: dict[int, int] | None = None) -> None:
        if numbers is None:
            numbers = {m: mem.trial.number for m, mem in self.members.items()}
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"pbt": self.pbt.state_dict(), "trials": numbers}))
        tmp.replace(self.state_path)
        best = self.pbt.best()
        if best is not None:
            self.study.set_user_attr("lmtune.pbt_best", {"member": best.member, "units": best.units,
                                                         "score": best.score, "schedule": best.schedule,
                                                         "trial": numbers.get(best.member)})

    def _ckpt_path(self, member: int, units: int) -> Path:
        number = self.members[member].trial.number
        return self.checkpoints.checkpoint_path(self.plan.paths.trial_dir(number), units)

    def _retain(self) -> None:
        """Give up every reported checkpoint the strategy can no longer hand out or resume from (the loop
        has the backend delete them); record the bytes of those kept. A checkpoint newer than its
        member's last report (a member that started over is writing that folder again) is kept. Under
        the lock."""
        keep = {self._ckpt_path(m, u) for m, u in self.pbt.checkpoints_needed()}
        reported = {self.plan.paths.trial_dir(mem.trial.number): self.pbt.member_state(m).units
                    for m, mem in self.members.items()}
        units = self.checkpoints.checkpoint_units
        gone = sorted(p for p, folder in self._reported.items()
                      if p not in keep and (units(p) or 0) <= reported.get(folder, 0))
        for p in gone:
            del self._reported[p]
        self._removable.extend(gone)
        self.study.set_user_attr("lmtune.checkpoint_bytes",
                                 sum(self.checkpoints.checkpoint_bytes(p) for p in self._reported))
