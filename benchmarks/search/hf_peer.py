"""The peer, as a careful user runs it today: HF ``Trainer.hyperparameter_search(backend="optuna")``
with Optuna's TPE sampler and ``HyperbandPruner``, evaluating every ``eval_steps`` optimizer steps
(``eval_strategy="steps"``, as the HF docs show), ``n_trials`` fixed, the same space as lmtune's arms.
Also the neutral retrainer: every arm's selected configuration is retrained here with fresh seeds and
scored once on the test split, so arms differ only in what they selected.

Train tokens are counted the way lmtune counts them: real (non-padding) tokens of every training
batch (``attention_mask`` summed in ``training_step``); evaluation is not counted.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from lmtune.config import StudyConfig
from lmtune.data.sources import load_splits
from lmtune.tuner.plan import task_data_spec

# lmtune's training field -> TrainingArguments field
HF_NAMES = {"learning_rate": "learning_rate", "batch_size": "per_device_train_batch_size",
            "weight_decay": "weight_decay", "epochs": "num_train_epochs", "warmup_ratio": "warmup_steps"}


@dataclass
class PeerTrial:
    params: dict[str, Any]
    state: str
    value: float | None
    train_tokens: int


@dataclass
class PeerResult:
    trials: list[PeerTrial] = field(default_factory=list)
    best_params: dict[str, Any] = field(default_factory=dict)
    best_value: float = float("nan")
    train_tokens: int = 0
    wall_s: float = 0.0


class Data:
    """The cell's three splits (lmtune's own split code and seed), tokenized for HF."""

    def __init__(self, cfg: StudyConfig, model: str) -> None:
        from transformers import AutoTokenizer

        t = cfg.task
        splits = load_splits(task_data_spec(cfg.task, seed=cfg.study.seed))
        values = {r[t.label_column] for r in splits["train"]}
        self.names = sorted(str(v) for v in values)
        index = {n: i for i, n in enumerate(self.names)}
        self.tokenizer = AutoTokenizer.from_pretrained(model)

        def encode(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
            texts = [str(r[t.text_column]) for r in rows]
            pairs = [str(r[t.text_pair_column]) for r in rows] if t.text_pair_column else None
            enc = self.tokenizer(texts, pairs, truncation=True, max_length=t.max_length)
            return [{"input_ids": enc["input_ids"][i], "attention_mask": enc["attention_mask"][i],
                     **({"token_type_ids": enc["token_type_ids"][i]} if "token_type_ids" in enc else {}),
                     "labels": index[str(r[t.label_column])]} for i, r in enumerate(rows)]

        self.train, self.validation, self.test = (encode(splits[s]) for s in ("train", "validation", "test"))


def _accuracy(pred: Any) -> dict[str, float]:
    logits, labels = pred.predictions, pred.label_ids
    return {"accuracy": float((np.argmax(logits, axis=-1) == labels).mean())}


def _trainer(data: Data, model: str, args: Any, **kw: Any) -> Any:
    import torch
    from transformers import AutoModelForSequenceClassification, DataCollatorWithPadding, Trainer

    class CountingTrainer(Trainer):  # type: ignore[misc]
        tokens = 0
        marks: ClassVar[list[int]] = []  # tokens spent at each model_init (the constructor's, then one per trial)

        def training_step(self, model: Any, inputs: dict[str, Any], num_items_in_batch: Any = None) -> Any:
            CountingTrainer.tokens += int(inputs["attention_mask"].sum())
            return super().training_step(model, inputs, num_items_in_batch)

    def model_init(trial: Any = None) -> Any:
        CountingTrainer.marks.append(CountingTrainer.tokens)
        return AutoModelForSequenceClassification.from_pretrained(model, num_labels=len(data.names))

    from transformers.trainer_callback import PrinterCallback

    torch.set_num_threads(torch.get_num_threads())
    trainer = CountingTrainer(model_init=model_init, args=args, train_dataset=data.train,
                              eval_dataset=data.validation, data_collator=DataCollatorWithPadding(data.tokenizer),
                              compute_metrics=_accuracy, **kw)
    trainer.remove_callback(PrinterCallback)  # one line per evaluation otherwise
    return trainer


def _args(out: Path, defaults: Mapping[str, Any], seed: int, *, eval_steps: int | None) -> Any:
    from transformers import TrainingArguments

    hf = {HF_NAMES[k]: defaults[k] for k in HF_NAMES if k in defaults}
    # a float in [0, 1) is a ratio of the steps; HF casts a searched value to the default's type
    hf["warmup_steps"] = float(hf.get("warmup_steps", 0.0))
    return TrainingArguments(
        output_dir=str(out), seed=seed, data_seed=seed, save_strategy="no", report_to=[], disable_tqdm=True,
        logging_strategy="no", use_cpu=True, per_device_eval_batch_size=64, lr_scheduler_type="linear",
        eval_strategy="steps" if eval_steps else "no", eval_steps=eval_steps, **hf)


def hp_space(space: Mapping[str, Mapping[str, Any]]) -> Any:
    """lmtune's space (the YAML form) as an HF ``hp_space`` for the Optuna backend."""

    def suggest(trial: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, p in space.items():
            if p["type"] == "float":
                v: Any = trial.suggest_float(name, p["low"], p["high"], log=bool(p.get("log")))
            elif p["type"] == "int":
                v = trial.suggest_int(name, p["low"], p["high"])
            else:
                v = trial.suggest_categorical(name, p["choices"])
            out[HF_NAMES[name]] = float(v) if name == "warmup_ratio" else v
        return out

    return suggest


def run_peer(cfg: StudyConfig, model: str, data: Data, space: Mapping[str, Mapping[str, Any]], *, seed: int,
             n_trials: int, eval_steps: int, workdir: Path) -> PeerResult:
    import optuna

    trainer = _trainer(data, model, _args(workdir, cfg.training.model_dump(), seed, eval_steps=eval_steps))
    result = PeerResult()
    t0 = time.monotonic()
    best = trainer.hyperparameter_search(
        direction="maximize", backend="optuna", hp_space=hp_space(space), n_trials=n_trials,
        sampler=optuna.samplers.TPESampler(seed=seed), pruner=optuna.pruners.HyperbandPruner())
    result.wall_s = time.monotonic() - t0
    study_trials = _last_study_trials
    cls = type(trainer)
    starts = cls.marks[1:]  # one per trial, in order
    spent = [b - a for a, b in zip(starts, [*starts[1:], cls.tokens], strict=False)]
    for t, tok in zip(study_trials, spent, strict=False):
        result.trials.append(PeerTrial(params=dict(t.params), state=t.state.name,
                                       value=None if t.value is None else float(t.value), train_tokens=tok))
    result.train_tokens = type(trainer).tokens
    result.best_value = float(best.objective)
    result.best_params = dict(best.hyperparameters)  # the Optuna trial's params: lmtune's names
    return result


_last_study_trials: list[Any] = []


def _capture_study() -> None:
    """HF returns only the best run; keep the study's trials (params, states, values) for the any-time
    curve and the expected-max analysis by wrapping optuna.create_study for the duration of a search."""
    import optuna

    if getattr(optuna.create_study, "_lmtune_wrapped", False):
        return
    real = optuna.create_study

    def create_study(*a: Any, **kw: Any) -> optuna.Study:
        study = real(*a, **kw)
        _last_study_trials.clear()
        original = study.optimize

        def optimize(*oa: Any, **okw: Any) -> None:
            try:
                original(*oa, **okw)
            finally:
                _last_study_trials.extend(study.get_trials(deepcopy=False))

        study.optimize = optimize  # type: ignore[method-assign]
        return study

    create_study._lmtune_wrapped = True  # type: ignore[attr-defined]
    optuna.create_study = create_study


_capture_study()


def retrain(cfg: StudyConfig, model: str, data: Data, params: Mapping[str, Any], *, seeds: list[int],
            workdir: Path) -> list[float]:
    """Test accuracy of ``params`` (lmtune names; defaults for the rest) trained afresh per seed."""
    out = []
    for s in seeds:
        trainer = _trainer(data, model, _args(workdir / f"retrain-{s}", {**cfg.training.model_dump(), **params}, s,
                                              eval_steps=None))
        trainer.train()
        metrics = trainer.evaluate(eval_dataset=data.test)
        out.append(float(metrics["eval_accuracy"]))
    return out


def expected_max(values: list[float], n: int) -> float:
    """Dodge et al. (2019): the expected best of ``n`` trials drawn (with replacement) from the
    empirical distribution of ``values``."""
    v = sorted(values)
    if not v:
        return math.nan
    N = len(v)
    return float(sum(v[i] * (((i + 1) / N) ** n - (i / N) ** n) for i in range(N)))
