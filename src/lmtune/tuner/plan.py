"""Everything decided once per study before any trial runs: paths, data cache, units, space.

Tokenization happens here, once per study (cached by content hash), never in a trial.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from lmtune.config import (
    CLASSIFICATION_METRICS,
    DEFAULT_EVAL_EVERY,
    HALVING_EVALS_PER_EPOCH,
    SERVE_METRICS,
    SearchSection,
    StudyConfig,
    TaskSection,
    TrainingSection,
    resolved_space,
)
from lmtune.data import DataSpec, build_cache, load_meta, load_splits
from lmtune.errors import ConfigError
from lmtune.protocol import TrialSpec
from lmtune.space import FloatParam, Space
from lmtune.strategies import Narrowed, practice_space, traits
from lmtune.study import StudyPaths, prepare_folder
from lmtune.training import MetricFunctionError, check_model_folder, load_tokenizer, metric_names, resolve_model


@dataclass(frozen=True)
class TrialBase:
    """What every trial spec of a study shares, taken from its config once by `make_plan`, so that
    `trial_spec` (called per trial) needs the plan and no `StudyConfig`."""

    task_type: str = "classification"
    metric: str = "eval_accuracy"
    direction: Literal["maximize", "minimize"] = "maximize"
    trust_remote_code: bool = False
    length: tuple[float, int | None, int] = (1.0, None, 8)  # training.epochs, max_steps, batch_size
    world_size: int = 1  # ranks of lmtune's own trainer (execution.processes_per_trial)
    shard_model: bool = False  # execution.shard_model: those ranks shard the model (FSDP)
    compute_metrics: str | None = None  # task.compute_metrics, as the trainer loads it
    command: tuple[str, ...] = ()  # a script trial's program, its folder, its data and what it must read
    workdir: str = ""
    data: dict[str, Any] | None = None
    must_read: tuple[str, ...] = ()
    must_read_final: tuple[str, ...] = ()
    count_tokens: bool = False  # budget.max_train_tokens: a script must report the tokens it trained
    tool: dict[str, Any] | None = None  # a tool trial (task.tool): which tool, its config file and mappings
    measure_serving: bool = False  # an objective is a serving cost (study.objectives): the trainer measures it

    @staticmethod
    def of(task: TaskSection, training: TrainingSection, space: Space, *, metric: str,
           direction: Literal["maximize", "minimize"], data: DataSpec, world_size: int,
           count_tokens: bool, shard_model: bool = False, measure_serving: bool = False) -> TrialBase:
        """``data``: the task's data (`task_data_spec`); ``world_size``: execution.trial_processes;
        ``count_tokens``: whether budget.max_train_tokens is set."""
        script = task.type == "script"
        return TrialBase(task_type=task.type, metric=metric, direction=direction,
                         trust_remote_code=task.trust_remote_code,
                         length=(training.epochs, training.max_steps, training.batch_size), world_size=world_size,
                         shard_model=shard_model and not script,
                         compute_metrics=metric_function_ref(task.compute_metrics) if task.compute_metrics else None,
                         command=tuple(task.command or ()) if script else (),
                         workdir=str(Path(task.workdir or ".").resolve()) if script else "",
                         data=asdict(data) if script and task.dataset else None,
                         must_read=tuple(must_read(training, space, task.defaults)) if script else (),
                         must_read_final=tuple(must_read(training, space, task.defaults, final=True)) if script else (),
                         count_tokens=script and count_tokens, tool=tool_of(task) if script else None,
                         measure_serving=measure_serving and not script)


@dataclass(frozen=True)
class Plan:
    paths: StudyPaths
    storage: str
    model: str
    data_cache: Path
    train_rows: int
    train_tokens: int               # real tokens in the train split (one epoch)
    examples_per_unit: int
    total_examples: int
    space: Space
    defaults: dict[str, Any]
    trial: TrialBase = TrialBase()
    narrowed: Narrowed | None = None  # what search.practice_prior narrowed in the space written (None: nothing)

    @property
    def max_units(self) -> int:
        return max(1, math.ceil(self.total_examples / self.examples_per_unit))

    @property
    def tokens_per_example(self) -> float:
        """Mean real tokens of one train example (the train split's)."""
        return self.train_tokens / max(self.train_rows, 1)


def task_data_spec(task: TaskSection, *, seed: int) -> DataSpec:
    """The task's data and splits (``seed``: study.seed, which draws the splits)."""
    if task.type == "script":  # the script gives the columns their meaning: only those the config names are checked
        return DataSpec(dataset=task.dataset, dataset_config=task.dataset_config, text_column=task.text_column,
                        text_pair_column=task.text_pair_column, label_column=task.label_column or None,
                        sizes={"train": task.train_size, "validation": task.validation_size, "test": task.test_size},
                        seed=seed, task="script", messages_column=task.messages_column)
    return DataSpec(dataset=task.dataset, dataset_config=task.dataset_config, text_column=task.text_column,
                    text_pair_column=task.text_pair_column,
                    label_column=task.label_column if task.type == "classification" else None,
                    sizes={"train": task.train_size, "validation": task.validation_size, "test": task.test_size},
                    seed=seed, task=task.type,
                    messages_column=task.messages_column if task.type == "causal_lm" else None,
                    assistant_only=task.assistant_only)


def make_plan(cfg: StudyConfig) -> Plan:
    """Resolve the model, tokenize the data once (cached), and fix the units of fidelity.

    One evaluation unit is ``eval_every`` steps at the *default* batch size, in examples (`unit_examples`);
    the training length is ``max_steps`` at the default batch size (or ``epochs`` of the train split).

    This is the recipes' set-up step (`Tuner`, `TwoStageTuner`, `FinalRunner`, `train_one`): the one
    place below them that reads the whole config, once per study, into the `Plan` that components read;
    the space is built here (``plan.space``) and handed on from the plan.
    """
    paths = StudyPaths(prepare_folder(Path(cfg.study.dir), field="study.dir"))
    task, tr = cfg.task, cfg.training
    data = task_data_spec(task, seed=cfg.study.seed)
    if task.type == "script":
        model, cache, train_rows, train_tokens = _script_data(task, data, paths)
        defaults = {**tr.model_dump(), **(task.defaults or {})}  # the script's own parameters' baseline values
    else:
        check_compute_metrics(task.compute_metrics, metric=cfg.study.metric, prune_metric=cfg.search.prune_metric)
        model, cache, train_rows, train_tokens = _tokenized_data(task, data, paths)
        defaults = tr.model_dump()
    space = resolved_space(cfg)  # the Space validation built for this config (kept by the config layer)
    narrowed = None
    if cfg.search.uses_practice_prior and space.get("lora_enabled") is None:  # (LoRA on and off: no one prior)
        space, narrowed = practice_space(space, defaults, lora=tr.lora_enabled)
    total = longest_examples(space, defaults, train_rows=train_rows)
    halving = halves(cfg.search, token_budget=cfg.budget.max_train_tokens is not None,
                     objectives=len(cfg.study.objective_list()))
    trial = TrialBase.of(task, tr, space, metric=cfg.study.metric, direction=cfg.study.direction, data=data,
                         world_size=cfg.execution.trial_processes, shard_model=cfg.execution.shard_model,
                         count_tokens=cfg.budget.max_train_tokens is not None,
                         measure_serving=any(m in SERVE_METRICS for m, _ in cfg.study.objective_list()))
    return Plan(paths=paths, storage=cfg.study.storage or paths.default_storage(), model=model,
                data_cache=cache, train_rows=train_rows, train_tokens=train_tokens,
                examples_per_unit=unit_examples(tr, halves=halving, train_rows=train_rows, total=total),
                total_examples=total, space=space,
                defaults=defaults, trial=trial, narrowed=narrowed)


def halves(search: SearchSection, *, token_budget: bool, objectives: int) -> bool:
    """Whether the study's strategy is successive halving: ``halving``, or ``auto`` under a token budget for one
    objective with no pruner named (`Tuner._auto_halves` may still fall back to ASHA where the budget is too
    small for two configurations); read from the config alone, so every run of a study agrees."""
    t = traits(search.strategy)
    return t.halves or (t.halves_under_token_budget and token_budget and search.pruner is None and objectives == 1)


def unit_examples(training: TrainingSection, *, halves: bool, train_rows: int, total: int) -> int:
    """Training examples between two evaluations (one evaluation unit): ``training.eval_every`` steps at the
    default batch size; when it is unset, ``DEFAULT_EVAL_EVERY`` steps, or where the study ``halves``, if that
    is more often, the whole number of default-batch steps nearest ``HALVING_EVALS_PER_EPOCH`` evaluations an
    epoch (lmtune's trainer then evaluates only at the rungs). The halving places its rungs in these units (a
    quarter epoch, three quarters, one, ...): with 50 steps of 32 on 1,500 train rows a unit is more than an epoch,
    every rung a whole epoch, and on the recorded tables (docs/benchmarks/search-replay.md) ``auto`` at 2x left
    15-23 % of its budget unspent and ended 0.6-2.3 points further from the best configuration than on the
    8-an-epoch grid. At most ``total``."""
    steps = training.eval_every or DEFAULT_EVAL_EVERY
    per_unit = steps * training.batch_size
    if training.eval_every is None and halves and train_rows > 0:
        steps_per_eval = int(train_rows / (HALVING_EVALS_PER_EPOCH * training.batch_size) + 0.5)  # the nearest
        per_unit = min(per_unit, max(1, steps_per_eval) * training.batch_size)
    return max(1, min(per_unit, total))


def _tokenized_data(task: TaskSection, data: DataSpec, paths: StudyPaths) -> tuple[str, Path, int, int]:
    """lmtune's trainer: the model folder, and the data tokenized once per study (cached by content hash):
    (model, cache folder, train rows, train tokens)."""
    model = resolve_model(task.model, fallback_cache=paths.cache)
    check_model_folder(model, trust_remote_code=task.trust_remote_code)
    tokenizer = load_tokenizer(model, trust_remote_code=task.trust_remote_code)
    cache = build_cache(data, tokenizer, model, task.max_length, paths.cache)
    train_meta = load_meta(cache)["splits"]["train"]
    return model, cache, int(train_meta["rows"]), int(train_meta["tokens"])


def _script_data(task: TaskSection, data: DataSpec, paths: StudyPaths) -> tuple[str, Path, int, int]:
    """A script trains itself: nothing is tokenized here. ``trial.model`` is task.model resolved (a
    built-in becomes its folder) when the config names one; an epoch is the train split of task.dataset
    (what ``trial.splits()`` gives) when the config names one, else ``task.train_size`` rows."""
    model = resolve_model(task.model, fallback_cache=paths.cache) if task.model else ""
    train_rows = len(load_splits(data)["train"]) if task.dataset else int(task.train_size or 1)
    return model, Path(""), train_rows, 0


def metric_function_ref(ref: str) -> str:
    """``task.compute_metrics`` as the trainer must load it: a file path made absolute (trainers may run
    elsewhere), a module reference unchanged (the driver's folder goes first on the trainer's sys.path)."""
    where, _, name = ref.rpartition(":")
    return f"{Path(where).resolve()}:{name}" if where.endswith(".py") else ref


def check_compute_metrics(ref: str | None, *, metric: str, prune_metric: str | None) -> None:
    """Load ``task.compute_metrics`` (``ref``) and call it on made-up predictions before anything trains: a
    module that does not import, a function that raises or returns no numbers, and a study.metric
    (``metric``) or search.prune_metric it does not return are refused here, not after every trial has
    trained."""
    if not ref:
        return
    try:
        names = metric_names(metric_function_ref(ref), search_path=[os.getcwd()])
    except MetricFunctionError as exc:
        raise ConfigError(str(exc)) from None
    reported = [*CLASSIFICATION_METRICS, *(n for n in names if n not in CLASSIFICATION_METRICS)]
    for where, name in (("study.metric", metric), ("search.prune_metric", prune_metric)):
        if name and name not in reported:
            raise ConfigError(f"{where}: '{name}' is not reported: task.compute_metrics ({ref}) returns "
                              f"{', '.join(names)}; use one of {', '.join(reported)}")


def training_examples(hparams: Mapping[str, Any], *, train_rows: int, default_batch_size: int) -> int:
    """How many training examples a trial with ``hparams`` sees: ``max_steps`` steps at the *default*
    batch size when set (it wins), else ``epochs`` passes over the train split. This is the one place a
    trial's training length is decided; its LR schedule and warm-up span exactly this length."""
    if hparams.get("max_steps"):
        return max(1, int(hparams["max_steps"]) * default_batch_size)
    return max(1, round(float(hparams["epochs"]) * train_rows))


def longest_length(space: Space, defaults: Mapping[str, Any], *, train_rows: int) -> dict[str, Any]:
    """The values of the length fields the space searches (``epochs``, ``max_steps``) that give the
    longest training the space allows; empty when it searches neither."""
    best = max(_length_ends(space, defaults), key=lambda c: _examples(c, defaults, train_rows))
    return {k: v for k, v in best.items() if space.get(k) is not None}


def shortest_length(space: Space, defaults: Mapping[str, Any], *, train_rows: int) -> dict[str, Any]:
    """The values of the length fields the space searches that give the shortest training it allows."""
    best = min(_length_ends(space, defaults), key=lambda c: _examples(c, defaults, train_rows))
    return {k: v for k, v in best.items() if space.get(k) is not None}


def length_of(examples: int, hparams: Mapping[str, Any], *, train_rows: int,
              default_batch_size: int) -> dict[str, Any]:
    """The length fields that train exactly ``examples`` train examples (as `training_examples` reads them),
    in the field ``hparams`` already sets: ``max_steps`` (at the default batch size) where it is set, else
    ``epochs`` (a fraction of a pass)."""
    if hparams.get("max_steps"):
        return {"max_steps": max(1, examples // default_batch_size)}
    return {"epochs": examples / train_rows}


def shortest_examples(space: Space, defaults: Mapping[str, Any], *, train_rows: int) -> int:
    """The shortest training length (in examples) the space allows: what the token cap must leave room
    for before a trial whose length the sampler has not drawn yet may start."""
    return min(_examples(c, defaults, train_rows) for c in _length_ends(space, defaults))


def longest_fitting(space: Space, defaults: Mapping[str, Any], *, train_rows: int,
                    max_examples: float) -> dict[str, Any] | None:
    """The values of the searched length fields (``epochs``, ``max_steps``) that give the longest training the
    space allows within ``max_examples`` train examples; None when even the shortest does not fit, or the
    space searches no length. A float range gives the longest value that fits (on its step, if any)."""
    options: dict[str, list[Any]] = {}
    for name in ("epochs", "max_steps"):
        param = space.get(name)
        if param is None:
            options[name] = [defaults[name]]
            continue
        values = param.grid_values()
        if values is None:  # a continuous float range: the ends, and the value that just fits
            assert isinstance(param, FloatParam)
            per = train_rows if name == "epochs" else int(defaults["batch_size"])
            values = (*param.extremes(), min(max(max_examples / max(per, 1), param.low), param.high))
        options[name] = [v for v in values if v is not None or name == "max_steps"]
    fits = [c for c in ({"epochs": e, "max_steps": m} for e in options["epochs"] for m in options["max_steps"])
            if _examples(c, defaults, train_rows) <= max_examples]
    if not fits or not any(space.get(k) is not None for k in ("epochs", "max_steps")):
        return None
    best = max(fits, key=lambda c: _examples(c, defaults, train_rows))
    return {k: v for k, v in best.items() if space.get(k) is not None}


def _length_ends(space: Space, defaults: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every combination of the ends of the searched length fields (the defaults' where not searched)."""
    lengths = {"epochs": [defaults["epochs"]], "max_steps": [defaults["max_steps"]]}
    for name in lengths:
        param = space.get(name)
        if param is not None:
            lengths[name] = [v for v in param.extremes() if v is not None or name == "max_steps"]
    return [{"epochs": e, "max_steps": m} for e in lengths["epochs"] for m in lengths["max_steps"]]


def _examples(length: Mapping[str, Any], defaults: Mapping[str, Any], train_rows: int) -> int:
    return training_examples(length, train_rows=train_rows, default_batch_size=int(defaults["batch_size"]))


def longest_examples(space: Space, defaults: Mapping[str, Any], *, train_rows: int) -> int:
    """The longest training length the space allows: the maximum resource of pruners and PBT, so
    rungs stay in examples and a longer trial is never cut at a shorter trial's end."""
    longest = {**defaults, **longest_length(space, defaults, train_rows=train_rows)}
    return training_examples(longest, train_rows=train_rows, default_batch_size=int(defaults["batch_size"]))


def must_read(training: TrainingSection, space: Space, script_defaults: Mapping[str, Any] | None = None, *,
              final: bool = False) -> list[str]:
    """What a script trial must read (lmtune.script): the names the search draws, the training fields
    the config sets to other than lmtune's defaults, the script's own parameters (``task.defaults``), and
    in final runs the seed (the runs differ by it)."""
    fields = TrainingSection.model_fields
    changed = {k for k, v in training.model_dump().items() if v != fields[k].default}
    return sorted(set(space.names) | changed | set(script_defaults or {}) | ({"seed"} if final else set()))


def tool_of(task: TaskSection) -> dict[str, Any] | None:
    """A tool trial's part of the spec: the tool, its config file (absolute), the user's key mappings."""
    if task.tool is None:
        return None
    config = str((Path(task.workdir or ".") / task.tool_config).resolve()) if task.tool_config else None
    return {"name": task.tool, "config": config, "args": dict(task.tool_args),
            "final_args": dict(task.tool_final_args)}


def trial_spec(plan: Plan, *, number: int, hparams: dict[str, Any], device: str, threads: int | None,
               **extra: Any) -> TrialSpec:
    """The frozen spec of one trial: the study's shared part (``plan.trial``) and this trial's settings."""
    base = plan.trial
    extra.setdefault("save_adapter", bool(hparams.get("lora_enabled")))  # so the best adapter can be exported
    epochs, max_steps, batch_size = base.length
    total = training_examples({"epochs": epochs, "max_steps": max_steps, **hparams}, train_rows=plan.train_rows,
                              default_batch_size=batch_size)
    script = base.task_type == "script"
    if script:
        extra["extra"] = {**extra.get("extra", {}), "data": base.data,
                          **({"count_tokens": True} if base.count_tokens else {})}
        extra.update(command=list(base.command), workdir=base.workdir,
                     must_read=list(base.must_read_final if extra.get("evaluate_test") else base.must_read),
                     save_adapter=False)
        if base.tool is not None:  # lmtune delivers the settings itself and checks what the tool ran with
            extra["extra"]["tool"] = base.tool
            extra["must_read"] = []
    else:
        extra.setdefault("world_size", base.world_size)
        extra.setdefault("shard_model", base.shard_model)
    if base.measure_serving:
        extra.setdefault("measure_serving", True)
    if base.compute_metrics:
        extra.update(compute_metrics=base.compute_metrics, compute_metrics_path=[os.getcwd()])
    return TrialSpec(trial=number, model=plan.model, task_type=base.task_type,
                     data_cache="" if script else str(plan.data_cache),
                     hparams=hparams, examples_per_unit=plan.examples_per_unit,
                     total_examples=total, metric=base.metric,
                     direction=base.direction, output_dir=str(plan.paths.trial_dir(number)),
                     device=device, threads=threads, trust_remote_code=base.trust_remote_code, **extra)
