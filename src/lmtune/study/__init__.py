"""The study store: Optuna RDB storage + lmtune.json; trial records, reasons and best trial."""

from lmtune.study.store import (
    INTERRUPTED,
    StudyPaths,
    best_trial,
    default_trial,
    finished,
    load_study,
    read_meta,
    recover_interrupted,
    storage_for,
    train_tokens_spent,
    write_meta,
)

__all__ = [
    "INTERRUPTED",
    "StudyPaths",
    "best_trial",
    "default_trial",
    "finished",
    "load_study",
    "read_meta",
    "recover_interrupted",
    "storage_for",
    "train_tokens_spent",
    "write_meta",
]
