"""Local executor: one trainer subprocess per trial, metrics relayed as JSON lines.

A process per trial means every trial's memory (CPU and GPU) goes back to the system when it ends,
whatever the libraries cached. Children die with the driver (PR_SET_PDEATHSIG on Linux), and a
child whose driver vanished stops at its next evaluation (stdin closes).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from lmtune.execution.checkpoints import FolderCheckpoints
from lmtune.execution.forkserver import ForkedTrial, ForkServer
from lmtune.execution.script import ScriptProcess
from lmtune.execution.threads import log, plan_threads
from lmtune.procs import die_with_parent
from lmtune.protocol import Decision, TrialSpec, decode_event, encode_decision

TRAINER = "lmtune.training.worker"  # the trainer entry point (`python -m TRAINER TRIAL_FILE`)


class TrialProcess:
    """A running trainer. Iterate `events()`; answer each eval with `send("continue"|"stop")`."""

    def __init__(self, spec_path: Path, log_path: Path, env: dict[str, str], *, module: str = TRAINER) -> None:
        self.log_path = log_path
        self._log: IO[str] = open(log_path, "a")  # noqa: SIM115 (closed in wait())
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module, str(spec_path)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, text=True, bufsize=1,
            env=env, preexec_fn=die_with_parent if sys.platform == "linux" else None,
        )

    def events(self) -> Iterator[dict[str, Any]]:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            event = decode_event(line)
            if event is not None:
                yield event

    def send(self, decision: Decision) -> None:
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write(encode_decision(decision) + "\n")
            self.proc.stdin.flush()
        except (OSError, ValueError):  # trainer gone, or its pipe already closed after it exited
            pass

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()

    def wait(self) -> int:
        code = self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):  # a decision still buffered for an exited trainer
                    stream.close()
        self._log.close()
        return code


def start_trial(spec: TrialSpec, spec_path: Path, log_path: Path, env: dict[str, str], *,
                module: str = TRAINER) -> TrialProcess | ScriptProcess:
    """A cold trial process: the user's program for a script trial (``spec.command``), else ``module``."""
    if spec.command:
        return ScriptProcess(spec, spec_path, log_path, env)
    return TrialProcess(spec_path, log_path, env, module=module)


class LocalExecutor(FolderCheckpoints):
    """Starts trainer processes on this machine: one GPU per worker where GPUs exist, else
    ``threads`` CPU threads each."""

    def __init__(self, *, workers: int, device: str, threads: int | None, module: str = TRAINER,
                 warm_start: bool = False, processes_per_trial: int = 1) -> None:
        self.workers = workers
        self.per_trial = processes_per_trial  # a data-parallel trial: that many GPUs (ranks) per worker
        self.module = module
        # fork trainers from a warm parent (imports done, weights read); only the real trainer has one
        self.warm_start = warm_start and module == TRAINER and sys.platform == "linux"
        self._server: ForkServer | None = None
        self._gpus = _visible_gpus() if device in ("auto", "cuda") else []
        if device == "cuda" and not self._gpus:
            from lmtune.errors import ConfigError

            raise ConfigError("execution.device: cuda, but no CUDA GPU is visible; set execution.device: "
                              "cpu or auto")
        if self._gpus and processes_per_trial > 1 and workers * processes_per_trial > len(self._gpus):
            from lmtune.errors import ConfigError

            raise ConfigError(f"execution: {workers} workers × {processes_per_trial} GPUs per trial need "
                              f"{workers * processes_per_trial} GPUs; {len(self._gpus)} are visible. Lower "
                              "execution.workers or gpus_per_trial")
        self._free = list(range(max(workers, 1)))
        plan = plan_threads(workers, threads)
        if plan.warning:
            log.warning(plan.warning)
        self.threads, self._passive = plan.threads, plan.passive

    def device_for(self, slot: int) -> str:
        """The device string a trial in ``slot`` sees (its GPU is made the only visible one)."""
        return "cuda:0" if self._gpus else "cpu"

    def acquire(self) -> int:
        return self._free.pop(0)

    def release(self, slot: int) -> None:
        self._free.append(slot)

    def close(self) -> None:
        """Stop the warm parent, if one was started (cold trainers are children of this process)."""
        if self._server is not None:
            self._server.close()
            self._server = None

    def launch(self, spec: TrialSpec, trial_dir: Path, slot: int) -> TrialProcess | ScriptProcess | ForkedTrial:
        trial_dir.mkdir(parents=True, exist_ok=True)
        path = trial_dir / "trial.json"
        spec.write(path)
        env = self._env(spec.model, spec.threads)
        if self._gpus and self.per_trial > 1:  # the trial's ranks see their GPUs as cuda:0..N-1
            first = slot * self.per_trial
            env["CUDA_VISIBLE_DEVICES"] = ",".join(str(g) for g in self._gpus[first:first + self.per_trial])
        elif self._gpus:
            env["CUDA_VISIBLE_DEVICES"] = str(self._gpus[slot % len(self._gpus)])
        if self.warm_start and not spec.command:
            warm = self._warm(env, spec, trial_dir.parent.parent)
            if warm is not None:
                with contextlib.suppress(OSError):  # the warm parent is gone: start this one cold
                    return warm.spawn(path, trial_dir / "trainer.log", env)
        return start_trial(spec, path, trial_dir / "trainer.log", env, module=self.module)

    def prestart(self, model: str, study_dir: Path) -> None:
        """Start the warm parent now, before the first trial is planned: it imports torch and reads the
        weights of ``model`` while the driver tokenizes and opens the study, instead of after trial 0 is
        launched (a trial with another environment than the default one still starts cold). Its log is
        ``warm-parent.log`` in ``study_dir``."""
        if self.warm_start and self._server is None:
            study_dir.mkdir(parents=True, exist_ok=True)
            self._server = self._start_server(self._env(model, None), model, study_dir)

    def _env(self, model: str, threads: int | None) -> dict[str, str]:
        env = dict(os.environ)
        env.setdefault("TOKENIZERS_PARALLELISM", "false")
        env["OMP_NUM_THREADS"] = str(threads or self.threads)
        if self._passive:
            env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        if Path(model).exists():  # a local folder never needs the hub
            env.setdefault("HF_HUB_OFFLINE", "1")
        return env

    def _warm(self, env: dict[str, str], spec: TrialSpec, study_dir: Path) -> ForkServer | None:
        """The warm parent: the prestarted one, else started at the first trial with its environment."""
        if self._server is None:
            self._server = self._start_server(env, spec.model, study_dir)
        return self._server if self._server.serves(env) else None

    @staticmethod
    def _start_server(env: dict[str, str], model: str, study_dir: Path) -> ForkServer:
        base = {k: v for k, v in env.items() if k != "CUDA_VISIBLE_DEVICES"}
        warm_paths = (model,) if Path(model).is_dir() else ()
        return ForkServer(base, warm_paths=warm_paths, log_path=study_dir / "warm-parent.log")


def _visible_gpus() -> list[int]:
    """GPU indices without importing torch in the driver (nvidia-smi, else none)."""
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return list(range(sum(1 for line in out.stdout.splitlines() if line.startswith("GPU "))))
