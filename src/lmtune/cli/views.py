"""What the CLI shows: pure functions from a study to rows and documents (no printing here)."""

from __future__ import annotations

from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from lmtune.study import best_trial, default_trial, record
from lmtune.study.record import TrialRecord


def _metric_at_end(r: TrialRecord, metric: str) -> float | None:
    return r.curve[-1].get("metrics", {}).get(metric) if r.curve else None


def perplexity_of(t: FrozenTrial, metric: str) -> float | None:
    """Causal-LM studies: the validation perplexity at the point the trial reported (its value), else the
    last evaluation; None for other tasks."""
    points = [p["metrics"] for p in record.read(t).curve if "eval_perplexity" in p.get("metrics", {})]
    if not points:
        return None
    at_value = [m for m in points if t.value is not None and m.get(metric) == t.value]
    return float((at_value or points)[-1]["eval_perplexity"])


def trial_rows(study: optuna.Study, metric: str) -> list[dict[str, Any]]:
    rows = []
    for t in study.get_trials(deepcopy=False):
        r = record.read(t)
        rows.append({
            "number": r.number, "state": r.state,
            "value": t.value if t.state == TrialState.COMPLETE else _metric_at_end(r, metric),
            "units": r.units, "train_tokens": r.train_tokens, "wall_time_s": r.wall_time_s,
            "default": r.is_default, "params": r.params,
            "reason": r.fail_reason or "", "perplexity": perplexity_of(t, metric),
        })
    return rows


def best_payload(study: optuna.Study, meta: dict[str, Any]) -> dict[str, Any]:
    """The best trial (and the default trial for comparison), JSON-ready."""
    best = best_trial(study)
    if best is None:
        return {"study": meta["study_name"], "metric": meta["metric"], "best": None}
    default = default_trial(study)
    out: dict[str, Any] = {
        "study": meta["study_name"], "metric": meta["metric"], "direction": meta["direction"],
        "trial": best.number, "value": best.value, "params": dict(best.params),
        "config": record.read(best).config, "perplexity": perplexity_of(best, meta["metric"]),
        "default": None if default is None else {"trial": default.number, "value": default.value,
                                                 "perplexity": perplexity_of(default, meta["metric"])},
    }
    return out


# lmtune hyperparameter → transformers.TrainingArguments field
_HF_NAMES = {
    "learning_rate": "learning_rate", "batch_size": "per_device_train_batch_size",
    "eval_batch_size": "per_device_eval_batch_size", "epochs": "num_train_epochs", "max_steps": "max_steps",
    "weight_decay": "weight_decay", "warmup_ratio": "warmup_ratio", "lr_scheduler": "lr_scheduler_type",
    "max_grad_norm": "max_grad_norm", "seed": "seed", "beta1": "adam_beta1", "beta2": "adam_beta2",
    "eps": "adam_epsilon", "gradient_checkpointing": "activation_checkpointing",
}
_HF_OPTIM = {"adamw": "adamw_torch", "adam": "adamw_torch", "sgd": "sgd", "adafactor": "adafactor"}


def hf_training_arguments(config: dict[str, Any], *, default_batch_size: int | None = None) -> dict[str, Any]:
    """TrainingArguments JSON for the best config; settings HF has no field for go under
    ``lmtune_extra`` (dropout lives in the model config; Adam's L2 vs AdamW's decoupled decay).

    lmtune's ``max_steps`` counts steps at the study's *default* batch size (so every trial's length is
    in examples); HF's counts the trial's own steps, so it is converted to the steps the trial ran."""
    out: dict[str, Any] = {hf: config[k] for k, hf in _HF_NAMES.items() if config.get(k) is not None}
    if config.get("max_steps") and default_batch_size:
        examples = int(config["max_steps"]) * default_batch_size
        out["max_steps"] = -(-examples // int(config["batch_size"]))
    out["optim"] = _HF_OPTIM[config.get("optimizer", "adamw")]
    if config.get("optimizer") == "sgd":
        out["optim_args"] = f"momentum={config.get('momentum', 0.9)},nesterov={config.get('nesterov', False)}"
    precision = config.get("precision")
    out["bf16"], out["fp16"] = precision == "bf16", precision == "fp16"
    out["lmtune_extra"] = {k: config[k] for k in ("dropout", "attention_dropout", "layer_decay", "optimizer")
                           if k in config}
    return out
