"""The Python API: ``lmtune.tune``, ``lmtune.load`` and ``lmtune.final``, the CLI's ``tune``, ``status``/``best``
and ``final`` as functions that return typed results.

Errors are exceptions (subclasses of `lmtune.errors.LmtuneError`) carrying the messages the CLI prints
(where the CLI exits 2, these raise before any training); a storage fault during a study raises
`lmtune.errors.StudyFault`. Nothing heavy is imported until a function is called, so ``import lmtune``
stays fast.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmtune.errors import ConfigError

if TYPE_CHECKING:
    import optuna

    from lmtune.config import StudyConfig
    from lmtune.study import TrialRecord
    from lmtune.tuner import FinalSummary, TrainResult

__all__ = ["StudyResult", "final", "load", "train", "tune"]



@dataclass(frozen=True)
class StudyResult:
    """A study as it stands: every trial's record, the best and the default-settings trial.

    ``best`` and ``default`` are None until such a trial has completed. ``stop_reason`` and
    ``wall_time_s`` describe the run that returned this result (None from `load`)."""

    study_dir: Path
    study_name: str
    storage: str
    metric: str
    direction: str
    trials: tuple[TrialRecord, ...]
    best: TrialRecord | None
    default: TrialRecord | None
    stop_reason: str | None = None
    wall_time_s: float | None = None
    # a multi-objective study (study.objectives): (metric, direction) of each objective, and the Pareto front
    # (every trial no other dominates; each record's ``values`` holds its objectives). One objective: the
    # study's metric, and the front is the best trial (ties included).
    objectives: tuple[tuple[str, str], ...] = ()
    front: tuple[TrialRecord, ...] = ()
    _study: Any = field(default=None, repr=False, compare=False)

    @property
    def best_config(self) -> dict[str, Any]:
        """The full training settings of the best trial (what `lmtune export --format yaml` writes)."""
        if self.best is None:
            raise LookupError(f"study '{self.study_name}' has no completed trial yet")
        return dict(self.best.config)

    @property
    def gain(self) -> float | None:
        """Best minus default value (in the study's metric; None without both)."""
        if self.best is None or self.default is None or self.best.value is None or self.default.value is None:
            return None
        return self.best.value - self.default.value

    @cached_property
    def study(self) -> optuna.Study:
        """The Optuna study itself (opened on first use)."""
        if self._study is not None:
            return self._study  # type: ignore[no-any-return]
        from lmtune.study import open_study

        return open_study(self.study_name, self.storage)


def tune(config: str | os.PathLike[str] | Mapping[str, Any] | StudyConfig | None = None, *,
         overrides: Sequence[str] | Mapping[str, Any] = (), n_trials: int | None = None,
         progress: bool = True) -> StudyResult:
    """Run (or resume) a study, as ``lmtune tune CONFIG --set ... --n-trials N``; returns the study.

    ``config``: a YAML path, a mapping with the YAML's sections, a `lmtune.config.StudyConfig`, or None
    for the built-in defaults. ``overrides``: ``["training.learning_rate=3e-5", ...]`` as ``--set`` takes
    them (values parsed as YAML), or ``{"training.learning_rate": 3e-5}`` (values taken as given).
    ``n_trials``: total trials to finish (default: ``search.n_trials``). ``progress``: print one line per
    event to stdout (False: quiet). A config with a ``proxy`` section runs both stages; the result is the
    target stage's study."""
    if n_trials is not None and (isinstance(n_trials, bool) or not isinstance(n_trials, int) or n_trials < 1):
        raise ConfigError(f"n_trials: expected a whole number >= 1, got {n_trials!r}")
    cfg = study_config(config, overrides)
    reporter = _reporter(progress)
    if cfg.proxy is not None:
        from lmtune.tuner import TwoStageTuner

        two = TwoStageTuner(cfg, n_trials=n_trials, reporter=reporter).run()
        return _result(Path(cfg.study.dir), two.target_study, stop_reason=two.stop_reason,
                       wall_time_s=two.wall_time_s)
    from lmtune.tuner import Tuner

    summary = Tuner(cfg, n_trials=n_trials, reporter=reporter()).run()
    return _result(Path(cfg.study.dir), summary.study, stop_reason=summary.stop_reason,
                   wall_time_s=summary.wall_time_s)


def load(study_dir: str | os.PathLike[str]) -> StudyResult:
    """An existing study directory (``study.dir`` of its config), as `tune` returns it."""
    from lmtune.study import load_study

    study, _meta = load_study(Path(study_dir))
    return _result(Path(study_dir), study)


def final(study_dir: str | os.PathLike[str], *, seeds: int = 3, workers: int | None = None,
          log: Callable[[str], None] | None = None) -> FinalSummary:
    """Retrain the default and the best configuration with ``seeds`` seeds each and compare them on the
    test split, as ``lmtune final``; finished runs are reused. ``log``: one line per event (default:
    none)."""
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ConfigError(f"seeds: expected a whole number >= 1, got {seeds!r}")
    from lmtune.tuner import FinalRunner

    return FinalRunner(Path(study_dir), seeds=seeds, workers=workers, log=log or (lambda _line: None)).run()


def train(config: str | os.PathLike[str] | Mapping[str, Any] | StudyConfig | None = None, *,
          overrides: Sequence[str] | Mapping[str, Any] = (), out: str | os.PathLike[str] | None = None,
          log: Callable[[str], None] | None = None) -> TrainResult:
    """Train the config's ``training`` settings once in ``out`` (default ``<study.dir>-train``), evaluate on
    validation and test and save the model, as ``lmtune train``; a failed run is returned with its
    ``failure`` reason."""
    from lmtune.tuner.train_one import train_one

    cfg = study_config(config, overrides)
    return train_one(cfg, out=None if out is None else Path(out), log=log or (lambda _line: None))


def study_config(config: str | os.PathLike[str] | Mapping[str, Any] | StudyConfig | None,
                 overrides: Sequence[str] | Mapping[str, Any] = ()) -> StudyConfig:
    """The validated config `tune` runs: the same checks (and messages) as the CLI's."""
    from lmtune.config import StudyConfig, apply_overrides, load_config, validate

    if isinstance(overrides, str):
        raise ConfigError("overrides: expected a list of 'key.path=value' strings or a mapping, not one string")
    if config is None or isinstance(config, str | os.PathLike):
        cfg = load_config(None if config is None else Path(config), _as_strings(overrides))
        return cfg if not isinstance(overrides, Mapping) else _with_values(cfg.model_dump(), overrides)
    if isinstance(config, StudyConfig):
        raw: dict[str, Any] = config.model_dump()
    elif isinstance(config, Mapping):
        raw = dict(config)
    else:
        raise ConfigError(f"config: expected a YAML path, a mapping or a StudyConfig, got {type(config).__name__}")
    if isinstance(overrides, Mapping):
        return _with_values(raw, overrides)
    return validate(apply_overrides(raw, overrides), source="<config>")


def _as_strings(overrides: Sequence[str] | Mapping[str, Any]) -> list[str]:
    return [] if isinstance(overrides, Mapping) else list(overrides)


def _with_values(raw: Mapping[str, Any], values: Mapping[str, Any]) -> StudyConfig:
    """``raw`` with each dotted key of ``values`` set to its value as given (not parsed), validated."""
    import copy

    from lmtune.config import validate

    out = copy.deepcopy(dict(raw))
    for key, value in values.items():
        parts = str(key).split(".")
        node = out
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"overrides: {key}: '{part}' is a value, not a section")
            node = child
        node[parts[-1]] = value
    return validate(out, source="<config>")


def _reporter(progress: bool) -> Callable[[], Any]:
    from lmtune.tuner import PlainReporter

    if progress:
        return PlainReporter
    return lambda: PlainReporter(_Quiet())


class _Quiet:
    """A stream that drops what it is given (``progress=False``)."""

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


def _result(study_dir: Path, study: optuna.Study, *, stop_reason: str | None = None,
            wall_time_s: float | None = None) -> StudyResult:
    from lmtune.study import objectives_of, read_meta, record, storage_url

    meta = read_meta(study_dir)
    trials = study.get_trials(deepcopy=False)
    direction = study.directions[0].name.lower()
    best, default = record.best_of(trials, direction), record.default_of(trials)
    objectives = tuple(objectives_of(study, meta))
    return StudyResult(study_dir=study_dir, study_name=study.study_name, storage=storage_url(study_dir, meta),
                       metric=str(meta["metric"]), direction=direction,
                       trials=tuple(record.records(trials)),
                       best=None if best is None else record.read(best),
                       default=None if default is None else record.read(default),
                       stop_reason=stop_reason, wall_time_s=wall_time_s, objectives=objectives,
                       front=tuple(record.records(record.front_of(trials, [d for _, d in objectives]))),
                       _study=study)
