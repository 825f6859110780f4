"""A user's own training program as the trial (``task.type: script``), behind the same `TrialHandle`.

The program is started with ``LMTUNE_TRIAL`` naming its frozen trial file; ``lmtune.trial()`` reads it.
Its stdout and stderr go to the trial's ``trainer.log``, so nothing the program (or ``torchrun``, or a
library) prints can be taken for a protocol line. The protocol travels through files in the trial folder
(`lmtune.script` writes and reads the other side), which every process of a multi-process launch can
reach through its environment:

* ``events.jsonl``: rank 0 appends one `lmtune.protocol` event per line;
* ``decisions/N.json``: the driver's answer to the N-th evaluation (0-based), written atomically; every
  rank waits for the same file, so every rank gets the same decision.

When the program exits without an ``end`` event, its end is written here: exit code 0 ends the trial
with its last reported metrics (stopped by the decision it was given, if any); any other code is a failure
with the log's last lines as the reason.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from lmtune.procs import die_with_parent
from lmtune.protocol import SCRIPT_DECISIONS as DECISIONS
from lmtune.protocol import SCRIPT_DRIVER_ENV as ENV_DRIVER
from lmtune.protocol import SCRIPT_EVENTS as EVENTS
from lmtune.protocol import SCRIPT_TRIAL_ENV as ENV_TRIAL
from lmtune.protocol import Continue, Decision, Ending, TrialSpec, decode_event, encode_decision, script_end

POLL_S = 0.05


def program(command: list[str]) -> list[str]:
    """The command with its program found: ``python`` is the interpreter running lmtune (its virtual
    environment), and a bare name (``torchrun``, ``accelerate``) is looked up beside that interpreter
    first, then on PATH."""
    head, *rest = command
    if head in ("python", "python3"):
        return [sys.executable, *rest]
    if os.sep not in head:
        beside = Path(sys.executable).parent / head
        if beside.is_file() and os.access(beside, os.X_OK):
            return [str(beside), *rest]
        found = shutil.which(head)
        if found:
            return [found, *rest]
    return [head, *rest]


FREE_PORT = "{free_port}"


def with_free_port(command: list[str]) -> list[str]:
    """``{free_port}`` in ``task.command`` becomes a port free on this machine when the trial starts (the same
    one wherever it appears in the command): ``[torchrun, --master-port, "{free_port}", train.py]`` lets
    several workers launch multi-process trials at once without asking for the same rendezvous port."""
    if not any(FREE_PORT in part for part in command):
        return list(command)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    return [part.replace(FREE_PORT, port) for part in command]


def tool_launch(spec: TrialSpec, folder: Path, env: dict[str, str], tool: dict[str, Any]
                ) -> tuple[list[str], dict[str, str]]:
    """A tool trial's command (`lmtune.integrations.tools.deliver`) and environment: the folder whose
    ``sitecustomize`` attaches lmtune to the tool's Trainer (`lmtune.integrations.attach`) first on
    ``PYTHONPATH``, the hub kept offline (the tool's data and model are local), the tool's telemetry off."""
    from lmtune.integrations import deliver, write_site

    data_dir = _write_splits(spec, folder) if spec.extra.get("data") else None
    command = deliver(spec, tool=str(tool["name"]), folder=folder, config=tool.get("config"),
                      tool_args=tool.get("args") or {}, final_args=tool.get("final_args") or {}, data_dir=data_dir)
    site = write_site(folder)
    path = os.pathsep.join(p for p in (str(site), env.get("PYTHONPATH", "")) if p)
    # no telemetry from the tool (axolotl reports usage to a server unless told not to), as lmtune sends none
    quiet = {"DO_NOT_TRACK": "1", "AXOLOTL_DO_NOT_TRACK": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}
    return command, {**quiet, **env, "PYTHONPATH": path, "HF_HUB_OFFLINE": env.get("HF_HUB_OFFLINE", "1"),
                     "HF_DATASETS_OFFLINE": env.get("HF_DATASETS_OFFLINE", "1")}


def _write_splits(spec: TrialSpec, folder: Path) -> Path:
    """task.dataset's splits, as the study sized them, written as ``train/validation/test.jsonl`` in
    ``folder/data`` for the tool to load (``{data_dir}`` in task.command: ``load_dataset`` reads such a
    folder, split names from the file names)."""
    from lmtune.data import DataSpec, load_splits

    out = folder / "data"
    out.mkdir(parents=True, exist_ok=True)
    for split, rows in load_splits(DataSpec(**spec.extra["data"])).items():
        (out / f"{split}.jsonl").write_text("".join(json.dumps(r, default=str) + "\n" for r in rows), encoding="utf-8")
    return out


def _in_own_group() -> None:  # runs in the child between fork and exec
    os.setsid()  # the program and everything it starts (torchrun's ranks) are killed together
    die_with_parent()


class ScriptProcess:
    """A running script trial; the same surface as `lmtune.execution.local.TrialProcess`."""

    def __init__(self, spec: TrialSpec, spec_path: Path, log_path: Path, env: dict[str, str]) -> None:
        self.spec = spec
        self.log_path = log_path
        self.folder = spec_path.parent
        for stale in (self.folder / EVENTS, self.folder / DECISIONS):  # a re-run of this trial folder
            if stale.is_dir():
                shutil.rmtree(stale)
            elif stale.exists():
                stale.unlink()
        (self.folder / DECISIONS).mkdir(parents=True)
        (self.folder / EVENTS).touch()
        self._log: IO[str] = open(log_path, "a")  # noqa: SIM115 (closed in wait())
        env = {**env, ENV_TRIAL: str(spec_path.resolve()), ENV_DRIVER: str(os.getpid()), "PYTHONUNBUFFERED": "1"}
        command = spec.command
        tool = spec.extra.get("tool")
        try:
            if tool is not None:  # a tool tuned unedited: its settings written its way, lmtune attached to its Trainer
                command, env = tool_launch(spec, self.folder, env, tool)
        except (OSError, ValueError) as exc:
            self._log.write(f"lmtune: could not write the trial's settings for the tool: {exc}\n")
            command = [sys.executable, "-c", "raise SystemExit(2)"]
        try:
            self.proc = subprocess.Popen(program(with_free_port(command)), cwd=spec.workdir or None, env=env,
                                         stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
                                         preexec_fn=_in_own_group if sys.platform == "linux" else None)
        except OSError as exc:
            self._log.write(f"lmtune: could not start task.command {spec.command}: {exc}\n")
            self._log.flush()
            self.proc = subprocess.Popen([sys.executable, "-c", "raise SystemExit(127)"])
        self._evals = 0
        self._answer: Decision = Continue()
        self._last: dict[str, Any] | None = None

    # -- events ------------------------------------------------------------------------------------
    def events(self) -> Iterator[dict[str, Any]]:
        ended = False
        with open(self.folder / EVENTS) as inbox:
            pending = ""
            while True:
                chunk = inbox.read()
                if chunk:
                    pending += chunk
                    *lines, pending = pending.split("\n")
                    for line in lines:
                        event = decode_event(line)
                        if event is None:
                            continue
                        if event["event"] == "eval":
                            self._last = event
                        if event["event"] == "end":
                            event = _checked_end(event, self.spec)
                        ended = ended or event["event"] in ("end", "error")
                        yield event
                    continue
                if self.proc.poll() is not None:
                    rest = inbox.read()
                    if rest:
                        pending += rest
                        continue
                    break
                time.sleep(POLL_S)
        if not ended:
            end = self._ending(self.proc.wait())
            yield _checked_end(end, self.spec) if end["event"] == "end" else end

    def _ending(self, code: int) -> dict[str, Any]:
        """The end (or error) of a program that exited without saying how it ended."""
        if code != 0:
            return {"event": "error", "kind": "exception",
                    "reason": f"task.command exited with code {code}; last lines of {self.log_path}: "
                              f"{_tail(self.log_path)}"}
        return script_end(self._last or {}, self._answer)

    # -- decisions ---------------------------------------------------------------------------------
    def send(self, decision: Decision) -> None:
        self._answer = decision
        target = self.folder / DECISIONS / f"{self._evals}.json"
        self._evals += 1
        tmp = target.with_suffix(".tmp")
        with contextlib.suppress(OSError):
            tmp.write_text(json.dumps({"decision": encode_decision(decision)}))
            tmp.replace(target)

    def kill(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(OSError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            with contextlib.suppress(OSError):
                self.proc.kill()

    def wait(self) -> int:
        code = self.proc.wait()
        if code == 0 or self.proc.poll() is not None:  # the group may outlive its leader: end it too
            with contextlib.suppress(OSError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        self._log.close()
        return code


def _checked_end(end: dict[str, Any], spec: TrialSpec) -> dict[str, Any]:
    """The script's end, or the error it amounts to.

    A script that never read a setting it had to apply (a searched parameter, a training field the config
    sets, a proxy stage's ``trial.model``) trained the same whatever its value: its score would be recorded
    against settings that changed nothing, so the trial fails, naming them. A final run that asked for the
    test split's scores and got none fails too, rather than be compared on nothing."""
    unread = [str(n) for n in end.get("unread") or []]
    if unread:
        model = (" A proxy stage's trials train proxy.model: load the model from trial.model."
                 if "trial.model" in unread else "")
        return {"event": "error", "kind": "config",
                "reason": f"the script never read {', '.join(unread)} (searched, set in the training section, "
                          "a final run's seed, or a proxy stage's model): a setting that changes nothing is "
                          "refused. Read it through trial.params (LmtuneCallback.arguments() reads the "
                          f"TrainingArguments fields), or remove it from search.space and the training section.{model}"}
    if spec.evaluate_test and not Ending.of(end).stopped and not end.get("test_metrics"):
        return {"event": "error", "kind": "config",
                "reason": "this final run asks for the test split's scores (trial.evaluate_test) but the script "
                          "gave none: call trial.finish(test_metrics=...) when trial.evaluate_test is true"}
    return end


# a line that names why a program died: a Python exception, a C++ abort, a signal's report
_CAUSE = re.compile(r"^(\s*[\w.]*(Error|Exception|Interrupt|Exit)\b.*|terminate called.*|.*Killed.*"
                    r"|.*Segmentation fault.*)$")

# the launchers' own exceptions, which only say that a rank failed
_LAUNCHERS = ("ChildFailedError", "CalledProcessError")


def _tail(path: Path, lines: int = 5) -> str:
    """The log's last ``lines`` lines, and before them the first and the last lines that name a cause when the
    tail does not hold one (a launcher such as torchrun or accelerate ends the log with its own summary, which hides
    the rank's exception)."""
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    tail = text[-lines:]
    causes = [line.strip() + (" " + text[i + 1].strip() if line.startswith("terminate called") else "")
              for i, line in enumerate(text[:-lines])
              if _CAUSE.match(line) and not any(w in line for w in _LAUNCHERS)]
    named = list(dict.fromkeys([causes[0], causes[-1]] if causes else []))  # the first, often the root, and the last
    lead = (f"cause: {' ... then: '.join(c[:300] for c in named)} | ... | "
            if named and not any(_CAUSE.match(line) for line in tail) else "")
    return (lead + " | ".join(tail)[-1500:]) or "(empty)"
