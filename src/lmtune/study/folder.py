"""Folders lmtune writes into (``study.dir``, ``lmtune train --out``, ``lmtune export --out``): checked
before anything is written, so a place that cannot be written is one message (exit 2), not a traceback
from deep inside a run.

Permission bits do not answer the question: root may write a chmod-0 folder, yet not ``/proc`` nor a
read-only mount, and ``os.access`` says yes to all three for root. So the check *tries*: it makes a
throw-away folder in the nearest folder that exists, and removes it at once.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from lmtune.errors import StudyError

__all__ = ["check_writable", "prepare_folder"]


def check_writable(folder: Path, *, field: str) -> None:
    """Raise StudyError (naming ``field`` and the fix) unless ``folder`` is, or can be made, a folder this
    process can write. Leaves nothing behind."""
    fix = f"point {field} at a folder you can write"
    if folder.exists() and not folder.is_dir():
        raise StudyError(f"{field}: {folder} is a file, not a folder; {fix}")
    base = _nearest_existing(folder)
    if not base.is_dir():
        raise StudyError(f"{field}: {folder} cannot be created: {base} is a file, not a folder; {fix}")
    try:
        probe = tempfile.mkdtemp(prefix=".lmtune-write-check-", dir=base)
    except OSError as exc:
        where = "cannot be written" if base == folder else f"cannot be created in {base}"
        raise StudyError(f"{field}: {folder} {where} ({_reason(exc)}); {fix}") from None
    os.rmdir(probe)


def prepare_folder(folder: Path, *, field: str) -> Path:
    """`check_writable`, then make the folder (and its parents); returns it."""
    check_writable(folder, field=field)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # changed between the check and now
        raise StudyError(f"{field}: {folder} cannot be created ({_reason(exc)}); point {field} at a folder "
                         "you can write") from None
    return folder


def _nearest_existing(folder: Path) -> Path:
    p = folder.absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__
