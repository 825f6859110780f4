"""What the CLI shows: pure functions from a study to rows and documents (no printing here)."""

from __future__ import annotations

from typing import Any

import optuna
import yaml
from optuna.trial import FrozenTrial, TrialState

from lmtune.study import best_trial, default_trial


def _metric_at_end(t: FrozenTrial, metric: str) -> float | None:
    curve = t.user_attrs.get("curve") or []
    return curve[-1]["metrics"].get(metric) if curve else None


def perplexity_of(t: FrozenTrial, metric: str) -> float | None:
    """Causal-LM studies: the validation perplexity at the point the trial reported (its value), else the
    last evaluation; None for other tasks."""
    points = [p["metrics"] for p in t.user_attrs.get("curve") or [] if "eval_perplexity" in p.get("metrics", {})]
    if not points:
        return None
    at_value = [m for m in points if t.value is not None and m.get(metric) == t.value]
    return float((at_value or points)[-1]["eval_perplexity"])


def trial_rows(study: optuna.Study, metric: str) -> list[dict[str, Any]]:
    rows = []
    for t in study.get_trials(deepcopy=False):
        rows.append({
            "number": t.number, "state": t.state.name,
            "value": t.value if t.state == TrialState.COMPLETE else _metric_at_end(t, metric),
            "units": (t.user_attrs.get("curve") or [{}])[-1].get("units"),
            "train_tokens": t.user_attrs.get("train_tokens"), "wall_time_s": t.user_attrs.get("wall_time_s"),
            "default": bool(t.user_attrs.get("is_default")), "params": dict(t.params),
            "reason": t.user_attrs.get("fail_reason", ""), "perplexity": perplexity_of(t, metric),
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
        "config": best.user_attrs.get("config", {}), "perplexity": perplexity_of(best, meta["metric"]),
        "default": None if default is None else {"trial": default.number, "value": default.value,
                                                 "perplexity": perplexity_of(default, meta["metric"])},
    }
    return out


def training_yaml(meta: dict[str, Any], config: dict[str, Any]) -> str:
    """The best configuration as an lmtune study YAML: the study's config with the best training
    settings as its defaults and no search (so ``lmtune tune`` of it trains that one configuration)."""
    full = dict(meta["config"])
    full["training"] = {k: v for k, v in config.items() if k in full.get("training", config)}
    full["search"] = {**full.get("search", {}), "space": {}, "preset": None, "n_trials": 1}
    full.pop("proxy", None)  # one configuration to train: no proxy stage
    return yaml.safe_dump(full, sort_keys=False)


# lmtune hyperparameter → transformers.TrainingArguments field
_HF_NAMES = {
    "learning_rate": "learning_rate", "batch_size": "per_device_train_batch_size",
    "eval_batch_size": "per_device_eval_batch_size", "epochs": "num_train_epochs", "max_steps": "max_steps",
    "weight_decay": "weight_decay", "warmup_ratio": "warmup_ratio", "lr_scheduler": "lr_scheduler_type",
    "max_grad_norm": "max_grad_norm", "seed": "seed", "beta1": "adam_beta1", "beta2": "adam_beta2",
    "eps": "adam_epsilon",
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
