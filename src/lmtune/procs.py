"""Child processes that die with their parent: trainers of the driver, ranks of a trial, a warm parent's
children. Standard library only: the driver, the executors and the trainers all use it."""

from __future__ import annotations

import contextlib
import ctypes
import signal

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """``preexec_fn`` of a child (or called first thing in a forked one): SIGKILL when the parent dies
    (Linux ``PR_SET_PDEATHSIG``; elsewhere nothing)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
