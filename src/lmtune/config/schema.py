"""The study configuration: typed, validated, frozen.

Field names here are the user-facing interface of the YAML. Every section forbids unknown keys so a
typo is an error, not a silently ignored setting.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from lmtune.errors import ConfigError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _booleans_are_not_numbers(cls, data: Any) -> Any:
        """pydantic reads ``true`` as 1 for an int field; ``workers: true`` is a mistake, not one worker."""
        if isinstance(data, dict):
            for name, value in data.items():
                info = cls.model_fields.get(name)
                if isinstance(value, bool) and info is not None and not takes_bool(info.annotation):
                    raise ValueError(f"{name}: {str(value).lower()} is a boolean; give a number")
        return data


def takes_bool(annotation: Any) -> bool:
    if annotation is bool or annotation is Any:
        return True
    if get_origin(annotation) is Literal:
        return any(isinstance(a, bool) for a in get_args(annotation))
    return any(takes_bool(a) for a in get_args(annotation)) if get_args(annotation) else False


# Costs lmtune measures itself, usable as objectives (study.objectives) next to any reported metric: the
# trial's real train tokens and device-hours (wall time x devices, GPUs or CPU alike), and the trained model's
# serving cost: its parameters (a LoRA adapter's count with the base it is served on, so its rank counts),
# trainable parameters, and latency per example on the evaluation device (batch of one, median of 16,
# measured at the end of the trial).
COST_METRICS = ("train_tokens", "train_gpu_hours", "serve_params", "serve_trainable_params", "serve_latency_ms")
SERVE_METRICS = ("serve_params", "serve_trainable_params", "serve_latency_ms")


class Objective(_Section):
    """One objective of a multi-objective study: a metric and whether it is maximized or minimized."""

    metric: str
    # None: the metric's own sense (costs and losses minimize; accuracy, f1 maximize); required for others
    direction: Literal["maximize", "minimize"] | None = None

    def resolved(self) -> Literal["maximize", "minimize"]:
        if self.direction is not None:
            return self.direction
        if self.metric in COST_METRICS:
            return "minimize"
        natural = known_direction(self.metric)
        if natural is None:
            raise ValueError(f"study.objectives: say whether '{self.metric}' is maximized or minimized, e.g. "
                             f"{{metric: {self.metric}, direction: minimize}}")
        return "minimize" if natural == "minimize" else "maximize"


class StudySection(_Section):
    name: str = "lmtune"  # the Optuna study's name
    dir: str = "runs/lmtune"  # the study folder: study.db, lmtune.json, cache/, trials/, report/
    storage: str | None = None  # default sqlite:///<dir>/study.db; any SQLAlchemy URL
    metric: str = "eval_accuracy"  # what trials are ranked by, on the validation split; one the task reports
    # must match the metric (loss: minimize; accuracy, f1: maximize)
    direction: Literal["maximize", "minimize"] = "maximize"
    seed: int = 0  # data splits and the sampler
    # several objectives (a Pareto front, docs/objectives.md): the first is the score (study.metric and
    # direction follow it), the others are costs or other metrics, e.g. [{metric: eval_accuracy},
    # {metric: serve_params}]; None or one: a single-objective study ranked by study.metric
    objectives: list[Objective] | None = None

    @model_validator(mode="before")
    @classmethod
    def _first_objective(cls, data: Any) -> Any:
        """With objectives, study.metric and study.direction are the first objective's (set them equal, or
        leave them out)."""
        if not isinstance(data, dict) or not data.get("objectives"):
            return data
        objectives = data["objectives"]
        if not isinstance(objectives, list) or not all(isinstance(o, dict) for o in objectives):
            return data  # the field's own validation says what is wrong
        first = Objective.model_validate(objectives[0])
        direction = first.resolved()
        if data.get("metric", first.metric) != first.metric or data.get("direction", direction) != direction:
            raise ValueError(f"study.metric/direction ({data.get('metric')}, {data.get('direction')}) differ from the "
                             f"first objective ({first.metric}, {direction}); the first objective is the study's "
                             "score: leave study.metric and study.direction out, or set them to it")
        return {**data, "metric": first.metric, "direction": direction}

    @field_validator("objectives")
    @classmethod
    def _distinct(cls, v: list[Objective] | None) -> list[Objective] | None:
        if v is None:
            return v
        if not v:
            raise ValueError("study.objectives is empty; list at least the score, e.g. [{metric: eval_accuracy}]")
        names = [o.metric for o in v]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"study.objectives: {', '.join(twice)} listed twice; list each metric once")
        for o in v:
            o.resolved()
        return v

    def objective_list(self) -> list[tuple[str, Literal["maximize", "minimize"]]]:
        """(metric, direction) of every objective; one (study.metric) in a single-objective study."""
        if not self.objectives:
            return [(self.metric, self.direction)]
        return [(o.metric, o.resolved()) for o in self.objectives]

    @property
    def multi_objective(self) -> bool:
        return bool(self.objectives) and len(self.objectives or []) > 1

    @field_validator("name")
    @classmethod
    def _named(cls, v: str) -> str:
        if not v.strip():  # an empty name makes a study no command can tell apart ("study ''")
            raise ValueError("the study needs a name (it is empty or only spaces); e.g. study.name: sst2-lr-search")
        return v

    @field_validator("dir")
    @classmethod
    def _dir_given(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("the study needs a folder (it is empty or only spaces); e.g. study.dir: runs/sst2")
        return v


SPLIT_NAMES = ("train", "validation", "test")


class TaskSection(_Section):
    # script: the user's own training program is the trial (`command`; docs/bring-your-own-trainer.md)
    type: Literal["classification", "causal_lm", "script"] = "classification"
    # builtin:minilm-l6, builtin:smollm2-135m, a local HF folder, or a hub id where a hub is reachable
    model: str = "builtin:minilm-l6"
    # a built-in, a file, a glob, a folder (save_to_disk, or train/validation/test files), a datasets hub
    # name, or a mapping of split -> file/glob as datasets.load_dataset's data_files (docs/data.md)
    dataset: str | dict[str, str] = "builtin:rotten_tomatoes"
    dataset_config: str | None = None  # the `name` argument of datasets.load_dataset
    text_column: str = "text"  # the input text
    text_pair_column: str | None = None  # a second text, for sentence-pair tasks
    label_column: str = "label"  # integer or string classes (strings become the saved model's id2label)
    # train rows (splits the data lacks are carved from train with study.seed)
    train_size: int | None = Field(default=2000, ge=1)
    validation_size: int | None = Field(default=500, ge=1)  # rows trials are ranked on
    test_size: int | None = Field(default=1000, ge=1)  # never seen by a trial; lmtune final scores on it
    max_length: int = Field(default=128, ge=8, le=32768)  # causal_lm: the block length of packed text
    trust_remote_code: bool = False  # let transformers run the model's own code
    messages_column: str = "messages"  # causal_lm chat data: a list of {role, content} per row
    assistant_only: bool = True  # causal_lm chat data: loss on the assistant replies only
    # task.type script: the program and its arguments, e.g. [python, train.py] or [torchrun,
    # --nproc-per-node, "2", train.py]; run in `workdir` (default: the config file's folder)
    command: list[str] | None = None
    workdir: str | None = None  # task.type script: the folder the command runs in (default: the config file's)
    # task.type script: the metrics the script reports (study.metric and search.prune_metric must be
    # among them, checked before anything trains)
    metrics: list[str] | None = None
    # task.type script: values of the script's own parameters (names that are not training fields) in
    # the default-settings trial, the baseline; trial.params[name] gives the trial's value
    defaults: dict[str, Any] | None = None
    # classification: your own metrics, "package.module:function" or "path/file.py:function" taking HF's
    # EvalPrediction (logits, labels) and returning {name: number}; reported as eval_NAME (and test_NAME)
    compute_metrics: str | None = None
    # task.type script: the command is a fine-tuning tool, tuned without editing it (docs/tools/index.md): trl (TRL's
    # CLI), hf (TrainingArguments flags: run_glue.py...), llamafactory, axolotl; lmtune writes the trial's
    # settings the tool's way and attaches itself to the tool's transformers.Trainer. none: only the
    # {name} placeholders of task.command are filled
    tool: Literal["none", "trl", "hf", "llamafactory", "axolotl"] | None = None
    # the tool's own config file (llamafactory, axolotl; optional for trl): each trial runs a copy with its
    # settings set, named by {config} in task.command
    tool_config: str | None = None
    # extra or renamed keys: an lmtune name (a training field or a task.defaults parameter) -> the tool's key
    # (dotted for a nested key of the config file), e.g. {my_warmup: warmup_steps}
    tool_args: dict[str, str] = Field(default_factory=dict)
    # what lmtune final's runs add, so the tool scores the test split, e.g. {dataset_test_split: test}
    tool_final_args: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _script_defaults(cls, data: Any) -> Any:
        """A script brings its own model and data: the built-in defaults do not apply to it. "" means
        none (a round trip through lmtune.json keeps that); task.train_size then has no default either."""
        if isinstance(data, dict) and data.get("type") == "script":
            data = {"model": "", "dataset": "", "text_column": "", "label_column": "", **data}
            if not data["dataset"]:
                data.setdefault("train_size", None)
        return data

    @field_validator("dataset")
    @classmethod
    def _split_files(cls, v: str | dict[str, str]) -> str | dict[str, str]:
        if isinstance(v, dict):
            wrong = sorted(set(v) - set(SPLIT_NAMES))
            if wrong or "train" not in v:
                raise ValueError(f"a mapping of split -> file needs a 'train' key and takes only "
                                 f"{', '.join(SPLIT_NAMES)} (got {', '.join(sorted(v))}); e.g. "
                                 "{train: data/train.csv, validation: data/dev.csv, test: data/test.csv}")
        return v

    @model_validator(mode="after")
    def _script(self) -> TaskSection:
        if self.type == "script":
            if not self.command or not all(isinstance(a, str) and a for a in self.command):
                raise ValueError("task.type script needs task.command: the program and its arguments as a list, "
                                 "e.g. command: [python, train.py]")
            if not self.metrics:
                raise ValueError("task.type script needs task.metrics: the metric names the script reports "
                                 "(e.g. metrics: [eval_loss, eval_accuracy]), so study.metric is checked "
                                 "before anything trains")
            clash = sorted(set(self.defaults or {}) & set(TrainingSection.model_fields))
            if clash:
                raise ValueError(f"task.defaults.{clash[0]}: a training field; set it in the training section "
                                 "(task.defaults is for the script's own parameters)")
        if self.tool is not None:
            if self.type != "script":
                raise ValueError(f"task.tool {self.tool}: a tool is run as task.type script (its command in "
                                 "task.command); set task.type: script")
            needs_config = self.tool in ("llamafactory", "axolotl")
            if needs_config and not self.tool_config:
                raise ValueError(f"task.tool {self.tool}: set task.tool_config to the tool's YAML config (each trial "
                                 "runs a copy with its settings) and put {config} where the command takes it")
            if self.tool_config and not any("{config}" in part for part in self.command or []):
                raise ValueError("task.tool_config: put {config} in task.command where the tool takes its config "
                                 f"file, e.g. {_tool_example(self.tool)}")
        elif self.tool_config or self.tool_args or self.tool_final_args:
            raise ValueError("task.tool_config / tool_args / tool_final_args: set task.tool (trl, hf, llamafactory, "
                             "axolotl or none) too")
        if self.compute_metrics is not None and self.type != "classification":
            raise ValueError(f"task.compute_metrics is for task.type classification (lmtune's trainer hands it the "
                             f"logits); this task is {self.type}"
                             + ("; a script reports its own metrics (list them in task.metrics)"
                                if self.type == "script" else ""))
        if self.type != "script":
            for name in ("command", "workdir", "metrics", "defaults"):
                if getattr(self, name) is not None:
                    raise ValueError(f"task.{name} is for task.type script only (this task is {self.type}); "
                                     f"remove it, or set task.type: script")
        return self


Optimizer = Literal["adamw", "adam", "sgd", "adafactor"]
Scheduler = Literal["linear", "cosine", "constant"]
Precision = Literal["fp32", "bf16", "fp16", "auto"]
LM_METRICS = ("eval_loss", "eval_perplexity", "eval_token_accuracy", "train_loss")
CLASSIFICATION_METRICS = ("eval_loss", "eval_accuracy", "eval_f1", "train_loss")
# The one lower-is-better rule (validation, pruners, report): a metric is minimized when a word of its
# name (split at anything but letters and digits) is one of these.
LOWER_IS_BETTER = frozenset({"loss", "perplexity", "ppl", "error", "err", "wer", "cer", "mse", "mae", "rmse"})


def lower_is_better(metric: str) -> bool:
    """``eval_loss``, ``test_perplexity``, ``wer`` are better when lower; ``eval_accuracy`` is not."""
    return bool(set(re.split(r"[^a-z0-9]+", metric.lower())) & LOWER_IS_BETTER)


HIGHER_IS_BETTER = frozenset({"accuracy", "acc", "f1", "precision", "recall", "auc", "bleu", "rouge", "matthews",
                              "mcc", "pearson", "spearman", "exact", "match"})


def known_direction(metric: str) -> str | None:
    """The direction a metric of a known kind is optimised in (None: not known, the user decides)."""
    words = set(re.split(r"[^a-z0-9]+", metric.lower()))
    if words & LOWER_IS_BETTER:
        return "minimize"
    return "maximize" if words & HIGHER_IS_BETTER else None


# training.eval_every when unset: steps at the default batch size between evaluations; a study that halves
# (halving, auto under a token budget: tuner/plan.py `halves`) evaluates as often as HALVING_EVALS_PER_EPOCH
# times an epoch where that is more often (tuner/plan.py, `unit_examples`)
DEFAULT_EVAL_EVERY = 50
HALVING_EVALS_PER_EPOCH = 8


class TrainingSection(_Section):
    """The default training settings: the "default" row of every comparison. The search overrides
    whatever its space names; every field here may also appear in ``search.space``."""

    learning_rate: float = Field(default=5e-5, gt=0)  # peak learning rate, after warm-up
    batch_size: int = Field(default=32, ge=1)  # the effective batch (micro_batch_size accumulates to it)
    epochs: float = Field(default=2, gt=0)  # passes over the train split (fractions allowed)
    max_steps: int | None = Field(default=None, ge=1)  # at the default batch size; wins over epochs
    # steps at the default batch size; None: 50, or for halving and auto under a token budget, where that is more
    # often, about 8 evaluations an epoch, so that their rungs can fall within the first epoch (tuner/plan.py)
    eval_every: int | None = Field(default=None, ge=1)
    eval_batch_size: int = Field(default=128, ge=1)  # evaluation batch (no gradients: larger is faster)
    weight_decay: float = Field(default=0.0, ge=0)
    dropout: float | None = Field(default=0.1, ge=0, lt=1)  # None keeps the model's own value
    attention_dropout: float | None = Field(default=None, ge=0, lt=1)  # None follows `dropout`
    optimizer: Optimizer = "adamw"  # momentum/nesterov apply to sgd, beta1/beta2/eps to adam(w)
    momentum: float = Field(default=0.9, ge=0, lt=1)  # sgd only
    nesterov: bool = False  # sgd only
    beta1: float = Field(default=0.9, ge=0, lt=1)  # adam and adamw only
    beta2: float = Field(default=0.999, ge=0, lt=1)  # adam and adamw only
    eps: float = Field(default=1e-8, gt=0)  # adam and adamw only
    lr_scheduler: Scheduler = "linear"  # the shapes of transformers' get_scheduler
    warmup_ratio: float = Field(default=0.0, ge=0, le=1)  # fraction of the trial's steps with a linear warm-up
    max_grad_norm: float | None = Field(default=1.0, gt=0)  # gradient clipping; None: no clipping
    # batches of similar length (less padding, faster) instead of one shuffle cut in slices, HF Trainer's
    # default sampler, which lmtune follows by default so that it trains as HF does (docs/benchmarks/parity.md)
    group_by_length: bool = False
    # layer-wise LR decay: each block below trains at this times the rate of the one above; 1: off
    layer_decay: float = Field(default=1.0, gt=0, le=1)
    # auto: autocast on a GPU for models above 135M parameters (bf16, else fp16), else fp32; the trial records why
    precision: Precision = "fp32"
    micro_batch_size: int | None = Field(default=None, ge=1)  # None: start at batch_size, halve on OOM
    gradient_checkpointing: bool = False  # recompute activations in backward: less memory, ~1/3 more compute
    # causal LM: each micro-batch's examples laid end to end in rows of at most task.max_length tokens, with
    # positions restarting and attention kept within each example (less padding, the same update)
    packing: bool = False
    lora_enabled: bool = False  # wrap the model with peft LoRA; the base is frozen
    lora_r: int = Field(default=8, ge=1)  # LoRA rank
    lora_alpha: float = Field(default=16.0, gt=0)  # LoRA scaling
    lora_dropout: float = Field(default=0.05, ge=0, lt=1)  # dropout on the LoRA branch
    # None: the architecture's attention projections; a list, or one string "q_proj,v_proj" (searchable)
    lora_target_modules: list[str] | str | None = None
    # QLoRA: the frozen base's linear layers loaded in 4-bit NF4 (bitsandbytes, on a CUDA GPU); LoRA only
    lora_quantization: Literal["none", "4bit"] = "none"
    seed: int = 0  # initialisation of new heads, data order, dropout
    early_stopping_patience: int | None = Field(default=None, ge=1)  # in evaluations
    # the improvement that counts for early_stopping_patience
    early_stopping_min_delta: float = Field(default=0.0, ge=0)

    @classmethod
    def of(cls, hparams: Mapping[str, Any]) -> TrainingSection:
        """The typed section a trainer trains with, rebuilt from a trial file's ``hparams`` (the study's
        training section with the trial's settings applied; a PBT exploit's or a replayed schedule's on top).
        Names that are not training fields (a script trial's own parameters) are not its business; a value
        the schema refuses is a ConfigError naming the setting. Every default is the one stated above."""
        known = {k: v for k, v in hparams.items() if k in cls.model_fields}
        try:
            return cls.model_validate(known)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(x) for x in first.get("loc", ()))
            raise ConfigError(f"training.{where}: {first.get('msg')} (the trial's value {first.get('input')!r}); "
                              "fix it in the training section or search.space") from None

    def merged(self, changes: Mapping[str, Any]) -> TrainingSection:
        """This section with ``changes`` applied (an exploit's or a schedule's settings), validated again."""
        return TrainingSection.of({**self.model_dump(), **changes})


class PBTSection(_Section):
    """Population-based training (``search.strategy: pbt``)."""

    population_size: int | None = Field(default=None, ge=2)  # None: search.n_trials (--n-trials)
    ready_every: int | None = Field(default=None, ge=1)  # steps at training.batch_size; None = eval_every
    quantile: float = Field(default=0.25, gt=0, le=0.5)  # bottom fraction that copies the top fraction
    # an explored setting is redrawn from the space, else perturbed
    resample_probability: float = Field(default=0.25, ge=0, le=1)
    perturb_factors: tuple[float, float] = (0.8, 1.2)  # an explored setting is multiplied by one of these
    mutable: list[str] | None = None  # None: each parameter's own `mutable` (lr, wd, dropout, momentum...)


class SearchSection(_Section):
    # auto (the default; docs/search.md): under budget.max_train_tokens, halving; otherwise TPE + ASHA on
    # eval_loss, each drawn configuration planned at the longest length the space allows. halving: synchronous
    # successive halving sized to the budget, paused configurations continued (strategies/halving.py)
    strategy: Literal["auto", "grid", "random", "bayes", "asha", "hyperband", "halving", "pbt"] = "auto"
    # for strategies bayes, hyperband and auto: tpe, gp, or nsga2 (genetic; for several objectives)
    sampler: Literal["tpe", "gp", "nsga2"] = "tpe"
    pruner: Literal["none", "median", "asha", "hyperband"] | None = None  # None: the strategy's own
    n_trials: int = Field(default=12, ge=1)  # trials to finish in all (--n-trials overrides); the default trial is one
    preset: str | None = None  # classification, full-finetune or lora-sft: a space that search.space overlays
    # name -> entry (float/int/categorical; log, step, when, grid, mutable)
    space: dict[str, Any] = Field(default_factory=dict)
    include_default: bool = True  # run the default settings as the first trial (the baseline)
    max_failures: int = Field(default=5, ge=1)  # failed trials in one run that end it
    # random trials before TPE/GP model the space; None: sized to the trials the budget allows
    # (a quarter of them, at least 2, at most 10; strategies.samplers.startup_trials)
    n_startup_trials: int | None = Field(default=None, ge=0)
    # first rung of asha/hyperband/halving (None: asha, hyperband: see pruners.py; halving: a quarter epoch, moved
    # later where the finalist would be chosen within three quarters of an epoch; set, it is kept as given)
    min_units: int | None = Field(default=None, ge=1)
    # what the pruner compares at each rung (None: study.metric). eval_loss separates configurations
    # early, while accuracy still sits at the majority class for good and bad ones alike.
    prune_metric: str | None = None
    # asha/hyperband/halving: 1/reduction_factor of a rung go on (None: 3 for asha and hyperband, 2 for halving)
    reduction_factor: int | None = Field(default=None, ge=2)
    # warm start: earlier study directories whose prior_top_k best configurations run first (tuner/priors.py)
    prior_studies: list[str] = Field(default_factory=list)
    prior_top_k: int = Field(default=3, ge=1)  # configurations taken from each prior study
    # search the learning rate where fine-tuning practice puts it (1e-5..5e-4; LoRA 5e-5..5e-3) within the range
    # written (strategies/practice.py); None: on for auto, off for the other strategies
    practice_prior: bool | None = None
    pbt: PBTSection = PBTSection()

    @model_validator(mode="after")
    def _practice_prior(self) -> SearchSection:
        if self.practice_prior and self.strategy in ("grid", "pbt"):
            raise ValueError(f"search.practice_prior: narrows what a sampler draws; strategy {self.strategy} "
                             "draws nothing from the space (grid runs its points, pbt perturbs its population): "
                             "remove practice_prior or use a sampling strategy (auto, random, bayes, asha, hyperband, "
                             "halving)")
        return self

    @property
    def uses_practice_prior(self) -> bool:
        """Whether the learning rate is searched where practice puts it (auto unless turned off)."""
        return self.strategy in ("auto", "halving") if self.practice_prior is None else self.practice_prior

    @property
    def factor(self) -> int:
        """The reduction factor: search.reduction_factor, else the strategy's (halving 2, the pruners 3)."""
        return self.reduction_factor or (2 if self.strategy == "halving" else 3)


# What a sharded trial (execution.shard_model) cannot run: checked here for fixed settings, by the trainer
# for searched ones (lmtune.training.session)
SHARDED_FP16 = ("training.precision: fp16 with execution.shard_model: the sharded trainer has no fp16 loss "
                "scaling; use bf16 (or fp32)")
SHARDED_4BIT = ("training.lora_quantization: 4bit with execution.shard_model: a 4-bit base is not sharded here; "
                "set one of them off")


class ExecutionSection(_Section):
    backend: Literal["local", "ray"] = "local"  # local subprocesses, or a Ray cluster
    workers: int = Field(default=1, ge=1)  # trials at once (one GPU each where GPUs exist)
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto: CUDA where visible, else CPU
    threads_per_worker: int | None = Field(default=None, ge=1)  # None: cores / workers
    trial_timeout: float | None = Field(default=None, gt=0)  # seconds
    # backend local: fork each trial's trainer from a warm parent that imported torch/transformers and read
    # the weights once per study (still one fresh process per trial); false: start every trainer cold
    warm_start: bool = True
    # backend: ray. None or "auto": an existing cluster (RAY_ADDRESS, or one `ray start`ed here), else a
    # local Ray started in-process; "ray://host:10001" (Ray Client, e.g. KubeRay) or "host:port".
    address: str | None = None
    cpus_per_trial: float = Field(default=1, gt=0)  # backend ray: CPUs each trial reserves
    gpus_per_trial: float = Field(default=0, ge=0)  # GPUs each trial reserves; 2 or more: a data-parallel trial
    # lmtune's own trainer as N data-parallel processes per trial (training/distributed.py), the effective
    # batch unchanged. None: gpus_per_trial when it is 2 or more (one process per GPU), else 1. On CPU the
    # processes share the trial's threads (gloo): the multi-process path without GPUs.
    processes_per_trial: int | None = Field(default=None, ge=1)
    # with 2+ processes per trial: shard the weights, gradients and optimizer state over them (FSDP2
    # fully_shard per block) instead of a full copy on each, for a model that does not fit one device
    shard_model: bool = False
    max_retries: int = Field(default=2, ge=0)  # a trial whose Ray node/actor died is re-run this often
    # `lmtune worker` (shared studies): a trial without a heartbeat for grace_period seconds is failed and
    # its configuration enqueued again. grace_period None: 2 × heartbeat_interval.
    heartbeat_interval: int = Field(default=30, ge=1)
    grace_period: int | None = Field(default=None, ge=1)  # seconds without a heartbeat before a trial is failed

    @property
    def trial_processes(self) -> int:
        """Processes per trial of lmtune's own trainer (1: no data parallelism)."""
        return self.processes_per_trial or (int(self.gpus_per_trial) if self.gpus_per_trial >= 2 else 1)

    @model_validator(mode="after")
    def _address(self) -> ExecutionSection:
        a = self.address
        if a not in (None, "auto") and not a.startswith("ray://") and ":" not in a:
            raise ValueError(f"execution.address: {a!r} is not a Ray address; use auto, ray://HOST:10001 "
                             "(Ray Client, e.g. KubeRay) or HOST:6379")
        n, gpus = self.processes_per_trial, self.gpus_per_trial
        if n and gpus >= 1 and n != int(gpus):
            raise ValueError(f"execution.processes_per_trial {n} with gpus_per_trial {gpus:g}: a data-parallel "
                             "trial runs one process per GPU; set one of them")
        if self.shard_model and self.trial_processes < 2:
            raise ValueError("execution.shard_model: sharding needs 2 or more processes per trial; set "
                             "execution.processes_per_trial (or gpus_per_trial) to 2 or more, or shard_model: false")
        if self.grace_period is not None and self.grace_period <= self.heartbeat_interval:
            raise ValueError(f"execution.grace_period: {self.grace_period}s must exceed heartbeat_interval "
                             f"({self.heartbeat_interval}s), or a live trial would be declared dead")
        return self


class BudgetSection(_Section):
    max_trials: int | None = Field(default=None, ge=1)  # trials finished in all; running trials finish
    # seconds for this run of the command, held by prediction: no trial starts that would end after it
    max_wall_time: float | None = Field(default=None, gt=0)
    # a cap: no trial starts that the tokens left could not train to its end
    max_train_tokens: int | None = Field(default=None, ge=1)
    # caps that hold by prediction (docs/budgets.md): device-hours of GPU trials (wall time x GPUs), and money
    # (wall time x devices x the price of a device-hour of their kind, budget.prices; CPU trials cost too)
    max_gpu_hours: float | None = Field(default=None, gt=0)
    max_cost: float | None = Field(default=None, gt=0)
    # price of one device-hour by device kind: cpu, cuda (what execution.device names, without its index)
    prices: dict[str, float] = Field(default_factory=dict)


class WandbSection(_Section):
    project: str | None = None  # None: the study name
    mode: Literal["online", "offline", "disabled"] = "offline"  # offline: local files, `wandb sync` later
    entity: str | None = None  # W&B team or user; None: your default


class TrackingSection(_Section):
    """Where each trial is also logged as a run (lmtune.tuner.tracking); none by default."""

    mlflow: str | None = None  # a tracking URI: sqlite:///mlflow.db, http://127.0.0.1:5000
    experiment: str | None = None  # MLflow experiment; None: the study name
    tensorboard: str | None = None  # a folder for event files
    wandb: WandbSection | None = None

    @property
    def enabled(self) -> bool:
        return any(v is not None for v in (self.mlflow, self.tensorboard, self.wandb))


class StudyConfig(_Section):
    study: StudySection = StudySection()
    task: TaskSection = TaskSection()
    training: TrainingSection = TrainingSection()
    search: SearchSection = SearchSection()
    execution: ExecutionSection = ExecutionSection()
    budget: BudgetSection = BudgetSection()
    proxy: ProxySection | None = None  # a two-stage study: search on a proxy, transfer the top-k (tuner.proxy)
    tracking: TrackingSection = TrackingSection()

    @model_validator(mode="before")
    @classmethod
    def _lm_metric_default(cls, data: Any) -> Any:
        """A causal-LM study without a metric is judged by eval_loss (lower is better)."""
        if not isinstance(data, dict):
            return data
        task, study = data.get("task"), data.get("study") or {}
        if isinstance(task, dict) and task.get("type") == "causal_lm" and isinstance(study, dict) \
                and "metric" not in study and not study.get("objectives"):
            data = {**data, "study": {**study, "metric": "eval_loss", "direction": study.get("direction", "minimize")}}
        search = data.get("search") or {}
        if isinstance(task, dict) and task.get("type") == "script" and isinstance(search, dict) \
                and "strategy" not in search and "prune_metric" not in search \
                and "eval_loss" not in (task.get("metrics") or []):
            # the default strategy (auto) prunes on eval_loss; a script that does not report it is pruned
            # on the metric it is judged by (an explicit `strategy: auto` is refused below instead)
            metric = (data.get("study") or {}).get("metric", StudySection().metric)
            data = {**data, "search": {**search, "prune_metric": metric}}
        return data

    @model_validator(mode="after")
    def _metric_direction(self) -> StudyConfig:
        reported: tuple[str, ...] | list[str]
        if self.task.type == "script":
            reported = self.task.metrics or []
            if self.execution.processes_per_trial and self.execution.processes_per_trial > 1:
                raise ValueError("execution.processes_per_trial: a script starts its own processes; put the launcher "
                                 "in task.command, e.g. [torchrun, --nproc-per-node, '2', train.py]")
            if self.execution.shard_model:
                raise ValueError("execution.shard_model: shards lmtune's own trainer; a script shards its model "
                                 "itself (e.g. accelerate launch with an FSDP config in task.command)")
            if self.proxy is not None and self.proxy.truncate_layers is not None:
                raise ValueError("proxy.truncate_layers: lmtune cannot cut a script's model (the script loads and "
                                 "builds it itself); set proxy.model to a smaller model instead: the proxy stage's "
                                 "trials get it as trial.model")
            if self.proxy is not None and not self.task.model:
                raise ValueError("proxy.model: a script's proxy stage gets trial.model = proxy.model and its target "
                                 "stage task.model; set task.model to the target model")
            if not self.task.dataset and self.task.train_size is None and self.training.max_steps is None:
                raise ValueError("task.type script: set task.train_size (the examples in one epoch of your script's "
                                 "data), task.dataset (lmtune counts its train split and trial.splits() loads it) "
                                 "or training.max_steps, so that each trial's length and the rungs are known")
        else:
            reported = LM_METRICS if self.task.type == "causal_lm" else CLASSIFICATION_METRICS
            if self.execution.shard_model:
                fixed = {**self.training.model_dump(), **{k: None for k in self.search.space}}  # searched: per trial
                if fixed["precision"] == "fp16":
                    raise ValueError(SHARDED_FP16)
                if fixed["lora_enabled"] and fixed["lora_quantization"] == "4bit":
                    raise ValueError(SHARDED_4BIT)
        fix = " (or add it to task.metrics if your script reports it)" if self.task.type == "script" else ""
        if self.task.compute_metrics:  # eval_* names beyond the built-ins are checked against what the
            reported = (*reported, *(m for m in (self.study.metric, self.search.prune_metric)  # function
                                     if m and m.startswith("eval_")))                       # reports (tuner.plan)
        if self.study.metric not in reported:  # else every trial would fail after training, for want of it
            raise ValueError(f"study.metric: '{self.study.metric}' is not reported for task.type {self.task.type}; "
                             f"use one of {', '.join(reported)}{fix}")
        if self.search.prune_metric is not None and self.search.prune_metric not in reported:
            raise ValueError(f"search.prune_metric: '{self.search.prune_metric}' is not reported for task.type "
                             f"{self.task.type}; use one of {', '.join(reported)}{fix}")
        if self.task.type == "script" and self.search.strategy == "auto" and self.search.prune_metric is None \
                and "eval_loss" not in reported:  # auto prunes on eval_loss: it would never prune
            raise ValueError("search.strategy: auto prunes on eval_loss, which task.metrics does not list; add "
                             "eval_loss to task.metrics or set search.prune_metric")
        self._tool_gets_every_setting()
        self._objectives_measurable(reported, fix)
        if self.budget.max_cost is not None:  # every kind a trial may run on needs its price, before anything runs
            kinds = {"auto": ["cpu", "cuda"], "cpu": ["cpu"], "cuda": ["cuda"]}[self.execution.device]
            missing = [k for k in kinds if k not in self.budget.prices]
            if missing:
                raise ValueError(f"budget.max_cost: set budget.prices for {', '.join(missing)} (the price of one "
                                 f"device-hour; execution.device {self.execution.device} may run trials there), "
                                 "e.g. prices: {cpu: 0.05, cuda: 2.5}")
        natural = known_direction(self.study.metric)
        if natural is not None and natural != self.study.direction:  # the best trial would be the worst
            raise ValueError(f"study.direction: metric '{self.study.metric}' is better when "
                             f"{'lower' if natural == 'minimize' else 'higher'}; set study.direction: {natural}")
        return self

    def _objectives_measurable(self, reported: tuple[str, ...] | list[str], fix: str) -> None:
        """Every objective is a metric the trials report or a cost lmtune measures; what cannot rank or prune
        several objectives soundly is refused."""
        if not self.study.objectives:
            return
        script = self.task.type == "script"
        for o in self.study.objectives[1:]:
            if o.metric in SERVE_METRICS and script and o.metric not in reported:
                raise ValueError(f"study.objectives: {o.metric} is measured by lmtune's trainer on the model it "
                                 "trained; a script trial must report it itself (add it to task.metrics and report "
                                 "it with lmtune.report), or use train_tokens / train_gpu_hours")
            if o.metric not in COST_METRICS and o.metric not in reported:
                raise ValueError(f"study.objectives: '{o.metric}' is not reported for task.type {self.task.type}; "
                                 f"use one of {', '.join((*reported, *COST_METRICS))}{fix}")
        if not self.study.multi_objective:
            return
        if self.search.strategy == "pbt":
            raise ValueError("study.objectives: PBT copies the best member by one score; with several objectives "
                             "'best' is a front, not a member. Use strategy auto, asha, hyperband, bayes or random "
                             "(auto and asha prune with multi-objective successive halving)")
        if self.search.pruner == "median":
            raise ValueError("search.pruner: median compares one value per trial; with several objectives use "
                             "asha or hyperband (multi-objective successive halving, docs/objectives.md) or none")
        if self.proxy is not None:
            raise ValueError("proxy: a two-stage study carries its proxy's top-k by one score; with several "
                             "objectives run a one-stage study (remove the proxy section)")

    def _tool_gets_every_setting(self) -> None:
        """A tool trial (task.tool): every searched setting, and every training field the config sets, must reach
        the tool (refused here, before anything runs, rather than searched without effect)."""
        task = self.task
        if task.tool is None or task.tool == "none":
            return
        from lmtune.integrations import undeliverable

        changed = [n for n, info in TrainingSection.model_fields.items() if getattr(self.training, n) != info.default]
        names = [*self.search.space, *changed]  # (a saved study's config sets every field: the defaults are not news)
        bad = undeliverable(task.tool, names, tool_args=task.tool_args, training_fields=TRAINING_FIELDS)
        if bad:
            where = "search.space" if bad[0] in self.search.space else "training"
            raise ValueError(f"{where}.{bad[0]}: task.tool {task.tool} has no setting lmtune can give it for {bad[0]} "
                             f"(docs/tools/index.md lists what each tool takes); map it to the tool's key in "
                             f"task.tool_args, or leave it out")
        command = " ".join(task.command or [])
        own = [n for n in self.search.space if n not in TRAINING_FIELDS and n not in task.tool_args
               and "{" + n + "}" not in command]
        if own:
            raise ValueError(f"search.space.{own[0]}: not a training field, so {task.tool} gets it only through "
                             f"task.tool_args ({{{own[0]}: <the tool's key>}}) or {{{own[0]}}} in task.command")
        if self.search.strategy == "pbt" and task.tool in ("llamafactory", "axolotl"):
            raise ValueError(f"search.strategy pbt: pausing and resuming {task.tool} through its checkpoints is not "
                             "tested yet (docs/tools/index.md); use auto, asha or hyperband")


TRAINING_FIELDS = frozenset(TrainingSection.model_fields)


def _tool_example(tool: str) -> str:
    return {"llamafactory": "[llamafactory-cli, train, '{config}']", "axolotl": "[axolotl, train, '{config}']"}.get(
        tool, "[trl, sft, --config, '{config}']")


class ProxySection(_Section):
    """Stage 1 of a two-stage study: search on a cheaper proxy, then run its top-k configurations on the
    target (``lmtune.tuner.proxy``). The proxy is ``model`` (a smaller model) or ``truncate_layers``
    (the target with only its first k transformer blocks); unset fields follow the target's settings."""

    model: str | None = None  # a smaller model (folder, hub id or built-in)
    truncate_layers: int | None = None  # the target with only its first k transformer blocks
    data_fraction: float | None = None  # of the target's train split
    max_steps: int | None = Field(default=None, ge=1)  # at the default batch size
    strategy: Literal["auto", "grid", "random", "bayes", "asha", "hyperband"] | None = None  # None: search.strategy
    n_trials: int | None = Field(default=None, ge=1)  # None: search.n_trials (or --n-trials)
    top_k: int = Field(default=3, ge=1)  # proxy configurations run on the target
    refine_trials: int = Field(default=0, ge=0)  # then this many target trials of search.strategy

    @field_validator("truncate_layers")
    @classmethod
    def _k(cls, k: int | None) -> int | None:
        if k is not None and k < 1:
            raise ValueError(f"must be at least 1 (the number of transformer blocks the proxy keeps), got {k}; "
                             "e.g. proxy.truncate_layers: 2")
        return k

    @field_validator("data_fraction")
    @classmethod
    def _fraction(cls, f: float | None) -> float | None:
        if f is not None and not 0 < f <= 1:
            raise ValueError(f"must be in (0, 1], a fraction of the train split, got {f}; e.g. 0.25")
        return f

    @model_validator(mode="after")
    def _one_proxy(self) -> ProxySection:
        if self.model is not None and self.truncate_layers is not None:
            raise ValueError("set either proxy.model (a smaller model) or proxy.truncate_layers (the target "
                             "cut to its first k blocks), not both; remove one of them")
        if self.model is None and self.truncate_layers is None:
            raise ValueError("a proxy needs proxy.model (a smaller model: folder, hub id or built-in) or "
                             "proxy.truncate_layers: k (the target with only its first k blocks); set one")
        return self
