"""Which training fields a search may vary, and when a searched field would change nothing.

A field that is accepted in ``search.space``, recorded as the trial's parameter and exported, but that
the trainer ignores, is a defect nobody sees. So the space is refused when validated if it names:

* a field that is fixed per study by design (`FIXED_PER_STUDY`), or
* a field whose effect needs a setting that can never hold in this study (`NEEDS`: ``momentum`` when
  the optimizer is never ``sgd``, ``epochs`` when a fixed ``max_steps`` wins, ...), or
* a training length (``epochs``/``max_steps``) under PBT, whose members all train the same length.

`check_task_fields` refuses, fixed or searched, what lmtune's own trainer cannot do for the task:
``packing`` for anything but a causal LM (or for plain text, already cut into full blocks), and
``lora_quantization: 4bit`` without LoRA or searched under PBT. A script trial gets these as settings
and decides for itself.

``tests/training/test_searchable_effects.py`` proves that every other field changes what the trainer
does; ``tests/config/test_effects.py`` tests the refusals.
"""

from __future__ import annotations

from typing import Any

from lmtune.config.schema import StudyConfig
from lmtune.space import Space, SpaceError

# Fields a study fixes for every trial, so that trials stay comparable.
FIXED_PER_STUDY = {
    "eval_every": "evaluations happen at the same amounts of training data in every trial (rungs are "
                  "training.eval_every steps at the default batch size, in examples); set training.eval_every",
}

_ADAM = frozenset({"adam", "adamw"})
_ANY = object()  # "any value other than None"

# field -> (context field, values of the context under which the field takes effect, why)
NEEDS: dict[str, tuple[str, Any, str]] = {
    "momentum": ("optimizer", frozenset({"sgd"}), "momentum is used by optimizer sgd only"),
    "nesterov": ("optimizer", frozenset({"sgd"}), "nesterov is used by optimizer sgd only"),
    "beta1": ("optimizer", _ADAM, "beta1 is used by optimizers adam and adamw only"),
    "beta2": ("optimizer", _ADAM, "beta2 is used by optimizers adam and adamw only"),
    "eps": ("optimizer", _ADAM, "eps is used by optimizers adam and adamw only"),
    "early_stopping_min_delta": ("early_stopping_patience", _ANY,
                                 "the minimum improvement matters only with early stopping"),
    "epochs": ("max_steps", frozenset({None}), "a fixed training.max_steps wins over epochs"),
}


def check_effects(cfg: StudyConfig, space: Space) -> None:
    """Raise `SpaceError` naming the first searched field that could not change what a trial does."""
    defaults = cfg.training.model_dump()
    for name in space.names:
        if name in FIXED_PER_STUDY:
            raise SpaceError(f"search.space.{name}: cannot be searched: {FIXED_PER_STUDY[name]}")
        if name in ("epochs", "max_steps") and cfg.search.strategy == "pbt":
            raise SpaceError(f"search.space.{name}: PBT members all train the same length (they copy each "
                             f"other's checkpoints); set training.{name} instead, or use another strategy")
        if name in NEEDS:
            context, wanted, why = NEEDS[name]
            param = space.get(context)
            possible = (defaults[context],) if param is None else param.extremes()
            ok = any(v is not None for v in possible) if wanted is _ANY else bool(set(possible) & wanted)
            if not ok:
                shown = ", ".join(repr(v) for v in possible)
                raise SpaceError(f"search.space.{name}: would change nothing: {why}, and {context} is "
                                 f"always {shown} in this study; set training.{context} (or search it) "
                                 f"so that {name} takes effect, or remove {name} from the space")
    check_task_fields(cfg, space)


def _values(cfg: StudyConfig, space: Space, name: str) -> tuple[str, tuple[Any, ...]]:
    """Where a training field is set (its space entry, else the training section) and the values it takes."""
    param = space.get(name)
    if param is None:
        return f"training.{name}", (getattr(cfg.training, name),)
    return f"search.space.{name}", param.extremes()


def check_task_fields(cfg: StudyConfig, space: Space) -> None:
    """Raise `SpaceError` for packing outside causal-LM chat data and for a 4-bit base without LoRA (or
    searched under PBT), whether the field is fixed or searched; a script trial decides for itself."""
    if cfg.task.type == "script":
        return
    where, values = _values(cfg, space, "packing")
    if True in values:
        fix = "set training.packing: false" if where.startswith("training") else f"remove {where}"
        if cfg.task.type != "causal_lm":
            raise SpaceError(f"{where}: packing lays causal-LM examples end to end; task.type {cfg.task.type} has "
                             f"none to pack (each example is one sequence with its own label); {fix}")
        data = cfg.task.dataset
        if isinstance(data, str) and (data == "builtin:hamlet" or data.lower().endswith(".txt")):
            raise SpaceError(f"{where}: task.dataset {data} is plain text, which is cut into full blocks of "
                             f"task.max_length tokens: there is nothing to pack (packing is for chat data); {fix}")
    where, values = _values(cfg, space, "lora_quantization")
    if "4bit" in values:
        if where.startswith("search") and cfg.search.strategy == "pbt":
            raise SpaceError(f"{where}: PBT members take each other's adapters, which would then train on a base "
                             "quantized otherwise; set training.lora_quantization instead, or use another strategy")
        if not cfg.training.lora_enabled and space.get("lora_enabled") is None:
            raise SpaceError(f"{where}: 4bit quantizes the frozen base model under LoRA (QLoRA), and LoRA is off; "
                             "set training.lora_enabled: true, or training.lora_quantization: none")



def applies(name: str, hparams: dict[str, Any]) -> bool:
    """Whether training field ``name`` takes effect in a trial with these settings (``momentum`` only
    with sgd, the LoRA settings only with LoRA on, ...): a script trial need not read one that does not."""
    if name.startswith("lora_") and name != "lora_enabled":
        return bool(hparams.get("lora_enabled"))
    if name not in NEEDS:
        return True
    context, wanted, _ = NEEDS[name]
    value = hparams.get(context)
    return value is not None if wanted is _ANY else value in wanted
