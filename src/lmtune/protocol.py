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
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

__all__ = ["CHECKPOINT_MANIFEST", "PROGRESS_EVERY_S", "SCRIPT_DECISIONS", "SCRIPT_DRIVER_ENV", "SCRIPT_EVENTS",
           "SCRIPT_TRIAL_ENV", "Continue", "Decision", "Ending", "Exploit", "Outcome", "Pause", "Stop", "TrialSpec",
           "checkpoint_complete", "checkpoint_folder", "decode_decision", "decode_event", "encode_decision",
           "encode_event", "failure_reason", "progress_event", "script_end"]


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
    save_adapter: bool = False      # LoRA studies: save the trained adapter to output_dir/adapter at the end
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
    """End the trial now (recorded as pruned by whoever decided it)."""


@dataclass(frozen=True)
class Pause:
    """PBT: exit now; the driver resumes this run later from the checkpoint it just saved."""


@dataclass(frozen=True)
class Exploit:
    """PBT: continue from the donor's exact checkpoint with ``hparams`` (the full training section)."""

    checkpoint: str
    hparams: dict[str, Any]


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
        return json.dumps({"exploit": {"checkpoint": decision.checkpoint, "hparams": decision.hparams}})
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
        return Exploit(checkpoint=str(order["checkpoint"]), hparams=dict(order["hparams"]))
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
            "train_tokens": last.get("tokens", 0), "stopped_by": {Stop: "pruned", Pause: "paused"}.get(type(decision)),
            "unread": last.get("unread", []) if unread is None else unread}


class Ending(Enum):
    """How a trainer run ended, as its end event says. The wire carries it as ``stopped_by`` (absent or
    null: the run trained its whole length); `Ending.of` is the one place that reads it."""

    COMPLETED = "completed"
    PRUNED = "pruned"  # a Stop decision (the pruner, or the budget)
    PAUSED = "paused"  # a Pause decision: an exact checkpoint was saved; the run is resumed later
    EARLY_STOPPED = "early_stopping"  # training.early_stopping_patience
    NO_END = "no end event"  # the trainer failed or died before reporting an end

    @classmethod
    def of(cls, end: Mapping[str, Any] | None) -> Ending:
        if end is None:
            return cls.NO_END
        wire = end.get("stopped_by")
        return cls.COMPLETED if wire is None else cls(wire)


def checkpoint_folder(output_dir: str | Path, units: int) -> Path:
    """Where a trial saves its exact checkpoint after ``units`` evaluation units: the one definition of the
    layout (``<output_dir>/checkpoints/uNNNNN``) for trainers, scripts and schedulers."""
    return Path(output_dir) / "checkpoints" / f"u{units:05d}"


@dataclass
class Outcome:
    """How one trainer run ended: its evaluations, its end or error event, its exit code."""

    curve: list[dict[str, Any]] = field(default_factory=list)
    end: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    code: int = 0
    log_path: str = ""


def failure_reason(outcome: Outcome) -> str:
    """Why a run that did not end normally failed, worded once for every caller ("" when it ended)."""
    if outcome.error is not None:
        return f"{outcome.error.get('kind')}: {outcome.error.get('reason')}"
    if outcome.end is None:
        return (f"trainer exited with code {outcome.code} and no result (killed or crashed); "
                f"see {outcome.log_path}")
    return ""
