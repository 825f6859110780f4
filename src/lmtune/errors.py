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
