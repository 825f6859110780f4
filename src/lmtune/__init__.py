"""lmtune: hyperparameter optimization for language-model fine-tuning.

The Python API (see the README, "Python API"): `tune` runs or resumes a study and returns a
`StudyResult`; `load` reads an existing study directory; `final` retrains the default and the best
configuration over seeds and compares them on the test split; `train` trains one configuration and keeps
its model (a `TrainResult`). Errors raise `LmtuneError` subclasses
with the messages the CLI prints. Inside a script trial (``task.type: script``), `trial` gives the script
its settings and takes its reports (docs/bring-your-own-trainer.md); ``Continue`` and ``Stop`` are the
decisions ``Trial.report`` returns. ``StudyConfig``, ``TrialRecord`` and ``FinalSummary`` load on first
use, so ``import lmtune`` stays light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from lmtune.api import StudyResult, final, load, train, tune
from lmtune.errors import ConfigError, DataError, LmtuneError, ModelLoadError, StudyError, StudyFault
from lmtune.protocol import Continue, Stop

if TYPE_CHECKING:
    from lmtune.config import StudyConfig
    from lmtune.script import Trial, trial
    from lmtune.study import TrialRecord
    from lmtune.tuner import FinalSummary, TrainResult

__version__ = "0.1.0"
__all__ = ["ConfigError", "Continue", "DataError", "FinalSummary", "LmtuneError", "ModelLoadError", "Stop",
           "StudyConfig", "StudyError", "StudyFault", "StudyResult", "TrainResult", "Trial", "TrialRecord",
           "__version__", "final", "load", "train", "trial", "tune"]

_LAZY = {"StudyConfig": "lmtune.config", "TrialRecord": "lmtune.study", "FinalSummary": "lmtune.tuner",
         "Trial": "lmtune.script", "trial": "lmtune.script", "TrainResult": "lmtune.tuner"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'lmtune' has no attribute {name!r}")
