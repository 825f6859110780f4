"""User-facing errors. The CLI prints these as one message and exits with code 2, no traceback."""

from __future__ import annotations


class LmtuneError(Exception):
    """Base class of errors caused by user input (config, files, data, models)."""


class ConfigError(LmtuneError, ValueError):
    """The study config is invalid: the message names the field and the fix."""


class DataError(LmtuneError, ValueError):
    """The dataset cannot be used as configured (missing file, missing column, too few rows)."""


class ModelLoadError(LmtuneError, ValueError):
    """The model cannot be loaded as configured."""


class StudyError(LmtuneError, ValueError):
    """The study directory or storage is missing or inconsistent."""


class NotAStudyError(StudyError, FileNotFoundError):
    """The folder is not an lmtune study directory (it has no ``lmtune.json``)."""


class StudyFault(Exception):
    """The study could not go on for a fault of the machine, not of the input: its storage could not be
    written (disk full, database connection lost). The CLI prints the message (what was kept, what is
    left for the next run, how to go on) and exits with code 1, no traceback."""
