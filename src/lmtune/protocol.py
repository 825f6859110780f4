"""The trial protocol, shared by the driver (``tuner``), the backends (``execution``) and the trainers
(``training``): the frozen trial file, the events a trainer reports, the decisions the driver answers
with, and the one wire format both travel in (JSON lines), encoded and decoded only here.

A trainer process:
  → {"event": "start", ...}                      once the model is loaded
  → {"event": "progress", "examples": n, ...}    after the first step, then at most every PROGRESS_EVERY_S
                                                 (`progress_event`; display only: never answered, never an
                                                 evaluation)
  → {"event": "eval", "units": u, ...}           after each evaluation; when the spec is interactive it
  ← one decision line (`encode_decision`)        then waits for the driver's answer
  → {"event": "end", ...} | {"event": "error", "kind": ..., "reason": ...}
Exit code 0 after "end" (also when stopped or paused), 1 after "error".

Decisions: `Continue`; `Stop` (pruned, or the budget is spent); `Pause` (PBT: exit now, resumed later
from the checkpoint just saved); `Exploit` (PBT: load the donor's exact checkpoint, switch to the new
settings, go on from the donor's position). Standard library only: every layer may import it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

__all__ = ["CHANGED_IN_PLACE", "CHECKPOINT_MANIFEST", "PROGRESS_EVERY_S", "SCRIPT_DECISIONS", "SCRIPT_DRIVER_ENV",
           "SCRIPT_EVENTS", "SCRIPT_TRIAL_ENV", "CheckpointRef", "Continue", "Decision", "End", "Ending", "Error",
           "Eval", "Event", "Exploit", "Note", "OomRetry", "Outcome", "Pause", "Progress", "Start", "Stop", "ToolArgs",
           "TrialSpec", "checkpoint_complete", "checkpoint_folder", "decode_decision", "decode_event",
           "encode_decision", "encode_event", "failure_reason", "progress_event", "read_event", "script_end"]


@dataclass(frozen=True)
class TrialSpec:
    """The frozen trial file: everything a trainer process needs, decided by the driver alone.

    Trainers never see the study config or the search space, only this, so every process of a trial
    trains with exactly the same hyperparameters (no re-sampling in workers)."""

    trial: int
    model: str                      # folder or hub id, already resolved
    task_type: str                  # classification | causal_lm | script
    data_cache: str                 # folder written by lmtune.data.tokenized.build_cache
    hparams: dict[str, Any]         # the full training section with the trial's params applied
    examples_per_unit: int          # one evaluation unit = this many training examples (equal across trials)
    total_examples: int             # this trial's training length in examples (its epochs / max_steps)
    metric: str = "eval_accuracy"
    direction: str = "maximize"
    output_dir: str = "."
    device: str = "cpu"
    threads: int | None = None
    trust_remote_code: bool = False
    interactive: bool = True        # wait for the driver's decision after each evaluation
    evaluate_test: bool = False     # final runs: also score the test split at the end
    save_model: bool = False        # final runs: save the trained model to output_dir/model
    checkpoint_every: int = 0       # PBT: save an exact checkpoint at every multiple of this many units
                                    # (and at the end) before the evaluation is reported; 0 = never
    # the units a scheduler needs evaluated (halving: its rungs); a trainer may skip the evaluations between
    # them (lmtune's own does, unless early stopping counts evaluations), the end is always evaluated; an
    # evaluation past a skipped unit stands for it. Empty: every unit
    eval_units: list[int] = field(default_factory=list)
    save_adapter: bool = False      # LoRA studies: save the trained adapter to output_dir/adapter at the end
    measure_serving: bool = False   # report serve_params, serve_trainable_params (every evaluation) and
                                    # serve_latency_ms (lmtune.training.serving): a study objective needs them
    resume_from: str | None = None  # an exact checkpoint folder to continue from
    world_size: int = 1             # processes that train this trial data-parallel (execution.gpus_per_trial)
    shard_model: bool = False       # FSDP: the world_size processes each hold a shard of the weights
    # script trials (task.type: script): the user's command runs instead of lmtune's trainer, in workdir;
    # it reads this file through lmtune.trial() and reports through lmtune.script's file channel
    command: list[str] = field(default_factory=list)
    workdir: str = ""
    # what the script must read (trial.params / trial.hparams): the names search.space draws and the
    # training fields the config sets; a script that never reads one fails with the names
    must_read: list[str] = field(default_factory=list)
    # task.compute_metrics ("package.module:function" or "file.py:function") and where the driver found it
    # (its working folder, put first on the trainer's sys.path)
    compute_metrics: str | None = None
    compute_metrics_path: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def write(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=1, sort_keys=True))
        tmp.replace(path)

    @classmethod
    def read(cls, path: str | Path) -> TrialSpec:
        return cls(**json.loads(Path(path).read_text()))


# Script trials (task.type: script) talk through files in the trial folder instead of stdin/stdout, which
# every process of a multi-process launch (torchrun, accelerate) can reach: rank 0 appends events to
# SCRIPT_EVENTS; the answer to the N-th evaluation (0-based) is SCRIPT_DECISIONS/N.json, {"decision": line}.
SCRIPT_EVENTS = "events.jsonl"
SCRIPT_DECISIONS = "decisions"
SCRIPT_TRIAL_ENV = "LMTUNE_TRIAL"          # the frozen trial file's path
SCRIPT_DRIVER_ENV = "LMTUNE_DRIVER_PID"    # gone → the script stops rather than train unobserved


# -- decisions: driver → trainer ------------------------------------------------------------------
@dataclass(frozen=True)
class Continue:
    """Train on to the next evaluation."""


@dataclass(frozen=True)
class Stop:
    """End the trial now (recorded as pruned, or as stopped by the budget, by whoever decided it).
    ``reason`` is for people and records (a PBT member "reached max_units"); it does not travel."""

    reason: str = ""


@dataclass(frozen=True)
class Pause:
    """PBT: exit now; the driver resumes this run later from the checkpoint it just saved."""


@dataclass(frozen=True)
class CheckpointRef:
    """A checkpoint named by reference: whose it is (a trial; inside `lmtune.strategies.pbt`, a population
    member) and after how many evaluation units it was saved. Where it lies is the backend's business
    (`lmtune.execution.Checkpoints.checkpoint_path`)."""

    owner: int
    units: int


@dataclass(frozen=True)
class Exploit:
    """PBT: go on from the donor's exact checkpoint ``source`` with the settings ``hparams``.

    A strategy names the member and the searched settings; the scheduler that sends it to a trainer names
    the trial, the full training section, and ``checkpoint``, the folder the backend resolved the reference
    to (the trainer loads it; `encode_decision` refuses an unresolved exploit)."""

    source: CheckpointRef
    hparams: dict[str, Any]
    checkpoint: str = ""


Decision = Continue | Stop | Pause | Exploit

# Every trainer's checkpoint folder holds this JSON file, written last, naming the other files it needs
# (``"files": [...]``); lmtune's trainer also renames the whole folder into place when it is complete.
CHECKPOINT_MANIFEST = "progress.json"

# PBT: the settings lmtune's running trainer changes in place on an exploit or a replayed schedule
# (`lmtune.training.session.Session.set_hyperparameters`); a change of any other setting restarts the
# trainer from the checkpoint (answered with ``pause``), so the model is built with it
CHANGED_IN_PLACE = frozenset({"learning_rate", "weight_decay", "momentum", "max_grad_norm", "beta1", "beta2",
                              "eps", "lora_dropout"})


def checkpoint_complete(folder: str | Path) -> bool:
    """True when ``folder`` holds a whole checkpoint a trainer can resume from: its manifest and every
    file the manifest names (False: gone, or damaged by hand)."""
    try:
        files = json.loads((Path(folder) / CHECKPOINT_MANIFEST).read_text()).get("files", [])
    except (OSError, ValueError, AttributeError):
        return False
    return isinstance(files, list) and all((Path(folder) / str(name)).is_file() for name in files)


def encode_decision(decision: Decision) -> str:
    """One line (without the newline) for the trainer's stdin."""
    if isinstance(decision, Exploit):
        if not decision.checkpoint:
            raise ValueError(f"an exploit of {decision.source} was sent before its checkpoint was resolved")
        return json.dumps({"exploit": {"checkpoint": decision.checkpoint, "hparams": decision.hparams,
                                       "source": [decision.source.owner, decision.source.units]}})
    return {Continue: "continue", Stop: "stop", Pause: "pause"}[type(decision)]


