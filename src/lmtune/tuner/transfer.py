"""A study's best configurations, to be run again elsewhere: on the target after a proxy stage
(``tuner/proxy.py``) or first in a new study warm-started from earlier ones (``tuner/priors.py``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import TrialState

from lmtune.study import record


@dataclass(frozen=True)
class Transfer:
    """A proxy trial's configuration, to be run on the target."""

    params: dict[str, Any]
    proxy_trial: int
    proxy_value: float
    is_default: bool

    def user_attrs(self) -> dict[str, Any] | None:
        return record.enqueue_attrs(proxy_value=self.proxy_value, proxy_trial=self.proxy_trial,
                                    is_default=True if self.is_default else None)


def top_configs(study: optuna.Study, k: int, *, with_default: bool = True) -> list[Transfer]:
    """With ``with_default``, the default trial when it completed (so the target runs the baseline first,
    as trial 0 like any study); then the ``k`` best COMPLETE trials of ``study`` with distinct params
    other than the default settings, best first (ties: lower number)."""
    sign = -1.0 if study.directions[0] == optuna.study.StudyDirection.MINIMIZE else 1.0
    # the first objective's value (the score) where a study has several
    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if record.value_of(t) is not None]
    default = record.default_of(done)
    out: list[Transfer] = []
    if with_default and default is not None:
        out.append(Transfer(dict(default.params), default.number, float(record.value_of(default) or 0.0), True))
    for t in sorted(done, key=lambda t: (-sign * float(record.value_of(t) or 0.0), t.number)):
        if sum(not o.is_default for o in out) == k:
            break
        if t.params != (default.params if default else None) and all(t.params != o.params for o in out):
            out.append(Transfer(dict(t.params), t.number, float(record.value_of(t) or 0.0), False))
    return out
