"""The stages of a study directory: one study, or a proxy study and a target study in one storage.

A two-stage study (``lmtune.tuner.proxy``) records in ``lmtune.json``::

    "study_name": "<name>",
    "stages": [{"name": "<name>-proxy", "role": "proxy", ...}, {"name": "<name>", "role": "target", ...}]

so ``study_name`` (what ``load_study`` and plain tools open) is always the target study.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import optuna

from lmtune.config import ProxySection
from lmtune.errors import StudyError
from lmtune.study.store import storage_for

__all__ = ["PROXY_SUFFIX", "Stage", "stage_entries", "stages"]

PROXY_SUFFIX = "-proxy"


@dataclass(frozen=True)
class Stage:
    role: str  # "proxy" | "target" | "study" (a single-stage study)
    name: str
    study: optuna.Study
    info: dict[str, Any]  # the stage's entry in lmtune.json


def stage_entries(proxy: ProxySection | None, *, study_name: str, model: str, strategy: str,
                  proxy_trials: int) -> list[dict[str, Any]]:
    """The ``stages`` list of ``lmtune.json`` for a study with a ``proxy`` section (empty without one):
    ``study_name``, ``model`` (task.model) and ``strategy`` (search.strategy) are the target's."""
    p = proxy
    if p is None:
        return []
    entry = {"name": study_name + PROXY_SUFFIX, "role": "proxy", "model": p.model or model,
             "truncate_layers": p.truncate_layers, "data_fraction": p.data_fraction, "max_steps": p.max_steps,
             "strategy": p.strategy or strategy, "n_trials": proxy_trials}
    target = {"name": study_name, "role": "target", "model": model, "top_k": p.top_k,
              "refine_trials": p.refine_trials, "strategy": strategy}
    return [entry, target]


def stages(study: optuna.Study, meta: dict[str, Any]) -> list[Stage]:
    """The studies of a study directory in stage order; ``study`` is the one ``lmtune.json`` names."""
    entries = [e for e in meta.get("stages") or [] if isinstance(e, dict) and e.get("name")]
    if not entries:
        return [Stage("study", study.study_name, study, {})]
    out = []
    for e in entries:
        name = str(e["name"])
        if name == study.study_name:
            out.append(Stage(str(e.get("role", "target")), name, study, e))
            continue
        try:
            other = optuna.load_study(study_name=name, storage=storage_for(meta["storage"]))
        except KeyError:
            raise StudyError(f"stage '{name}' is not in {meta['storage']}; re-run 'lmtune tune' on the "
                             "config to create it") from None
        out.append(Stage(str(e.get("role", "proxy")), name, other, e))
    return out
