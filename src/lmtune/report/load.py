"""Reading a study directory for the report: ``lmtune.json``, the Optuna studies, ``final/results.json``.

Layout read (written by ``lmtune tune`` and ``lmtune final``)::

    <study_dir>/lmtune.json          {"study_name", "storage", "metric", "direction", "config",
                                      optional "stages": [{"name", "role": "proxy"|"target"}]}
    <storage>                        Optuna RDB storage, default sqlite:///<study_dir>/study.db
    <study_dir>/final/results.json   optional: {"metric_names", "seeds", "runs", "machine"}

Loading never writes to the storage.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from lmtune.errors import NotAStudyError, StudyError
from lmtune.study import META_FILE, open_study, read_meta, storage_url

__all__ = [
    "META_FILE",
    "RESULTS_FILE",
    "StudyDirError",
    "StudyMetaError",
    "StudyRecord",
    "load_study_dir",
]

RESULTS_FILE = Path("final") / "results.json"


# The report's errors are the study store's (one reader of a study directory, one error family): kept under
# these names for callers of the report API.
StudyDirError = NotAStudyError  # no lmtune.json: a FileNotFoundError and a StudyError
StudyMetaError = StudyError  # lmtune.json or final/results.json unusable: a ValueError


@dataclass(frozen=True)
class StudyRecord:
    """Everything the report reads from one study directory."""

    study_dir: Path
    meta: dict[str, Any]
    study: optuna.Study
    trials: list[FrozenTrial]
    proxy_trials: list[FrozenTrial] | None  # None when the study has no proxy stage
    final: dict[str, Any] | None  # None until `lmtune final` has run

    @property
    def metric(self) -> str:
        return str(self.meta.get("metric", "value"))

    @property
    def direction(self) -> str:
        return str(self.meta.get("direction", "maximize"))

    @property
    def config(self) -> dict[str, Any]:
        config = self.meta.get("config")
        return dict(config) if isinstance(config, Mapping) else {}


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise StudyError(f"{path} is not valid JSON ({exc}); 'lmtune final' writes it again") from None
    if not isinstance(data, dict):
        raise StudyError(f"{path} must hold a JSON object, found {type(data).__name__}")
    return data


def _proxy_name(meta: Mapping[str, Any]) -> str | None:
    for stage in meta.get("stages") or []:
        if isinstance(stage, Mapping) and stage.get("role") == "proxy" and stage.get("name"):
            return str(stage["name"])
    return None


def load_study_dir(study_dir: Path | str) -> StudyRecord:
    """Load the study record of ``study_dir``.

    Raises the study store's errors: `lmtune.errors.NotAStudyError` (a ``FileNotFoundError``) when
    ``lmtune.json`` is absent, `lmtune.errors.StudyError` (a ``ValueError``) when it or
    ``final/results.json`` is malformed or names a study the storage does not hold.
    """
    study_dir = Path(study_dir)
    meta = read_meta(study_dir)  # the study store's reader: one message for a missing or damaged lmtune.json
    storage = storage_url(study_dir, meta)  # a moved SQLite file found, a missing one named
    study = open_study(meta["study_name"], storage)
    proxy_name = _proxy_name(meta)
    proxy = open_study(proxy_name, storage) if proxy_name else None
    results_path = study_dir / RESULTS_FILE
    return StudyRecord(
        study_dir=study_dir,
        meta=meta,
        study=study,
        trials=study.get_trials(deepcopy=False),
        proxy_trials=proxy.get_trials(deepcopy=False) if proxy else None,
        final=_read_json(results_path) if results_path.is_file() else None,
    )
