"""The study store: Optuna RDB storage + lmtune.json; trial records, reasons and best trial."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lmtune._faces import lazy
from lmtune.study.store import (
    INTERRUPTED,
    StudyPaths,
    best_trial,
    default_trial,
    finished,
    front,
    load_study,
    objectives_of,
    read_meta,
    recover_interrupted,
    storage_for,
    train_tokens_spent,
    write_meta,
)

if TYPE_CHECKING:
    from lmtune.study.folder import check_writable, prepare_folder
    from lmtune.study.lock import driver_lock
    from lmtune.study.record import TrialRecord
    from lmtune.study.spend import Spent, device_kind, per_second, spent_line, trials_spent
    from lmtune.study.stages import PROXY_SUFFIX, Stage, stage_entries
    from lmtune.study.store import (
        META_FILE,
        check_not_lost,
        fault_message,
        open_study,
        requeue,
        storage_fault,
        storage_url,
    )

__all__ = ["INTERRUPTED", "META_FILE", "PROXY_SUFFIX", "Spent", "Stage", "StudyPaths", "TrialRecord", "best_trial",
           "check_not_lost", "check_writable", "default_trial", "device_kind", "driver_lock", "fault_message",
           "finished", "front", "load_study", "objectives_of", "open_study", "per_second", "prepare_folder",
           "read_meta", "recover_interrupted", "requeue", "spent_line", "stage_entries", "storage_fault", "storage_for",
           "storage_url", "train_tokens_spent", "trials_spent", "write_meta"]

# the rest of the face, each name imported from its module when first named (lmtune._faces)
_FACE = {
    "Spent": "spend",
    "device_kind": "spend",
    "per_second": "spend",
    "spent_line": "spend",
    "trials_spent": "spend",
    "META_FILE": "store",
    "PROXY_SUFFIX": "stages",
    "Stage": "stages",
    "TrialRecord": "record",
    "check_not_lost": "store",
    "check_writable": "folder",
    "driver_lock": "lock",
    "fault_message": "store",
    "open_study": "store",
    "prepare_folder": "folder",
    "requeue": "store",
    "stage_entries": "stages",
    "storage_fault": "store",
    "storage_url": "store",
}

__getattr__ = lazy(__name__, _FACE)
