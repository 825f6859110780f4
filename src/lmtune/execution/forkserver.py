"""Driver side of the warm trainer parent (`lmtune.training.zygote`): trials forked, not started cold.

`ForkServer` starts the zygote once (imports done, weights read) and asks it for one child per trial;
`ForkedTrial` is that child seen as a `TrialHandle`, the same protocol as a cold `TrialProcess`. When
the zygote cannot serve a trial (it died, or the trial needs another environment than the one it was
started with) the executor falls back to a cold start, so warm start only ever saves time.

The zygote dies with the driver through PR_SET_PDEATHSIG, which fires when the *thread* that started
it exits: the tuner launches trials from the thread that runs the study, which outlives every trial.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

from lmtune.protocol import Decision, decode_event, encode_decision

ZYGOTE = "lmtune.training.zygote"
# Read once when the zygote imports torch / OpenMP, so a child cannot change them: the zygote serves
# only trials whose values equal its own.
FIXED_AT_IMPORT = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "TOKENIZERS_PARALLELISM", "MKL_NUM_THREADS")


class ForkedTrial:
    """One trainer forked by the zygote: iterate `events()`, answer with `send()`, then `wait()`."""

    def __init__(self, server: ForkServer, pid: int, stdin: IO[str], stdout: IO[str], log: IO[str],
                 log_path: Path) -> None:
        self.server, self.pid, self.log_path = server, pid, log_path
        self._stdin, self._stdout, self._log = stdin, stdout, log

    def events(self) -> Iterator[dict[str, Any]]:
        for line in self._stdout:
            event = decode_event(line)
            if event is not None:
                yield event

    def send(self, decision: Decision) -> None:
        with contextlib.suppress(OSError, ValueError):
            self._stdin.write(encode_decision(decision) + "\n")
            self._stdin.flush()

    def kill(self) -> None:
        if self.server.exit_code(self.pid) is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(self.pid, signal.SIGKILL)

    def wait(self) -> int:
        code = self.server.wait_exit(self.pid)
        for stream in (self._stdin, self._stdout, self._log):
            with contextlib.suppress(OSError):
                stream.close()
        return code


class ForkServer:
    """The zygote process and its channel. Thread-safe: trials start and end from several threads."""

    def __init__(self, env: Mapping[str, str], *, warm_paths: tuple[str, ...] = (),
                 log_path: Path | None = None) -> None:
        self.env = dict(env)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._sock = ours
        from lmtune.procs import die_with_parent

        with open(log_path or os.devnull, "a") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", ZYGOTE, str(theirs.fileno()), *warm_paths],
                                         pass_fds=(theirs.fileno(),), env=self.env, stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=log, preexec_fn=die_with_parent)
        theirs.close()
        self._cond = threading.Condition()
        self._exits: dict[int, int] = {}
        self._started: list[int] = []
        self._alive = True
        self._send_lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    def serves(self, env: Mapping[str, str]) -> bool:
        """Can a trial with this environment be forked from the zygote?"""
        return self._alive and all(env.get(k) == self.env.get(k) for k in FIXED_AT_IMPORT)

    def spawn(self, trial_file: Path, log_path: Path, env: Mapping[str, str]) -> ForkedTrial:
        """Fork a trainer for ``trial_file``; raises OSError when the zygote is gone."""
        in_r, in_w = os.pipe()
        out_r, out_w = os.pipe()
        log = open(log_path, "a")  # noqa: SIM115 (closed in ForkedTrial.wait)
        changed = {k: v for k, v in env.items() if self.env.get(k) != v}
        msg = json.dumps({"trial_file": str(trial_file), "env": changed}).encode()
        try:
            with self._send_lock, self._cond:
                socket.send_fds(self._sock, [msg], [in_r, out_w, log.fileno()])
                while not self._started and self._alive:
                    self._cond.wait(timeout=1.0)
                if not self._started:
                    raise OSError("the warm trainer parent exited")
                pid = self._started.pop(0)
        except OSError:
            for fd in (in_w, out_r):
                os.close(fd)
            log.close()
            raise
        finally:
            os.close(in_r)
            os.close(out_w)
        return ForkedTrial(self, pid, os.fdopen(in_w, "w", buffering=1), os.fdopen(out_r, "r"), log, log_path)

    def exit_code(self, pid: int) -> int | None:
        with self._cond:
            return self._exits.get(pid)

    def wait_exit(self, pid: int) -> int:
        with self._cond:
            while pid not in self._exits and self._alive:
                self._cond.wait(timeout=1.0)
            return self._exits.get(pid, -signal.SIGKILL)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def _read(self) -> None:
        while True:
            try:
                data = self._sock.recv(1 << 16)
            except OSError:
                data = b""
            if not data:
                with self._cond:
                    self._alive = False
                    self._cond.notify_all()
                return
            msg = json.loads(data)
            with self._cond:
                if msg["event"] == "started":  # ("ready" needs no answer: requests queue until then)
                    self._started.append(int(msg["pid"]))
                elif msg["event"] == "exited":
                    self._exits[int(msg["pid"])] = int(msg["code"])
                self._cond.notify_all()
