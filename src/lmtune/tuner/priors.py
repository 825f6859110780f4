"""Warm start from earlier studies (``search.prior_studies``): their best configurations run first.

Each earlier study directory's ``search.prior_top_k`` best COMPLETE trials (distinct, other than its
default settings) are restricted to this study's space and enqueued right after the default trial,
once per study: every such trial carries ``prior_study``, ``prior_trial`` and ``prior_value``, so a
resumed run does not enqueue them again and the report can tell them apart. The sampler then models
them like any other finished trial; they count toward TPE's start-up trials (Optuna counts finished
trials), so a warm-started study models sooner instead of drawing that many random points.

The earlier study must rank trials the same way (same ``study.metric`` and ``direction``), or its
"best" would mean something else; anything else is refused before any training.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import optuna

from lmtune.config import SearchSection
from lmtune.errors import ConfigError, StudyError
from lmtune.space import Space
from lmtune.strategies import traits
from lmtune.study import load_study, record
from lmtune.tuner.transfer import top_configs


@dataclass(frozen=True)
class Prior:
    params: dict[str, Any]
    study: str
    trial: int
    value: float

    def user_attrs(self) -> dict[str, Any] | None:
        return record.enqueue_attrs(prior_study=self.study, prior_trial=self.trial, prior_value=self.value)


def prior_configs(search: SearchSection, *, metric: str, direction: str, study_dir: str | Path) -> list[Prior]:
    """The configurations ``search.prior_studies`` hand this study (in ``study_dir``, ranking by ``metric``
    in ``direction``), best first per study, as those studies ran them (`within` restricts them to this
    study's space); raises ``ConfigError`` (exit 2) for a folder that is not a study or that ranks by
    another metric: before anything is tokenized or trained."""
    out: list[Prior] = []
    if search.prior_studies and not traits(search.strategy).samples:
        raise ConfigError(f"search.prior_studies: not used by strategy {search.strategy} (grid runs its "
                          "points, pbt its population); use a sampling strategy (auto, bayes, random, asha, hyperband)")
    for folder in search.prior_studies:
        where = f"search.prior_studies: {folder}"
        if Path(folder).resolve() == Path(study_dir).resolve():
            raise ConfigError(f"{where} is this study's own directory; name an earlier study")
        try:
            study, meta = load_study(folder)
        except StudyError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        was = "minimize" if study.directions[0] == optuna.study.StudyDirection.MINIMIZE else "maximize"
        if meta.get("metric") not in (None, metric) or was != direction:
            raise ConfigError(f"{where} ranks trials by {meta.get('metric')} ({was}), this study by "
                              f"{metric} ({direction}); its best trials would not be this "
                              "study's: use an earlier study with the same study.metric and direction")
        for t in top_configs(study, search.prior_top_k, with_default=False):
            out.append(Prior(params=dict(t.params), study=str(Path(folder).resolve()), trial=t.proxy_trial,
                             value=t.proxy_value))
    return out


def within(space: Space, priors: list[Prior]) -> list[Prior]:
    """The priors restricted to ``space`` (the plan's), in order; a prior left with no parameter of this
    space, or with the same parameters as one before it, is dropped."""
    out: list[Prior] = []
    for p in priors:
        params = space.restrict(p.params)
        if params and all(params != o.params for o in out):
            out.append(replace(p, params=params))
    return out


def enqueue_priors(study: optuna.Study, priors: list[Prior]) -> int:
    """Enqueue the priors this study does not hold yet (any state); returns how many."""
    held = {(r.prior_study, r.prior_trial) for r in record.records(study.get_trials(deepcopy=False))}
    todo = [p for p in priors if (p.study, p.trial) not in held]
    for p in todo:
        study.enqueue_trial(p.params, user_attrs=p.user_attrs())
    return len(todo)
