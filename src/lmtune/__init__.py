"""lmtune: hyperparameter optimization for language-model fine-tuning.

The Python API (see the README, "Python API"): `tune` runs or resumes a study and returns a
`StudyResult`; `load` reads an existing study directory; `final` retrains the default and the best
configuration over seeds and compares them on the test split. Errors raise `LmtuneError` subclasses
with the messages the CLI prints. ``StudyConfig``, ``TrialRecord`` and ``FinalSummary`` load on first
use, so ``import lmtune`` stays light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from lmtune.api import StudyResult, final, load, tune
from lmtune.errors import ConfigError, DataError, LmtuneError, ModelLoadError, StudyError, StudyFault

if TYPE_CHECKING:
    from lmtune.config import StudyConfig
    from lmtune.study.record import TrialRecord
    from lmtune.tuner.final import FinalSummary

__version__ = "0.1.0"
__all__ = ["ConfigError", "DataError", "FinalSummary", "LmtuneError", "ModelLoadError", "StudyConfig", "StudyError",
           "StudyFault", "StudyResult", "TrialRecord", "__version__", "final", "load", "tune"]

_LAZY = {"StudyConfig": "lmtune.config", "TrialRecord": "lmtune.study.record", "FinalSummary": "lmtune.tuner.final"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'lmtune' has no attribute {name!r}")