def decode_decision(line: str) -> Decision:
    """The decision a trainer read. An empty line means the driver is gone: stop rather than train
    unobserved. Anything unreadable is an error, not a silent continue."""
    text = line.strip()
    if not text or text == "stop":
        return Stop()
    if text == "continue":
        return Continue()
    if text == "pause":
        return Pause()
    if text.startswith("{"):
        order = json.loads(text)["exploit"]
        owner, units = order.get("source") or (-1, -1)
        return Exploit(source=CheckpointRef(int(owner), int(units)), hparams=dict(order["hparams"]),
                       checkpoint=str(order["checkpoint"]))
    raise ValueError(f"unknown decision line from the driver: {text[:200]!r}")


# -- events: trainer → driver ---------------------------------------------------------------------
def encode_event(event: dict[str, Any]) -> str:
    """One JSON line (without the newline); numpy and torch scalars become floats."""
    return json.dumps(event, default=float)


# between evaluations a trainer says how far it got (the display's per-trial bars and ETA): after its first
# step, then at most this often, so a long run's events stay few and the channel cheap
PROGRESS_EVERY_S = 2.0


def progress_event(*, examples: int, tokens: int, total_examples: int) -> dict[str, Any]:
    """The progress event every trainer sends (lmtune's, a script's ``trial.progress``, `LmtuneCallback`):
    ``examples`` trained so far in all, their real ``tokens`` (0: not counted), and the run's planned
    ``total_examples``. The driver only shows it; it is never answered and never counts as an evaluation."""
    return {"event": "progress", "examples": int(examples), "tokens": int(tokens),
            "total_examples": int(total_examples)}


