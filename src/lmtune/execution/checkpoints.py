"""Checkpoint operations of a backend: what a trial saved, how big it is, deleting what no scheduler needs.

A trial's checkpoints are the folders ``<trial_dir>/checkpoints/uNNNNN`` (NNNNN: the units trained when
it was saved) that its trainer reports in ``eval`` events. Every backend lmtune has keeps them on a
filesystem the driver sees: the local disk, or for Ray the shared filesystem that ``study.dir`` must be on
(docs/scale.md), so the folder operations here serve all of them. Schedulers decide *which* checkpoints
may go (`lmtune.schedulers.Scheduler.removable_checkpoints`); the loop has the backend delete them.

Copying is not an operation: a trainer resumes from (or exploits) any checkpoint by its path, so a PBT
exploit reads the donor's folder where it is rather than a copy.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from lmtune.protocol import checkpoint_complete, checkpoint_folder

__all__ = ["FolderCheckpoints", "checkpoint_folders", "checkpoint_units", "folder_bytes"]


def checkpoint_units(path: Path) -> int | None:
    """The units a checkpoint folder was saved at (``u00012`` → 12), None for another name."""
    name = path.name
    return int(name[1:]) if len(name) == 6 and name[0] == "u" and name[1:].isdigit() else None


def checkpoint_folders(trial_dir: Path) -> list[Path]:
    """A trial's checkpoint folders (``<trial_dir>/checkpoints/uNNNNN``), oldest first."""
    folder = trial_dir / "checkpoints"
    found = folder.glob("u?????") if folder.is_dir() else []
    return sorted(p for p in found if checkpoint_units(p) is not None)


def folder_bytes(path: Path) -> int:
    """Bytes of the files under ``path`` (0 when it is gone)."""
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else 0


class FolderCheckpoints:
    """The checkpoint operations of a backend whose checkpoints are folders the driver can reach
    (`lmtune.execution.Checkpoints`)."""

    def checkpoint_path(self, trial_dir: Path, units: int) -> Path:
        return checkpoint_folder(trial_dir, units)

    def checkpoint_ready(self, path: Path) -> bool:
        return checkpoint_complete(path)

    def checkpoint_units(self, path: Path) -> int | None:
        return checkpoint_units(path)

    def list_checkpoints(self, trial_dir: Path) -> list[Path]:
        """The trial's checkpoint folders, oldest first."""
        return checkpoint_folders(trial_dir)

    def checkpoint_bytes(self, path: Path) -> int:
        return folder_bytes(path)

    def delete_checkpoint(self, path: Path) -> None:
        """Remove one checkpoint folder (nothing when it is already gone)."""
        shutil.rmtree(path, ignore_errors=True)
