"""A warm parent for trainer processes: ``python -m lmtune.training.zygote FD``.

Importing torch and transformers and reading the model's weights cost seconds per trial; a trial of a
minute spends ~10 % of its wall time there. This process pays that once per study: it imports what a
trial needs, then forks one child per trial. Each child is a fresh process (its memory goes back to the
system when the trial ends, as with a cold start) that runs `lmtune.training.worker` on its trial file.

Channel: a SOCK_SEQPACKET socket inherited as fd ``FD``, one JSON message per packet.
  ← {"trial_file", "env"} with 3 file descriptors (the child's stdin, stdout, stderr)
  → {"event": "ready", "import_s"}  once; {"event": "started", "pid"} per request;
    {"event": "exited", "pid", "code"} when a child ends.
The children die with this process, and this process with the driver (EOF on the socket or
PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

from lmtune.procs import die_with_parent


def _warm(paths: list[str]) -> None:
    """Import a trial's modules; read the weight files once so children find them in the page cache."""
    import torch  # noqa: F401
    import transformers  # noqa: F401

    import lmtune.training.loop
    import lmtune.training.worker  # noqa: F401

    for folder in paths:
        if not Path(folder).is_dir():
            continue
        with contextlib.suppress(Exception):  # transformers imports a model's code on first use
            _import_model_code(folder)
        for f in sorted(Path(folder).glob("*.safetensors")):
            with f.open("rb") as fh:
                while fh.read(1 << 24):
                    pass


def _import_model_code(folder: str) -> None:
    from transformers import AutoConfig, AutoTokenizer
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING,
        MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING,
    )

    config = AutoConfig.from_pretrained(folder)
    for mapping in (MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING, MODEL_FOR_CAUSAL_LM_MAPPING):
        with contextlib.suppress(KeyError):
            mapping[type(config)]
    AutoTokenizer.from_pretrained(folder)


def _child(request: dict[str, Any], fds: list[int]) -> None:
    """In the forked child: become the trial's trainer process (never returns)."""
    code = 1
    try:
        die_with_parent()
        for target, fd in zip((0, 1, 2), fds, strict=True):
            os.dup2(fd, target)
        for fd in fds:
            os.close(fd)
        os.environ.update(request.get("env") or {})
        if os.environ.get("HF_HUB_OFFLINE") == "1":  # read by huggingface_hub at import time
            with contextlib.suppress(Exception):
                import huggingface_hub.constants

                huggingface_hub.constants.HF_HUB_OFFLINE = True
        sys.stdin = os.fdopen(0, "r", buffering=1)
        sys.stdout = os.fdopen(1, "w", buffering=1)
        sys.stderr = os.fdopen(2, "w", buffering=1)
        from lmtune.training.worker import main

        code = main([request["trial_file"]])
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def serve(sock: socket.socket) -> None:
    children: set[int] = set()

    def send(msg: dict[str, Any]) -> None:
        sock.send(json.dumps(msg).encode())

    try:
        while True:
            ready, _, _ = select.select([sock], [], [], 0.2)
            for pid in list(children):  # reap and report ended children
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    children.discard(pid)
                    send({"event": "exited", "pid": pid, "code": os.waitstatus_to_exitcode(status)})
            if not ready:
                continue
            data, fds, _flags, _addr = socket.recv_fds(sock, 1 << 16, 3)
            if not data:  # the driver is gone
                return
            request = json.loads(data)
            pid = os.fork()
            if pid == 0:
                sock.close()
                _child(request, list(fds))
            for fd in fds:
                os.close(fd)
            children.add(pid)
            send({"event": "started", "pid": pid})
    except (BrokenPipeError, ConnectionResetError):
        return
    finally:
        for pid in children:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    die_with_parent()
    sock = socket.socket(fileno=int(args[0]))
    t0 = time.perf_counter()
    _warm(args[1:])
    sock.send(json.dumps({"event": "ready", "import_s": time.perf_counter() - t0}).encode())
    serve(sock)
    return 0


if __name__ == "__main__":
    sys.exit(main())
