"""The script side of a script trial (``task.type: script``): ``trial = lmtune.trial()`` in the user's own
training program. See docs/bring-your-own-trainer.md.

``lmtune tune`` starts ``task.command`` once per trial with ``LMTUNE_TRIAL`` naming the trial's frozen file
(`lmtune.protocol.TrialSpec`); every process of the launch (each torchrun / accelerate rank) reads the same
file, so every rank trains with the same settings and nothing is sampled here. The script:

* reads its settings: ``trial.params`` (every training field with the search's values applied, and
  the script's own parameters; ``trial.hparams`` is the same mapping), ``trial.total_examples`` (how
  many training examples this trial trains on, from its epochs / max_steps), ``trial.examples_per_unit``
  (evaluate at multiples of this many examples, so trials are compared at equal data),
  ``trial.output_dir``, ``trial.model``, ``trial.splits()``;
* may call ``trial.progress(examples=n)`` as often as it likes (every step): the trial's progress bar
  moves from the first step, not the first evaluation (rank 0 sends at most one event per
  `PROGRESS_EVERY_S`; nothing waits, nothing is decided on it);
* calls ``decision = trial.report(metrics, examples=n)`` after each evaluation: rank 0 sends it, every rank
  waits for the same answer (`Continue`, or `Stop` when the pruner or the budget ends the trial);
* ends normally (or calls ``trial.finish(...)`` to say more: test metrics, where it saved the model).

Under PBT (``search.strategy: pbt``) the script also saves its whole training state at every *ready
point*: ``folder = trial.checkpoint_dir(examples)`` is not None there; the script writes its model,
optimizer, schedule and position into it and passes ``checkpoint=folder`` to that evaluation's
``report``. A `Pause` answer ends the process; lmtune starts the script again with
``trial.resume_from`` (its own checkpoint, or after an exploit another member's) and ``trial.params``
(after an exploit, the explored settings): the script loads that state, applies the new settings and goes
on from ``trial.resume_examples``. Nothing is ever changed inside a running script.

Every parameter the search draws, every training field the config sets to other than lmtune's default,
and in final runs the seed, must be read by the script
(through ``trial.params`` / ``trial.hparams`` or the helpers that read them): a trial whose script ignored
one is failed with its name, because its score would be recorded against settings that changed nothing.

Standard library only (plus `lmtune.data` when ``splits()`` is called): it runs inside the user's program.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from lmtune.errors import LmtuneError
from lmtune.protocol import (
    CHECKPOINT_MANIFEST,
    PROGRESS_EVERY_S,
    SCRIPT_DECISIONS,
    SCRIPT_DRIVER_ENV,
    SCRIPT_EVENTS,
    SCRIPT_TRIAL_ENV,
    Continue,
    Decision,
    Exploit,
    Pause,
    Stop,
    TrialSpec,
    checkpoint_folder,
    decode_decision,
    encode_event,
    progress_event,
    script_end,
)

__all__ = ["Trial", "trial"]

_POLL_S = 0.05
# reading one of these derived values reads the training fields it was computed from
_DERIVED = {"total_examples": ("epochs", "max_steps"), "examples_per_unit": ("eval_every",)}
_MODEL = "trial.model"  # what `unread` names when a proxy stage's script never read trial.model


class _Tracked(Mapping[str, Any]):
    """A read-only mapping that remembers which keys were read (``[]``, ``get``, ``in`` does not count)."""

    def __init__(self, values: Mapping[str, Any], seen: set[str]) -> None:
        self._values = dict(values)
        self._seen = seen

    def __getitem__(self, key: str) -> Any:
        value = self._values[key]
        self._seen.add(key)
        return value

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._values!r})"


class Trial:
    """One trial as the script sees it; made by `trial()`."""

    def __init__(self, spec: TrialSpec, folder: Path | None, *, rank: int = 0) -> None:
        self.spec = spec
        self._folder = folder  # None: standalone (no driver); report() answers Continue
        self.rank = rank
        self._seen: set[str] = set()
        self._evals = 0
        self._units = 0
        self._last: dict[str, Any] = {}
        self._stopped: Decision | None = None
        self._ended = False
        self._t0 = time.monotonic()
        self._shown: float | None = None  # when the last progress event went out
        self.params: Mapping[str, Any] = _Tracked(spec.hparams, self._seen)
        """This trial's settings: every training field (the search's values applied) and the script's own
        parameters. Reads are tracked: see `unread`."""
        self.hparams: Mapping[str, Any] = self.params  # the name lmtune's trial file uses

    # -- settings --------------------------------------------------------------------------------
    @property
    def number(self) -> int:
        return self.spec.trial

    @property
    def model(self) -> str:
        """task.model resolved to a folder (a built-in like builtin:minilm-l6 becomes its path); "" if unset. In a
        proxy stage it is proxy.model, and a script that never reads it fails (it trained the target instead)."""
        self._seen.add(_MODEL)
        return self.spec.model

    @property
    def output_dir(self) -> Path:
        """This trial's own folder (write checkpoints and the model here)."""
        return Path(self.spec.output_dir)

    @property
    def total_examples(self) -> int:
        """Train on this many examples (the trial's epochs / max_steps, at its own batch size)."""
        self._seen.update(_DERIVED["total_examples"])
        return self.spec.total_examples

    @property
    def examples_per_unit(self) -> int:
        """Evaluate (and report) every this many training examples: the same in every trial."""
        self._seen.update(_DERIVED["examples_per_unit"])
        return self.spec.examples_per_unit

    @property
    def seed(self) -> int:
        return int(self.hparams["seed"])

    @property
    def evaluate_test(self) -> bool:
        """A final run: score the test split at the end and pass it to ``finish(test_metrics=...)``."""
        return self.spec.evaluate_test

    @property
    def save_model(self) -> bool:
        """A final run: save the trained model and pass its folder to ``finish(model_dir=...)``."""
        return self.spec.save_model

    @property
    def resume_from(self) -> Path | None:
        """PBT: the checkpoint folder to continue from (this member's own, or another member's after an
        exploit), or None for a fresh start. Load the model, optimizer and schedule state from it, then
        apply ``trial.params`` (they may differ from the checkpoint's: the explored settings)."""
        return Path(self.spec.resume_from) if self.spec.resume_from else None

    @property
    def resume_examples(self) -> int:
        """The training examples seen at ``resume_from`` (0 for a fresh start): go on from there and keep
        reporting the total."""
        if not self.spec.resume_from:
            return 0
        try:
            return int(json.loads((Path(self.spec.resume_from) / CHECKPOINT_MANIFEST).read_text())["examples"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise LmtuneError(f"trial.resume_examples: {self.spec.resume_from} is no checkpoint a script trial "
                              f"wrote ({exc})") from None

    def checkpoint_dir(self, examples: int) -> Path | None:
        """PBT: where to save the whole training state before reporting the evaluation after ``examples``
        training examples, when that evaluation is a ready point (a multiple of the strategy's ready
        interval, or the trial's end); None otherwise (and always outside PBT). Pass the folder to
        ``report(..., checkpoint=folder)`` once everything is written."""
        every = self.spec.checkpoint_every
        if not every:
            return None
        units = self._units_at(examples)
        if units % every and examples < self.spec.total_examples:
            return None
        return checkpoint_folder(self.output_dir, units)

    def _units_at(self, examples: int) -> int:
        return max(self._units, max(1, round(examples / max(1, self.spec.examples_per_unit))))

    @property
    def is_reporter(self) -> bool:
        """True on the process that sends reports (rank 0)."""
        return self.rank == 0

    @property
    def unread(self) -> list[str]:
        """The parameters this trial must apply that the script has not read yet."""
        from lmtune.config import applies

        hparams = self.spec.hparams
        must = set(self.spec.must_read) | ({_MODEL} if self.spec.extra.get("proxy_model") else set())
        return sorted(n for n in must - self._seen if applies(n, hparams))

    def mark_read(self, *names: str) -> None:
        """Say that the script applied these settings without reading them here (e.g. a helper of its own)."""
        self._seen.update(names)

    def splits(self) -> dict[str, list[dict[str, Any]]]:
        """task.dataset's train / validation / test rows, sized and shuffled as the study's config says
        (the rows lmtune counted ``total_examples`` from)."""
        data = self.spec.extra.get("data")
        if not data:
            raise LmtuneError("trial.splits(): the study's config names no task.dataset; set task.dataset, or "
                              "load your data in the script")
        from lmtune.data import DataSpec, load_splits

        return load_splits(DataSpec(**data))

    # -- reporting ---------------------------------------------------------------------------------
    def report(self, metrics: Mapping[str, float], *, examples: int, tokens: int | None = None,
               checkpoint: str | Path | None = None) -> Decision:
        """Report an evaluation after ``examples`` training examples (in all, counting those before a
        resume); returns the scheduler's decision. ``checkpoint``: under PBT, the folder
        ``checkpoint_dir(examples)`` named, with the whole training state saved in it (required there).

        Only rank 0 sends; every rank waits for the same answer. After a `Stop` or `Pause` the script
        should end (later reports send nothing and answer the same again)."""
        if self._stopped is not None:
            return self._stopped
        if self.spec.extra.get("count_tokens") and not tokens:
            raise LmtuneError("trial.report: this study has budget.max_train_tokens, so every report counts the "
                              "train tokens: pass tokens=n, the real (non-padding) tokens trained so far in all "
                              "(LmtuneCallback does it from the Trainer's num_input_tokens_seen)")
        wanted = self.checkpoint_dir(examples)
        self._units = self._units_at(examples)
        point = {"step": self._evals + 1, "units": self._units, "examples": int(examples),
                 "tokens": int(tokens or 0), "metrics": {k: float(v) for k, v in metrics.items()}}
        self._last = point
        event: dict[str, Any] = {"event": "eval", **point}
        if wanted is not None and self.is_reporter:
            event["checkpoint"] = str(self._seal(wanted, checkpoint, point))
        if self.is_reporter:
            self._send({**event, "elapsed_s": time.monotonic() - self._t0, "unread": self.unread})
        decision: Decision = Continue()
        if self.spec.interactive and self._folder is not None:
            decision = self._answer(self._evals)
        self._evals += 1
        if isinstance(decision, Exploit):  # the driver answers a script's exploit with a pause and a restart
            raise LmtuneError("trial.report: an exploit order reached a script trial; this lmtune driver is "
                              "older than the script's lmtune")
        if isinstance(decision, Stop | Pause):
            self._stopped = decision
        return decision

    def progress(self, examples: int, tokens: int | None = None) -> None:
        """Say how far training got between evaluations: ``examples`` trained so far in all (counting those
        before a resume, as in `report`), and their real ``tokens`` if the script counts them. Shown only
        (the trial's progress bar and the study's ETA); it never waits for the driver and is never an
        evaluation: pruning, budgets and PBT go by `report` alone.

        Call it as often as you like, every step: rank 0 sends the first call and then at most one per
        ``PROGRESS_EVERY_S`` seconds (the rest return at once); other ranks, a standalone trial and a
        trial already told to stop send nothing."""
        if not self.is_reporter or self._folder is None or self._stopped is not None or self._ended:
            return
        now = time.monotonic()
        if self._shown is not None and now - self._shown < PROGRESS_EVERY_S:
            return
        self._shown = now
        event = progress_event(examples=examples, tokens=tokens or 0, total_examples=self.spec.total_examples)
        with contextlib.suppress(OSError):  # display only: a lost line must not end the training
            self._send(event)

    def tool_args(self, values: Mapping[str, Any]) -> None:
        """Record what a tool's Trainer actually runs with (a flat JSON object, HF's own key names) in the trial's
        record (attr ``tool_args``): sent by rank 0, once the Trainer starts (`lmtune.integrations.attach`)."""
        if self.is_reporter and self._folder is not None:
            self._send({"event": "tool_args", "values": dict(values)})

    @property
    def should_stop(self) -> bool:
        """True once a report was answered with Stop."""
        return self._stopped is not None

    def finish(self, metrics: Mapping[str, float] | None = None, *, test_metrics: Mapping[str, float] | None = None,
               model_dir: str | Path | None = None) -> None:
        """End the trial. ``metrics``: the trial's result (default: the last report's metrics);
        ``test_metrics``: the test split's scores (asked for by final runs, ``trial.evaluate_test``);
        ``model_dir``: where the script saved the model (``trial.save_model``). Without a call, a
        script that exits with code 0 ends with its last report."""
        if self._ended:
            return
        self._ended = True
        if not self.is_reporter:
            return
        given = {k: float(v) for k, v in metrics.items()} if metrics is not None else None
        end = script_end(self._last, self._stopped, metrics=given, unread=self.unread)
        end.update(train_time_s=time.monotonic() - self._t0, eval_time_s=0.0)
        if test_metrics is not None:
            end["test_metrics"] = {k: float(v) for k, v in test_metrics.items()}
        if model_dir is not None:
            end["model_dir"] = str(model_dir)
        self._send(end)

    def _seal(self, wanted: Path, given: str | Path | None, point: dict[str, Any]) -> Path:
        """Mark the checkpoint the script saved at a ready point as complete (its manifest names every file
        in it, and the position), so the driver may resume from it or hand it to another member."""
        if given is None:
            raise LmtuneError(f"trial.report: examples={point['examples']} is a PBT ready point; save the training "
                              f"state in trial.checkpoint_dir({point['examples']}) = {wanted} and pass "
                              "checkpoint=that folder")
        folder = Path(given)
        if folder.resolve() != wanted.resolve():
            raise LmtuneError(f"trial.report: checkpoint={folder}, but this ready point's folder is {wanted} "
                              f"(trial.checkpoint_dir({point['examples']})); PBT finds checkpoints there")
        files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                       if p.is_file() and p.name != CHECKPOINT_MANIFEST)
        if not files:
            raise LmtuneError(f"trial.report: checkpoint folder {folder} is empty; save the training state in it "
                              "before reporting")
        tmp = folder / (CHECKPOINT_MANIFEST + ".tmp")
        tmp.write_text(json.dumps({"files": files, "examples": point["examples"], "units": point["units"],
                                   "tokens": point["tokens"], "written_by": "script"}))
        tmp.replace(folder / CHECKPOINT_MANIFEST)
        return folder

    # -- the file channel ------------------------------------------------------------------------------
    def _send(self, event: dict[str, Any]) -> None:
        if self._folder is None:
            return
        with open(self._folder / SCRIPT_EVENTS, "a") as out:
            out.write(encode_event(event) + "\n")
            out.flush()

    def _answer(self, index: int) -> Decision:
        assert self._folder is not None
        path = self._folder / SCRIPT_DECISIONS / f"{index}.json"
        driver = int(os.environ.get(SCRIPT_DRIVER_ENV, "0") or 0)
        while True:
            try:
                return decode_decision(json.loads(path.read_text())["decision"])
            except FileNotFoundError:
                pass
            except (ValueError, KeyError):  # written atomically; unreadable means damaged: stop
                return Stop()
            if driver and not _alive(driver):
                return Stop()  # the driver is gone: stop rather than train unobserved
            time.sleep(_POLL_S)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_TIDYING = False


def tidy_exit_of_ranks() -> None:
    """On a multi-process launch (torchrun, accelerate), free the DDP reducers and destroy the process group
    when the script ends, once per process. `trial` calls it under a launcher (every HF callback's trial comes
    from it).

    A rank of a gloo run (CPU) sometimes aborted at interpreter teardown, after its training had finished
    ("terminate called without an active exception", exit -6), and the launcher then reported the whole trial
    failed. It is torch's: a bare torchrun script that trains a DDP model a few steps and returns aborted in 6
    of 20 runs here; destroying the group alone did not help while the DDP model was alive (5 of 16); freeing
    its reducer first did (0 of 40). A script (or the HF Trainer) keeps its DDP model referenced until the
    interpreter tears down, so the reducers are freed at exit, before that."""
    global _TIDYING
    if _TIDYING:
        return
    _TIDYING = True
    import atexit
    import sys

    def tidy() -> None:
        torch = sys.modules.get("torch")  # only what the script imported: this module never imports torch
        if torch is None:
            return
        import gc

        dist = torch.distributed
        ddp = torch.nn.parallel.DistributedDataParallel
        for obj in gc.get_objects():
            with contextlib.suppress(Exception):
                if isinstance(obj, ddp) and hasattr(obj, "reducer"):
                    del obj.reducer
        gc.collect()
        if dist.is_available() and dist.is_initialized():
            with contextlib.suppress(Exception):  # best effort at exit: the trial's results are already sent
                dist.destroy_process_group()

    atexit.register(tidy)


def _rank() -> int:
    for name in ("RANK", "LOCAL_RANK"):  # torchrun / accelerate set RANK; some launchers only LOCAL_RANK
        value = os.environ.get(name)
        if value is not None and value.strip().isdigit():
            return int(value)
    return 0


def trial(*, defaults: Mapping[str, Any] | None = None, train_rows: int | None = None) -> Trial:
    """The trial this process runs under ``lmtune tune`` (``task.type: script``).

    Outside lmtune (``LMTUNE_TRIAL`` not set) it raises `LmtuneError`, unless ``defaults`` is given: then
    the script runs standalone with those settings (training fields; the rest take lmtune's defaults),
    reports go nowhere and every decision is `Continue`; ``train_rows`` (the examples in one epoch) sets
    ``total_examples`` from ``epochs`` when ``max_steps`` is not given."""
    world = os.environ.get("WORLD_SIZE", "1").strip()
    if world.isdigit() and int(world) > 1:  # under torchrun / accelerate: see tidy_exit_of_ranks
        tidy_exit_of_ranks()
    path = os.environ.get(SCRIPT_TRIAL_ENV)
    if not path:
        if defaults is None:
            raise LmtuneError(f"lmtune.trial(): not running under lmtune ({SCRIPT_TRIAL_ENV} is not set). Run "
                              "this script through `lmtune tune CONFIG` with task.type: script, or pass "
                              "defaults={...} to run it on its own")
        return _standalone(defaults, train_rows)
    try:
        spec = TrialSpec.read(path)
    except (OSError, ValueError, TypeError) as exc:
        raise LmtuneError(f"lmtune.trial(): cannot read the trial file {path}: {exc}") from None
    return Trial(spec, Path(path).parent, rank=_rank())


def _standalone(defaults: Mapping[str, Any], train_rows: int | None) -> Trial:
    from pydantic import ValidationError

    from lmtune.config import DEFAULT_EVAL_EVERY, TrainingSection

    try:
        hparams = TrainingSection(**dict(defaults)).model_dump()
    except ValidationError as exc:
        raise LmtuneError(f"lmtune.trial(defaults=...): {exc}") from None
    if hparams["max_steps"] is not None:
        total = int(hparams["max_steps"]) * int(hparams["batch_size"])
    elif train_rows:
        total = math.ceil(float(hparams["epochs"]) * train_rows)
    else:
        raise LmtuneError("lmtune.trial(defaults=...): give max_steps in defaults, or train_rows= (the examples in "
                          "one epoch), so the trial's length is known")
    spec = TrialSpec(trial=0, model="", task_type="script", data_cache="", hparams=hparams,
                     examples_per_unit=(hparams["eval_every"] or DEFAULT_EVAL_EVERY) * hparams["batch_size"],
                     total_examples=total,
                     output_dir=str(Path("lmtune-standalone").resolve()), interactive=False)
    return Trial(spec, None, rank=_rank())
