"""Build a fake lmtune study directory with Optuna directly, following the tuner's conventions.

Used by the report tests and by ``scripts/check_report_chromium.py`` (which puts this folder on
``sys.path``). Values are deterministic: a smooth function of the hyperparameters, no RNG.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState

STUDY_NAME = "fake-sst"
DEFAULTS: dict[str, Any] = {"learning_rate": 5e-5, "weight_decay": 0.0, "batch_size": 32, "warmup_ratio": 0.0}
DISTRIBUTIONS = {
    "learning_rate": FloatDistribution(1e-5, 1e-3, log=True),
    "weight_decay": FloatDistribution(0.0, 0.1),
    "batch_size": CategoricalDistribution([16, 32, 64]),
}
# (learning_rate, weight_decay, batch_size); the first is the default trial.
PARAMS = [
    (5e-5, 0.0, 32),
    (2e-4, 0.01, 16),
    (8e-4, 0.05, 64),
    (1e-4, 0.02, 32),
    (3e-4, 0.08, 16),
    (1.5e-5, 0.03, 64),
    (2.5e-4, 0.0, 32),
    (6e-5, 0.06, 16),
]
CONFIG: dict[str, Any] = {
    "model": {"name": "all-MiniLM-L6-v2"},
    "task": {"kind": "classification", "train_size": 48, "max_length": 32},
    "training": {**DEFAULTS, "max_steps": 40, "eval_every": 8, "precision": "fp32", "optimizer": "adamw"},
    "search": {"strategy": "tpe", "n_trials": 10},
}


def accuracy_of(lr: float, wd: float, bs: int) -> float:
    """A smooth fake objective with its optimum near lr=2e-4, some weight decay, small batches."""
    return 0.90 - 0.04 * (math.log10(lr) + 3.7) ** 2 + 0.2 * wd - 0.0004 * bs


def _curve(final: float, units: int) -> list[dict[str, Any]]:
    points = []
    for u in range(1, units + 1):
        acc = final - (final - 0.5) * math.exp(-u / 1.5)
        metrics = {"eval_accuracy": acc, "eval_f1": acc - 0.02, "eval_loss": 1.2 - acc}
        points.append(
            {"step": 8 * u, "units": u, "examples": 256 * u, "tokens": 8192 * u, "metrics": metrics}
        )
    return points


def _attrs(i: int, params: dict[str, Any], final: float, units: int, pbt: bool) -> dict[str, Any]:
    attrs: dict[str, Any] = {
        "curve": _curve(final, units),
        "train_tokens": 8192 * units,
        "wall_time_s": 3.0 * units + 1.5,
        "overhead_s": 1.5,
        "config": {**CONFIG["training"], **params},  # trials record the whole training section
        "is_default": i == 0,
        "precision": "fp32",
    }
    if pbt:
        member, generation = i % 4, i // 4
        parent = None if generation == 0 else (i - 4 if i % 2 else 1)
        schedule = [
            {
                "units": 5 * g,
                "config": {
                    **DEFAULTS,
                    **params,
                    "learning_rate": params["learning_rate"] * (1.2 if g % 2 else 0.8) ** g,
                },
            }
            for g in range(generation + 1)
        ]
        attrs["pbt"] = {
            "member": member,
            "generation": generation,
            "parent_trial": parent,
            "schedule": schedule,
        }
    return attrs


def _add_trials(study: optuna.Study, *, pbt: bool, proxy_values: list[float] | None) -> None:
    for i, (lr, wd, bs) in enumerate(PARAMS):
        params = {"learning_rate": lr, "weight_decay": wd, "batch_size": bs}
        value = accuracy_of(lr, wd, bs)
        attrs = _attrs(i, params, value, 5, pbt)
        if proxy_values is not None:
            attrs["proxy_value"] = proxy_values[i]
        curve = attrs["curve"]
        study.add_trial(
            optuna.create_trial(
                value=curve[-1]["metrics"]["eval_accuracy"],
                params=params,
                distributions=DISTRIBUTIONS,
                user_attrs=attrs,
                intermediate_values={p["units"]: p["metrics"]["eval_accuracy"] for p in curve},
            )
        )
    pruned = {"learning_rate": 1e-5, "weight_decay": 0.09, "batch_size": 64}
    attrs = _attrs(99, pruned, 0.62, 2, False) | {"pruned_at_units": 2}
    study.add_trial(
        optuna.create_trial(
            state=TrialState.PRUNED,
            params=pruned,
            distributions=DISTRIBUTIONS,
            user_attrs=attrs,
            intermediate_values={1: 0.55, 2: 0.58},
        )
    )
    failed = {"learning_rate": 1e-3, "weight_decay": 0.0, "batch_size": 64}
    attrs = {
        "config": {**CONFIG["training"], **failed},
        "is_default": False,
        "train_tokens": 0,
        "wall_time_s": 4.0,
        "overhead_s": 4.0,
        "fail_reason": "CUDA out of memory at batch_size=64",
        "precision": "fp32",
    }
    study.add_trial(
        optuna.create_trial(
            state=TrialState.FAIL, params=failed, distributions=DISTRIBUTIONS, user_attrs=attrs
        )
    )


def _final_results() -> dict[str, Any]:
    runs = []
    for which, config, base in (
        ("default", DEFAULTS, 0.81),
        ("best", {**DEFAULTS, "learning_rate": 2e-4}, 0.86),
    ):
        for seed, jitter in zip((0, 1, 2), (-0.01, 0.0, 0.01), strict=True):
            acc = base + jitter
            metrics = {"test_accuracy": acc, "test_f1": acc - 0.02 + jitter / 2, "test_loss": 1.2 - acc}
            runs.append(
                {
                    "which": which,
                    "seed": seed,
                    "config": config,
                    "metrics": metrics,
                    "train_tokens": 40960,
                    "wall_time_s": 16.5,
                }
            )
    return {
        "metric_names": ["test_accuracy", "test_f1", "test_loss"],
        "seeds": [0, 1, 2],
        "runs": runs,
        "machine": "fake: 2-core CPU",
    }


def make_fake_study(study_dir: Path, *, proxy: bool = True, pbt: bool = True, final: bool = True) -> Path:
    """Create ``study_dir`` with study.db, lmtune.json and (if ``final``) final/results.json.

    Trials: 8 COMPLETE (trial 0 is the default), 1 PRUNED at 2 units, 1 FAIL. With ``proxy`` a
    ``<name>-proxy`` study is added and target trials carry ``proxy_value``; with ``pbt`` the
    COMPLETE trials carry ``pbt`` attrs (4 members x 2 generations).
    """
    study_dir.mkdir(parents=True, exist_ok=True)
    storage = f"sqlite:///{study_dir.resolve()}/study.db"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    meta: dict[str, Any] = {
        "study_name": STUDY_NAME,
        "storage": storage,
        "metric": "eval_accuracy",
        "direction": "maximize",
        "config": CONFIG,
    }
    proxy_values = None
    if proxy:
        proxy_study = optuna.create_study(
            study_name=f"{STUDY_NAME}-proxy", storage=storage, direction="maximize"
        )
        proxy_values = [
            accuracy_of(lr, wd, bs) - 0.1 + 0.01 * (i % 3) for i, (lr, wd, bs) in enumerate(PARAMS)
        ]
        for (lr, wd, bs), value in zip(PARAMS, proxy_values, strict=True):
            params = {"learning_rate": lr, "weight_decay": wd, "batch_size": bs}
            proxy_study.add_trial(
                optuna.create_trial(
                    value=value,
                    params=params,
                    distributions=DISTRIBUTIONS,
                    user_attrs={"train_tokens": 2048, "wall_time_s": 1.0},
                )
            )
        meta["stages"] = [
            {"name": f"{STUDY_NAME}-proxy", "role": "proxy"},
            {"name": STUDY_NAME, "role": "target"},
        ]
    study = optuna.create_study(study_name=STUDY_NAME, storage=storage, direction="maximize")
    study.set_user_attr("lmtune.metric", "eval_accuracy")
    study.set_user_attr("lmtune.direction", "maximize")
    _add_trials(study, pbt=pbt, proxy_values=proxy_values)
    (study_dir / "lmtune.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
    if final:
        (study_dir / "final").mkdir(exist_ok=True)
        (study_dir / "final" / "results.json").write_text(
            json.dumps(_final_results(), indent=2), encoding="utf-8"
        )
    return study_dir
