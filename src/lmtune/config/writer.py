"""The one best-configuration writer: an lmtune config (YAML) that trains one configuration.

Used by ``lmtune export --format yaml`` and by ``lmtune final`` (``final/model/lmtune-config.yaml``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import pairwise
from typing import Any

import yaml


def config_yaml(study_config: Mapping[str, Any], hparams: Mapping[str, Any], *, header: Sequence[str] = (),
                schedule: Sequence[Mapping[str, Any]] | None = None) -> str:
    """An lmtune config that trains ``hparams``: the study's config, its training section set to them,
    and no search. Settings the training section has no field for and a PBT
    schedule are kept as comments, so the file still loads with ``lmtune.config.load_config``."""
    order = ("study", "task", "training", "search", "execution", "budget")
    full = {k: study_config[k] for k in order if k in study_config}
    full.update({k: v for k, v in study_config.items() if k not in order})
    # A study of its own: tuning this file must never add trials to the study it came from.
    name = str((full.get("study") or {}).get("name", "lmtune"))
    full["study"] = {**(full.get("study") or {}), "name": f"{name}-best", "dir": f"runs/{name}-best",
                     "storage": None}
    full.pop("proxy", None)  # one configuration to train: no proxy stage
    fields = full.get("training") or {}
    full["training"] = {k: v for k, v in hparams.items() if k in fields}
    full["search"] = {**(full.get("search") or {}), "space": {}, "preset": None, "n_trials": 1}
    lines = [f"# {h}" for h in header]
    others = {k: v for k, v in hparams.items() if k not in fields}
    if others:
        lines.append("# also set (no training field): " + ", ".join(f"{k}={v}" for k, v in others.items()))
    if schedule:
        lines.append("# PBT schedule replayed: units 0 trains with the training section below; then")
        for prev, step in pairwise(schedule):
            changed = {k: v for k, v in step["hparams"].items() if prev["hparams"].get(k) != v}
            lines.append(f"#   from unit {step['units']}: " + (", ".join(f"{k}={v}" for k, v in changed.items())
                                                                or "no change"))
    return "\n".join(lines) + ("\n" if lines else "") + yaml.safe_dump(full, sort_keys=False)


def best_config_yaml(study_config: Mapping[str, Any], hparams: Mapping[str, Any], *, trial: int, study_name: str,
                     study_dir: Any, metric: str, value: Any) -> str:
    """The best trial as the config that trains it: the one best-config writer (``lmtune export --format
    yaml`` and the report's "Best configuration" both print this)."""
    return config_yaml(study_config, hparams,
                       header=[f"best trial {trial} of study {study_name} in {study_dir}: {metric} {value}",
                               "train it once and keep the model: lmtune train THIS_FILE [--out DIR]"])