def decode_event(line: str) -> dict[str, Any] | None:
    """The event on a trainer's protocol line, or None for anything else a library printed there."""
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        event = json.loads(line)
    except json.JSONDecodeError:
        return None
    return event if isinstance(event, dict) and "event" in event else None


def script_end(last: dict[str, Any], decision: Decision | None, *, metrics: dict[str, float] | None = None,
               unread: list[str] | None = None) -> dict[str, Any]:
    """A script trial's end event, from its last report (``{}`` if none) and the last decision it was
    given: written by the script (``Trial.finish``) or, when it exited without one, by the driver."""
    chosen = last.get("metrics", {}) if metrics is None else metrics
    return {"event": "end", "metrics": chosen, "last_metrics": last.get("metrics", chosen),
            "step": last.get("step", 0), "units": last.get("units", 0), "examples": last.get("examples", 0),
            "train_tokens": last.get("tokens", 0), "stopped_by": _wire(Ending.after(decision)),
            "unread": last.get("unread", []) if unread is None else unread}


def _wire(ending: Ending | None) -> str | None:
    return None if ending is None else ending.wire


class Ending(Enum):
    """How a trainer run ended: the one vocabulary of endings for every scheduler and record.

    The wire carries it as the end event's ``stopped_by`` (absent or null: the run trained its whole
    length); `End.read` is the one place that reads it. ``BUDGET`` is a stop the study's budget decided
    (the trainer only hears ``Stop`` and says ``pruned``; the scheduler that sent it knows why), and
    ``FAILED`` a run with an error event or none at all (`Outcome.ending`)."""

    COMPLETED = "completed"
    PRUNED = "pruned"  # a Stop decision of the pruner
    PAUSED = "paused"  # a Pause decision: an exact checkpoint was saved; the run is resumed later
    EARLY_STOPPED = "early_stopping"  # training.early_stopping_patience
    BUDGET = "budget"  # a Stop decision because the budget is spent
    FAILED = "failed"  # an error event, or no end event (the trainer was killed or crashed)

    @property
    def wire(self) -> str | None:
        """The end event's (and the trial record's) ``stopped_by``: None for a run that trained its length."""
        return None if self is Ending.COMPLETED else self.value

    @property
    def stopped(self) -> bool:
        """Stopped by a decision (pruned, paused, the budget), so it has no final score of its own."""
        return self in (Ending.PRUNED, Ending.PAUSED, Ending.BUDGET)

    @classmethod
    def after(cls, decision: Decision | None) -> Ending | None:
        """How a trainer's run ends on the driver's answer: ``Stop`` → PRUNED, ``Pause`` → PAUSED; None (go
        on) for no answer, ``Continue`` or ``Exploit``. Every trainer words its end event with this."""
        return cls.PRUNED if isinstance(decision, Stop) else cls.PAUSED if isinstance(decision, Pause) else None

    @classmethod
    def of(cls, end: End | Mapping[str, Any] | None) -> Ending:
        """The ending an end event (typed or as read from the wire) says; FAILED for none."""
        if end is None:
            return cls.FAILED
        if isinstance(end, End):
            return end.ending
        wire = end.get("stopped_by")
        return cls.COMPLETED if wire is None else cls(wire)


