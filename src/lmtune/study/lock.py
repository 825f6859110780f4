"""One driver per study directory: ``<study dir>/driver.lock``.

Two ``lmtune tune`` processes on one folder would each take the other's running trial for an
interrupted one, fail it and run it again. The lock is an ``flock`` on a file that names its holder
(pid, host, start time): the kernel drops it when the holder dies, however it dies, so a stale lock
never blocks a study; its text only tells the next driver whom it replaces. ``lmtune worker`` on server
storage is the way to share a study (it takes no lock: its workers coordinate through the database).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from lmtune.errors import StudyError
from lmtune.study.folder import prepare_folder

LOCK_FILE = "driver.lock"
log = logging.getLogger("lmtune")


@contextlib.contextmanager
def driver_lock(study_dir: Path) -> Iterator[None]:
    """Hold the study directory's driver lock for the block; StudyError (exit 2) when another process
    holds it."""
    prepare_folder(study_dir, field="study.dir")  # one message for a place that cannot be written
    path = study_dir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited by trainers (O_CLOEXEC by default)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _describe(_read(fd))
            raise StudyError(f"{study_dir}: another lmtune driver is running this study ({holder}); wait for it "
                             "or stop it. To tune one study from several processes, use server storage "
                             "(study.storage: postgresql://...) and 'lmtune worker'") from None
        before = _read(fd)
        if before:
            log.warning("%s: taking over the driver lock of %s, which is no longer running", study_dir,
                        _describe(before))
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                  "since": time.strftime("%Y-%m-%d %H:%M:%S")}).encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)  # a clean exit leaves no holder to take over from
    finally:
        os.close(fd)  # releases the flock


def _read(fd: int) -> dict[str, object]:
    try:
        data = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _describe(holder: dict[str, object]) -> str:
    if not holder:
        return "a process that did not say who it is"
    return f"pid {holder.get('pid')} on {holder.get('host')} since {holder.get('since')}"
