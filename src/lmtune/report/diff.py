"""What the best configuration changed: the settings where it differs from the default, searched ones marked.

A trial records its whole training section (80-odd fields, most of them untouched by the search and many
of them not even used by this task: ``lora_*`` on a full fine-tune, PBT settings on a TPE study). The
answer a user wants first is the few that changed, so the report, ``lmtune best`` and the end of
``lmtune tune`` show ``config_changes``; the full configuration stays one click away (report) or one
command away (``lmtune export --format yaml``).

"The default" is what the default trial trained with (the config's own settings), else the config's
training section when the study has no default trial. ``best_changes`` reads them from the study's
trials (through the one trial-record codec); the rest are pure functions of plain mappings.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from optuna.trial import FrozenTrial

from lmtune.study import record

__all__ = ["ABSENT", "Change", "best_changes", "change_lines", "config_changes", "default_settings", "show"]

ABSENT = "—"
"""How a setting one side does not have is shown."""


@dataclass(frozen=True)
class Change:
    """One setting of the best configuration that differs from the default's (or was searched)."""

    name: str
    default: Any  # ABSENT when the default has no such setting
    best: Any  # ABSENT when the best has no such setting
    searched: bool  # in the search space (the search chose it, even if it chose the default's value)

    @property
    def changed(self) -> bool:
        return not _same(self.default, self.best)


def default_settings(config: Mapping[str, Any], default_trial_config: Mapping[str, Any] | None) -> dict[str, Any]:
    """The default's settings: the default trial's recorded ones, else the study config's training section
    (with a script task's own ``task.defaults`` laid over it, as the tuner does)."""
    if default_trial_config:
        return dict(default_trial_config)
    task = config.get("task") if isinstance(config.get("task"), Mapping) else {}
    training = config.get("training") if isinstance(config.get("training"), Mapping) else {}
    return {**dict(training or {}), **dict((task or {}).get("defaults") or {})}


def config_changes(default: Mapping[str, Any], best: Mapping[str, Any], searched: Iterable[str]) -> list[Change]:
    """Every setting whose value differs between ``default`` and ``best``, and every searched one (even
    unchanged: the search looked and kept the default). Searched settings first, then the rest, each in the
    order the best configuration lists them."""
    wanted = list(dict.fromkeys(searched))
    names = list(dict.fromkeys([*best, *default]))
    out = []
    for name in sorted(names, key=lambda n: (n not in wanted, n not in best)):
        d, b = default.get(name, ABSENT), best.get(name, ABSENT)
        if name in wanted or not _same(d, b):
            out.append(Change(name, d, b, name in wanted))
    return out


def best_changes(trials: Iterable[FrozenTrial], best: FrozenTrial, config: Mapping[str, Any]) -> list[Change]:
    """``config_changes`` of the study's best trial: against the default trial's settings (else the
    config's), the searched settings being those any trial of the study drew."""
    trials = list(trials)
    default = record.default_of(trials)
    base = default_settings(config, record.read(default).config if default is not None else None)
    chosen = record.read(best).config or {**base, **best.params}  # a trial recorded before `config` existed
    searched = [name for t in trials for name in t.params]
    return config_changes(base, chosen, searched)


def show(value: Any) -> str:
    """A setting's value, short: floats with 4 significant digits, the rest as JSON (null, true, lists)."""
    if value is ABSENT:
        return ABSENT
    if isinstance(value, float):
        return f"{value:.4g}"
    return json.dumps(value, default=str)


def change_lines(changes: Iterable[Change]) -> list[str]:
    """The terminal form: ``name: default → best (searched)`` per changed setting, then one line naming
    the searched settings the best kept at their default value."""
    changes = list(changes)
    lines = [f"{c.name}: {show(c.default)} → {show(c.best)}" + (" (searched)" if c.searched else "")
             for c in changes if c.changed]
    kept = [f"{c.name}={show(c.best)}" for c in changes if c.searched and not c.changed]
    if kept:
        lines.append("searched, kept at the default: " + ", ".join(kept))
    if not lines:
        lines.append("the same settings as the default")
    return lines


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, int | float) and isinstance(b, int | float) and not isinstance(a, bool) \
            and not isinstance(b, bool):
        return float(a) == float(b)
    return bool(a == b)