# -- typed events: what the driver reads, decoded from the wire in one place (`read_event`) -----------
def _int(v: Any, default: int = 0) -> int:
    return int(v) if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) else default


def _opt_int(v: Any) -> int | None:
    return None if v is None else _int(v)


def _float(v: Any) -> float:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else 0.0


def _str(v: Any) -> str | None:
    return v if isinstance(v, str) else None


def _metrics(v: Any) -> dict[str, Any]:
    return {str(k): x for k, x in v.items()} if isinstance(v, Mapping) else {}


@dataclass(frozen=True)
class Start:
    """The trainer loaded its model and is about to take its first step: what precision and forward it runs."""

    precision: str | None = None
    precision_reason: str | None = None  # training.precision as set, or what `auto` chose and why
    forward: str | None = None           # which forward the training steps run, and why


@dataclass(frozen=True)
class Progress:
    """How far a run got between evaluations (display only: never answered, never an evaluation)."""

    examples: int = 0        # trained so far in all
    tokens: int = 0          # their real (non-padding) tokens (0: not counted)
    total_examples: int = 0  # the run's planned length


@dataclass(frozen=True)
class Eval:
    """One evaluation: where the run is (in optimizer steps, evaluation units, examples and real tokens)
    and what it scored; ``checkpoint`` names the exact checkpoint saved just before it (PBT), if any."""

    units: int
    metrics: dict[str, Any]
    step: int = 0
    examples: int = 0
    tokens: int = 0
    checkpoint: str | None = None

    def point(self) -> dict[str, Any]:
        """The curve entry a trial record keeps for this evaluation."""
        return {"step": self.step, "units": self.units, "examples": self.examples, "tokens": self.tokens,
                "metrics": dict(self.metrics)}


@dataclass(frozen=True)
class End:
    """How a run ended (`Ending`) and what it had trained and scored then."""

    ending: Ending = Ending.COMPLETED
    metrics: dict[str, Any] = field(default_factory=dict)       # the scores it reports (best point under
    last_metrics: dict[str, Any] = field(default_factory=dict)  # early stopping; the last one otherwise)
    test_metrics: dict[str, Any] | None = None                  # final runs: the test split's scores
    step: int = 0
    units: int = 0
    examples: int = 0
    train_tokens: int = 0
    train_time_s: float = 0.0
    eval_time_s: float = 0.0
    precision: str | None = None
    precision_reason: str | None = None
    forward: str | None = None
    micro_batch_size: int | None = None
    model_dir: str | None = None     # final runs and `lmtune train`: where it saved the model
    adapter_dir: str | None = None   # LoRA studies: where it saved the adapter
    unread: list[str] = field(default_factory=list)  # script trials: settings the script never read

    @property
    def busy_s(self) -> float:
        """Seconds it trained and evaluated (the rest of its wall time is overhead)."""
        return self.train_time_s + self.eval_time_s


@dataclass(frozen=True)
class Error:
    """The trainer failed: ``kind`` (oom, exception, config, lost…) and the reason, for the trial record."""

    kind: str
    reason: str


@dataclass(frozen=True)
class OomRetry:
    """The trainer ran out of memory and goes on with half the micro-batch (same effective batch)."""

    micro_batch_size: int


@dataclass(frozen=True)
class ToolArgs:
    """A tool trial: what the tool's Trainer actually runs with (HF's key names), for the trial's record."""

    values: dict[str, Any]


