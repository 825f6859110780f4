"""What the CLI shows: pure functions from a study to rows and documents (no printing here)."""

from __future__ import annotations

from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from lmtune.report import ABSENT, best_changes
from lmtune.study import TrialRecord, best_trial, default_trial, front, objectives_of, record


def _metric_at_end(r: TrialRecord, metric: str) -> float | None:
    return r.curve[-1].get("metrics", {}).get(metric) if r.curve else None


def perplexity_of(t: FrozenTrial, metric: str) -> float | None:
    """Causal-LM studies: the validation perplexity at the point the trial reported (its value), else the
    last evaluation; None for other tasks."""
    points = [p["metrics"] for p in record.read(t).curve if "eval_perplexity" in p.get("metrics", {})]
    if not points:
        return None
    value = record.value_of(t)
    at_value = [m for m in points if value is not None and m.get(metric) == value]
    return float((at_value or points)[-1]["eval_perplexity"])


def _objective_at_end(r: TrialRecord, name: str) -> float | None:
    """A trial that did not complete (pruned, stopped by the budget): an objective where it stopped — a
    reported metric (a serving cost) from its last evaluation, its train tokens and device-hours so far."""
    if name == "train_tokens":
        return float(r.train_tokens) if r.train_tokens is not None else None
    if name == "train_gpu_hours":
        return (r.wall_time_s or 0.0) * (r.devices or 1) / 3600.0 if r.wall_time_s is not None else None
    value = _metric_at_end(r, name)
    return float(value) if isinstance(value, int | float) else None


def trial_rows(study: optuna.Study, metric: str, objectives: list[str] | None = None) -> list[dict[str, Any]]:
    """One row per trial for ``lmtune status``; ``objectives`` (a multi-objective study's, the score first):
    ``values`` is a trial's recorded values, or for one that did not complete its objectives where it
    stopped (``values_at_end`` True)."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        r = record.read(t)
        values: list[float | None] | None = list(r.values) if r.values is not None else None
        at_end = False
        if objectives and values is None and t.state != TrialState.COMPLETE and r.curve:
            values, at_end = [_objective_at_end(r, name) for name in objectives], True
        rows.append({
            "number": r.number, "state": r.state,
            "value": r.value if t.state == TrialState.COMPLETE else _metric_at_end(r, metric),
            "values": values, "values_at_end": at_end,
            "units": r.units, "train_tokens": r.train_tokens, "wall_time_s": r.wall_time_s,
            "default": r.is_default, "params": r.params,
            "reason": r.fail_reason or (f"paused at {r.paused_at_units} units with a checkpoint (successive halving: "
                                        "goes on if it ranks among the best at this rung)"
                                        if r.paused_at_units is not None else ""),
            "perplexity": perplexity_of(t, metric),
        })
    return rows


def best_payload(study: optuna.Study, meta: dict[str, Any], trial: int | None = None) -> dict[str, Any]:
    """The best trial (and the default trial for comparison), JSON-ready; with ``trial``, that trial in the
    best's place (any COMPLETE trial: a point of a multi-objective study's front). A multi-objective study
    adds its objectives and its Pareto front."""
    best = best_trial(study) if trial is None else record.chosen_of(study.get_trials(deepcopy=False), trial)
    if best is None:
        return {"study": meta["study_name"], "metric": meta["metric"], "best": None}
    default = default_trial(study)
    out: dict[str, Any] = {
        "study": meta["study_name"], "metric": meta["metric"], "direction": meta["direction"],
        "trial": best.number, "value": record.value_of(best), "params": dict(best.params),
        "config": record.read(best).config, "perplexity": perplexity_of(best, meta["metric"]),
        # what the best changed from the default; a side without the setting has no key
        "changes": [{"name": c.name, "searched": c.searched, "changed": c.changed,
                     **{side: v for side, v in (("default", c.default), ("best", c.best)) if v is not ABSENT}}
                    for c in best_changes(study.get_trials(deepcopy=False), best, meta.get("config") or {})],
        "default": None if default is None else {"trial": default.number, "value": record.value_of(default),
                                                 "perplexity": perplexity_of(default, meta["metric"])},
    }
    objectives = objectives_of(study, meta)
    if len(objectives) > 1:
        names = [m for m, _ in objectives]
        out["objectives"] = [{"metric": m, "direction": d} for m, d in objectives]
        out["front"] = [{"trial": t.number, "values": dict(zip(names, t.values, strict=True)),
                         "params": dict(t.params), "default": record.read(t).is_default} for t in front(study)]
        out["values"] = dict(zip(names, best.values, strict=True))
        if default is not None and out["default"] is not None:
            out["default"]["values"] = dict(zip(names, default.values, strict=True))
    return out



def hf_training_arguments(config: dict[str, Any], *, total_examples: int,
                          examples_per_unit: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """``TrainingArguments(**args)`` keywords for a trial's settings, in that trial's own steps (the
    length it ran, ``total_examples``, as ``max_steps`` of its batch; evaluation every
    ``examples_per_unit`` examples; warm-up in steps), and apart the settings TrainingArguments has no
    field for (`lmtune.integrations.hf_args.lmtune_only`)."""
    from lmtune.config import TrainingSection
    from lmtune.integrations import lmtune_only, optimizer_arguments, trainer_arguments

    hp = {**TrainingSection().model_dump(), **config}  # a study recorded before a field existed
    args: dict[str, Any] = {"output_dir": "lmtune-best",
                            **trainer_arguments(hp, total_examples=total_examples, examples_per_unit=examples_per_unit),
                            **(optimizer_arguments(hp) or {})}
    precision = hp.get("precision")
    args["bf16"], args["fp16"] = precision == "bf16", precision == "fp16"
    return args, lmtune_only(hp)