@dataclass(frozen=True)
class Note:
    """Any other event a trainer sends (e.g. ``exploited``): shown in logs, never decided on."""

    kind: str
    data: dict[str, Any]


Event = Start | Progress | Eval | End | Error | OomRetry | ToolArgs | Note


def read_event(ev: Mapping[str, Any]) -> Event:
    """The typed event of one decoded wire event (``{"event": kind, ...}``): the one reader of its fields.
    Missing or malformed numbers read as 0 (or None), an unknown ``stopped_by`` as a failure's ending."""
    kind = ev.get("event")
    if kind == "eval":
        return Eval(units=_int(ev.get("units")), metrics=_metrics(ev.get("metrics")), step=_int(ev.get("step")),
                    examples=_int(ev.get("examples")), tokens=_int(ev.get("tokens")),
                    checkpoint=_str(ev.get("checkpoint")))
    if kind == "end":
        try:
            ending = Ending.of(ev)
        except ValueError:
            return Error("exception", f"the trainer ended with an unknown stopped_by {ev.get('stopped_by')!r}")
        test = ev.get("test_metrics")
        return End(ending=ending, metrics=_metrics(ev.get("metrics")),
                   last_metrics=_metrics(ev.get("last_metrics", ev.get("metrics"))),
                   test_metrics=_metrics(test) if isinstance(test, Mapping) else None,
                   step=_int(ev.get("step")), units=_int(ev.get("units")), examples=_int(ev.get("examples")),
                   train_tokens=_int(ev.get("train_tokens")), train_time_s=_float(ev.get("train_time_s")),
                   eval_time_s=_float(ev.get("eval_time_s")), precision=_str(ev.get("precision")),
                   precision_reason=_str(ev.get("precision_reason")), forward=_str(ev.get("forward")),
                   micro_batch_size=_opt_int(ev.get("micro_batch_size")), model_dir=_str(ev.get("model_dir")),
                   adapter_dir=_str(ev.get("adapter_dir")), unread=[str(n) for n in ev.get("unread") or []])
    if kind == "error":
        return Error(kind=str(ev.get("kind") or "exception"), reason=str(ev.get("reason") or ""))
    if kind == "start":
        return Start(precision=_str(ev.get("precision")), precision_reason=_str(ev.get("precision_reason")),
                     forward=_str(ev.get("forward")))
    if kind == "progress":
        return Progress(examples=_int(ev.get("examples")), tokens=_int(ev.get("tokens")),
                        total_examples=_int(ev.get("total_examples")))
    if kind == "oom_retry":
        return OomRetry(micro_batch_size=_int(ev.get("micro_batch_size")))
    if kind == "tool_args":
        return ToolArgs(values=_metrics(ev.get("values")))
    return Note(kind=str(kind), data={k: v for k, v in ev.items() if k != "event"})


def checkpoint_folder(output_dir: str | Path, units: int) -> Path:
    """Where a trial saves its exact checkpoint after ``units`` evaluation units: the one definition of the
    layout (``<output_dir>/checkpoints/uNNNNN``) for trainers, scripts and schedulers."""
    return Path(output_dir) / "checkpoints" / f"u{units:05d}"


@dataclass
class Outcome:
    """How one trainer run went: its start, its evaluations (curve entries, `Eval.point`), its end or error
    event, its exit code."""

    curve: list[dict[str, Any]] = field(default_factory=list)
    start: Start | None = None  # its first start event (a resumed or restarted run sends one per process)
    end: End | None = None
    error: Error | None = None
    code: int = 0
    log_path: str = ""

    @property
    def ending(self) -> Ending:
        """How it ended; FAILED when the trainer reported an error or no end."""
        return Ending.FAILED if self.error is not None or self.end is None else self.end.ending


def failure_reason(outcome: Outcome) -> str:
    """Why a run that did not end normally failed, worded once for every caller ("" when it ended)."""
    if outcome.error is not None:
        return f"{outcome.error.kind}: {outcome.error.reason}"
    if outcome.end is None:
        return (f"trainer exited with code {outcome.code} and no result (killed or crashed); "
                f"see {outcome.log_path}")
    return ""
